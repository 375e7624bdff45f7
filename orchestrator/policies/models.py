"""Rotation policies: the YAML files ops edit, as frozen pydantic models, and their loader.

The format is shown, every key commented, by the files in ``policies/`` (each is loaded by a
test). Keys are camelCase and unknown keys are errors; durations are parsed by
``orchestrator.domain.durations``; a window by ``orchestrator.policies.windows``. Every refusal is one line,
``<file>: <field.path as spelt in YAML>: <what is wrong>; <what to do>``.

Why a policy cannot let a credential expire before its replacement has overlapped
---------------------------------------------------------------------------------
Take a credential this policy creates at ``t0``; it expires at ``t0 + lifetime``. Its rotation
becomes due at ``t0 + min(every, lifetime - beforeExpiry)``, never later than ``t0 + every``.
It starts when the window lets it: the planner places each start at a per-application slot in
the first window that opens after the due time (today within its first half), so at worst at
that window's close, at most ``wait = longest_gap + window.duration`` later (``wait = 0``
without a window; ``longest_gap`` is measured over the 400 days from 2026-01-01, so clock
changes, weekends and short months are in it, and the fixed start keeps loading
deterministic). The new credential is added and tested at once; failed steps are retried
within ``retries``, the sum of the backoffs between attempts (1m + 2m + 4m + 8m = 15m by
default, doubling up to maxBackoff). Then both overlap for ``overlap``. So the old credential
must still be valid at ``t0 + every + wait + retries + overlap``, and we enforce exactly that::

    lifetime >= every + wait + retries + overlap                                         (1)

It is sufficient because every term is an upper bound of its step and the expiring trigger
(``beforeExpiry``) can only make a start earlier, never later; so beforeExpiry need not be
added in (1). Three more inequalities keep the triggers themselves sound::

    overlap < every                      (a rotation finishes before the next is due)     (2)
    beforeExpiry > overlap + retries     (a credential caught by the expiring trigger, e.g.
                                          one imported with its own expiry, still overlaps
                                          in time: the window never delays such a start) (3)
    lifetime > beforeExpiry + overlap    (a fresh credential is not due again the moment its
                                          rotation completes: no rotation loop)           (4)

``beforeExpiry`` may also be a percentage (``33%``, cert-manager's renewBeforePercentage): each
credential is then due when that share of its own lifetime (not-before, else added, to expiry)
is left, so a provider that issues shorter credentials gets them renewed earlier rather than in
a loop. (3) and (4) are checked with the share of ``lifetime`` (required then); a credential
imported with a shorter lifetime of its own gets a shorter lead, as in cert-manager.

What (1) cannot cover is capacity: maxPerTick must let the fleet's due rotations start within
the window, and a rotation parked after its retry budget waits for a human.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StrictBool,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from orchestrator.domain.durations import (
    DURATION_FORMS,
    format_duration,
    format_percentage,
    parse_duration,
    parse_percentage,
)
from orchestrator.domain.hooks import DEFAULT_HOOK_TIMEOUT
from orchestrator.domain.rotation import total_backoff
from orchestrator.domain.vocabulary import (
    DEFAULT_ALGORITHM,
    DEFAULT_KEY_SIZE,
    Algorithm,
    KeySize,
    Usage,
)
from orchestrator.policies.windows import CronWindow, validate_cron, validate_timezone

__all__ = [
    "ONE_POLICY",
    "WINDOW_REFERENCE",
    "Algorithm",
    "Certificate",
    "Credential",
    "DeliverySpec",
    "HookSpec",
    "Issuer",
    "Metadata",
    "Policy",
    "Retry",
    "Rotation",
    "Selector",
    "Spec",
    "Usage",
    "WindowSpec",
    "refuse",
]

WINDOW_REFERENCE = datetime(2026, 1, 1, tzinfo=UTC)  # where window gaps are measured from
_WINDOW_HORIZON = timedelta(days=400)
MAX_ATTEMPTS = 100  # more is a rotation that never parks for a human
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_MODEL = ConfigDict(extra="forbid", frozen=True, populate_by_name=True,
                   field_title_generator=lambda name, info: info.alias or name)
ONE_POLICY = "narrow one selector (apps or labels) so each application has one policy per usage"


def _duration(value: object, *, zero_ok: bool) -> timedelta:
    if isinstance(value, bool) or not isinstance(value, str | timedelta | int):
        raise ValueError(f"{value!r} is not a duration; write {DURATION_FORMS}")
    if isinstance(value, int):
        raise ValueError(
            f"{value} has no unit; write e.g. {value}s, {value}m, {value}h or {value}d"
        )
    duration = parse_duration(value) if isinstance(value, str) else value
    if duration < timedelta(0) or (duration == timedelta(0) and not zero_ok):
        raise ValueError(f"{value} is not longer than zero; give a positive duration such as 1h")
    return duration


def _before_expiry(value: object) -> timedelta | float:
    """A positive duration, or a percentage of the credential's lifetime as a fraction."""
    if isinstance(value, str) and value.strip().endswith("%"):
        return parse_percentage(value)
    return _duration(value, zero_ok=False)


def _show_before_expiry(value: timedelta | float) -> str:
    return format_duration(value) if isinstance(value, timedelta) else format_percentage(value)


# what editors are told (the JSON Schema, ``orchestrator.policies.schemas``); the validators
# above stay the judges, and say what is wrong in one line
_DURATION_PATTERN = (r"^\s*((?=\d)(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?"
                     r"|[Pp](?=\d)(\d+[Ww])?(\d+[Dd])?([Tt](?=\d)(\d+[Hh])?(\d+[Mm])?(\d+[Ss])?)?)\s*$")
_PERCENT_PATTERN = r"^\s*\d{1,2}(\.\d{1,2})?\s*%\s*$"
_DURATION_SCHEMA = {"type": "string", "pattern": _DURATION_PATTERN,
                    "description": f"A duration: {DURATION_FORMS}.",
                    "examples": ["90d", "24h", "1d12h", "P90D"]}
PositiveDuration = Annotated[timedelta, PlainValidator(lambda v: _duration(v, zero_ok=False)),
                             PlainSerializer(format_duration, return_type=str),
                             WithJsonSchema(_DURATION_SCHEMA)]
Duration = Annotated[timedelta, PlainValidator(lambda v: _duration(v, zero_ok=True)),
                     PlainSerializer(format_duration, return_type=str),
                     WithJsonSchema(_DURATION_SCHEMA)]
BeforeExpiry = Annotated[
    timedelta | float, PlainValidator(_before_expiry),
    PlainSerializer(_show_before_expiry, return_type=str),
    WithJsonSchema({"type": "string",
                    "description": "How long before its expiry a credential is rotated: a "
                                   f"duration ({DURATION_FORMS}), or a percentage of each "
                                   "credential's own lifetime, strictly between 0% and 100% "
                                   "(33%: rotated when a third of its lifetime is left).",
                    "anyOf": [{"pattern": _DURATION_PATTERN}, {"pattern": _PERCENT_PATTERN}],
                    "examples": ["14d", "33%"]})]


def refuse(field: str, message: str) -> PydanticCustomError:
    """A cross-field refusal, reported at ``field`` (dotted, YAML spelling) under the model."""
    return PydanticCustomError("policy_rule", "{message}", {"field": field, "message": message})


def _refuse_all(broken: list[tuple[str, str]]) -> PydanticCustomError:
    """Several cross-field refusals at once: the first as ``refuse``, the rest in ``more``
    (``orchestrator.policies.files`` reports one line each)."""
    (field, message), *more = broken
    return PydanticCustomError("policy_rule", "{message}",
                               {"field": field, "message": message, "more": more})


def _d(duration: timedelta) -> str:
    return format_duration(duration)


class Metadata(BaseModel):
    model_config = _MODEL
    name: str
    description: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not _NAME.fullmatch(name):
            raise ValueError(
                f"{name!r} is not a valid name; use 1-63 lowercase letters, digits and '-', "
                "starting with a letter or digit"
            )
        return name


class Selector(BaseModel):
    model_config = _MODEL
    apps: tuple[str, ...] = Field(min_length=1)
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("apps")
    @classmethod
    def _apps(cls, apps: tuple[str, ...]) -> tuple[str, ...]:
        if any(not app.strip() for app in apps):
            raise ValueError("an empty pattern matches nothing; remove it or write a glob")
        return apps

    def matches(self, app: str, labels: Mapping[str, str]) -> bool:
        return any(fnmatchcase(app, glob) for glob in self.apps) and all(
            labels.get(key) == value for key, value in self.labels.items()
        )


class Issuer(BaseModel):
    model_config = _MODEL
    certificate: Path  # as written: relative paths start at the policy file's folder
    key: Path


class Certificate(BaseModel):
    model_config = _MODEL
    subject: str  # RFC 4514; {app} is replaced by the application name
    issuer: Issuer | None = None  # absent: self-signed

    @field_validator("subject")
    @classmethod
    def _subject(cls, subject: str) -> str:
        rdns = re.split(r"(?<!\\)[,+]", subject)
        if not all(re.fullmatch(r"\s*([A-Za-z][\w-]*|\d+(\.\d+)+)\s*=.*\S.*", r) for r in rdns):
            raise ValueError(
                f"{subject!r} is not an RFC 4514 name; write attribute=value pairs separated "
                "by commas, e.g. CN={app},O=Example Corp"
            )
        if unknown := set(re.findall(r"\{([^}]*)\}", subject)) - {"app"}:
            raise ValueError(f"unknown placeholder {{{sorted(unknown)[0]}}}; only {{app}} exists")
        return subject


class Credential(BaseModel):
    model_config = _MODEL
    usage: Usage
    algorithm: Algorithm | None = None  # RS256 for keys, set by _key_defaults
    key_size: KeySize | None = Field(None, alias="keySize")
    certificate: Certificate | None = None

    @model_validator(mode="before")
    @classmethod
    def _key_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("usage") != Usage.CLIENT_SECRET:
            data = dict(data)
            if data.get("algorithm") is None:
                data["algorithm"] = DEFAULT_ALGORITHM
            if data.get("keySize", data.get("key_size")) is None:
                data.pop("key_size", None)
                data["keySize"] = DEFAULT_KEY_SIZE
        return data

    @model_validator(mode="after")
    def _fits_usage(self) -> Credential:
        if self.usage is Usage.CLIENT_SECRET:
            for field, value in (("algorithm", self.algorithm), ("keySize", self.key_size)):
                if value is not None:
                    raise refuse(field, f"a client secret has no {field}; remove it")
        if self.usage is Usage.MTLS and self.certificate is None:
            raise refuse(
                "certificate", "mtls needs a certificate; add certificate: {subject: CN={app},...}"
            )
        if self.usage is not Usage.MTLS and self.certificate is not None:
            raise refuse(
                "certificate", f"only mtls has a certificate, not {self.usage}; remove it"
            )
        return self


class Retry(BaseModel):
    model_config = _MODEL
    attempts: int = Field(5, ge=1, le=MAX_ATTEMPTS)
    backoff: PositiveDuration = timedelta(minutes=1)
    max_backoff: PositiveDuration = Field(timedelta(hours=1), alias="maxBackoff")

    @model_validator(mode="after")
    def _ordered(self) -> Retry:
        if self.max_backoff < self.backoff:
            raise refuse(
                "maxBackoff",
                f"{_d(self.max_backoff)} is shorter than backoff ({_d(self.backoff)}); make it "
                f"at least {_d(self.backoff)}",
            )
        return self

    @property
    def budget(self) -> timedelta:
        """Total wait between the attempts: backoff, doubling, at most maxBackoff each (the
        rotation process's own ``total_backoff``)."""
        return total_backoff(self.attempts, self.backoff, self.max_backoff)


class WindowSpec(BaseModel):
    model_config = _MODEL
    cron: str
    duration: PositiveDuration
    timezone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _cron(cls, cron: str) -> str:
        if (problem := validate_cron(cron)) is not None:
            raise ValueError(problem)
        return cron

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, timezone: str) -> str:
        if (problem := validate_timezone(timezone)) is not None:
            raise ValueError(problem)
        return timezone

    @model_validator(mode="after")
    def _opens(self) -> WindowSpec:
        end = WINDOW_REFERENCE + _WINDOW_HORIZON
        if next(self.window.openings(WINDOW_REFERENCE, end), None) is None:
            raise refuse(
                "cron",
                f"{self.cron!r} does not open once in the 400 days after 2026-01-01 "
                "(a day that does not exist?); choose days that occur every year",
            )
        return self

    @property
    def window(self) -> CronWindow:
        return CronWindow(self.cron, self.duration, self.timezone)


@lru_cache(maxsize=256)
def _longest_gap(window: CronWindow) -> timedelta:
    return window.longest_gap(WINDOW_REFERENCE, _WINDOW_HORIZON)


class Rotation(BaseModel):
    model_config = _MODEL
    every: PositiveDuration
    # a duration, or a share of each credential's own lifetime (a fraction: 0.33 for 33%)
    before_expiry: BeforeExpiry = Field(alias="beforeExpiry")
    overlap: PositiveDuration
    window: WindowSpec | None = None
    max_per_tick: int = Field(50, ge=1, alias="maxPerTick")
    retry: Retry = Retry()
    # where the app's identity provider cannot test the usage (nothing there authenticates
    # with it, e.g. a JAR key without pushed authorization requests), go on untested: the
    # rotation records that the test was skipped and why; without it, such a rotation parks
    accept_untested: StrictBool = Field(False, alias="acceptUntested")
    # client_secret only: the app's provider holds one secret (Auth0, RFC 7592), so the old
    # one stops working when the new one is set and the app is refused until it reads the
    # new one from its delivery folder; without it, such a policy is refused
    accept_secret_gap: StrictBool = Field(False, alias="acceptSecretGap")

    @property
    def before_expiry_fraction(self) -> float | None:
        """beforeExpiry as a share of each credential's lifetime (None: a fixed duration)."""
        return None if isinstance(self.before_expiry, timedelta) else self.before_expiry

    def renew_before(self, lifetime: timedelta | None) -> timedelta | None:
        """beforeExpiry for a credential living ``lifetime`` (None: a percentage of no
        lifetime)."""
        if isinstance(self.before_expiry, timedelta):
            return self.before_expiry
        if lifetime is None:
            return None
        return timedelta(seconds=round(lifetime.total_seconds() * self.before_expiry))

    def show_before_expiry(self, lifetime: timedelta | None) -> str:
        """beforeExpiry as the messages say it: ``14d``, or ``33% of 120d (39d14h24m)``."""
        if isinstance(self.before_expiry, timedelta):
            return _d(self.before_expiry)
        share = format_percentage(self.before_expiry)
        before = self.renew_before(lifetime)
        return share if lifetime is None or before is None else (
            f"{share} of {_d(lifetime)} ({_d(before)})")

    @property
    def max_start_delay(self) -> timedelta:
        """How long a due rotation may wait for the window: its longest gap plus its length."""
        if self.window is None:
            return timedelta(0)
        return _longest_gap(self.window.window) + self.window.duration


MAX_HOOK_TIMEOUT = timedelta(minutes=10)  # a hook holds the tick's other rotations up while it runs


class HookSpec(BaseModel):
    """A command run after each delivery of the policy's credentials (``orchestrator.domain.hooks``):
    argv, not a shell line; the delivery folder's path is appended as its last argument."""

    model_config = _MODEL
    command: tuple[str, ...] = Field(min_length=1)
    timeout: PositiveDuration = DEFAULT_HOOK_TIMEOUT

    @field_validator("command")
    @classmethod
    def _command(cls, command: tuple[str, ...]) -> tuple[str, ...]:
        if not command[0].strip():
            raise ValueError("the program (the first item) is empty; name the program to run, "
                             "e.g. [/usr/local/bin/reload-app, --graceful]")
        if any("\0" in arg for arg in command):
            raise ValueError("an argument holds a NUL character; remove it")
        return command

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, timeout: timedelta) -> timedelta:
        if timeout > MAX_HOOK_TIMEOUT:
            raise ValueError(f"{_d(timeout)} is longer than {_d(MAX_HOOK_TIMEOUT)}: the daemon waits "
                             "for a hook before it goes on; give at most 10m")
        return timeout


class DeliverySpec(BaseModel):
    model_config = _MODEL
    hook: HookSpec | None = None


class Spec(BaseModel):
    model_config = _MODEL
    selector: Selector
    credential: Credential
    rotation: Rotation
    lifetime: PositiveDuration | None = None
    retention: Duration = timedelta(days=7)
    delivery: DeliverySpec = DeliverySpec()

    @model_validator(mode="after")
    def _rules(self) -> Spec:
        """Every cross-field rule, each broken one reported (not only the first)."""
        broken = [found for check in (self._sound_triggers, self._no_expiry_before_overlap,
                                      self._one_subject_per_app, self._gap_of_secrets_only)
                  for found in check()]
        if broken:
            raise _refuse_all(broken)
        return self

    def _sound_triggers(self) -> list[tuple[str, str]]:
        rotation, broken = self.rotation, []
        before = rotation.renew_before(self.lifetime)
        if before is None:  # a percentage, and no lifetime to take it of
            broken.append((
                "rotation.beforeExpiry",
                f"{rotation.show_before_expiry(None)} is a share of each credential's lifetime, "
                "and this policy gives its credentials none; add lifetime, or write a duration "
                "such as 14d",
            ))
        if rotation.overlap >= rotation.every:  # (2)
            broken.append((
                "rotation.overlap",
                f"{_d(rotation.overlap)} is not shorter than every ({_d(rotation.every)}), so "
                "a rotation would be due again before the last one finished; shorten overlap "
                "or rotate less often",
            ))
        needed = rotation.overlap + rotation.retry.budget
        if before is not None and before <= needed:  # (3)
            broken.append((
                "rotation.beforeExpiry",
                f"{rotation.show_before_expiry(self.lifetime)} leaves no time for a credential "
                "caught by it to "
                f"overlap {_d(rotation.overlap)} (plus {_d(rotation.retry.budget)} of retries) "
                f"before it expires; make beforeExpiry longer than {_d(needed)}",
            ))
        return broken

    def _no_expiry_before_overlap(self) -> list[tuple[str, str]]:
        rotation, lifetime, broken = self.rotation, self.lifetime, []
        if lifetime is None:
            if self.credential.usage is not Usage.CLIENT_SECRET:
                broken.append((
                    "lifetime", f"required for {self.credential.usage}; add e.g. lifetime: 120d"
                ))
            return broken
        wait, retries = rotation.max_start_delay, rotation.retry.budget
        needed = rotation.every + wait + retries + rotation.overlap  # (1)
        if lifetime < needed:
            waiting = f", may wait {_d(wait)} for its window" if rotation.window else ""
            broken.append((
                "lifetime",
                f"{_d(lifetime)} is too short: a credential is due at {_d(rotation.every)} "
                f"(every){waiting}, may spend {_d(retries)} on retries and then overlaps "
                f"{_d(rotation.overlap)}, so it could expire before its replacement has "
                f"overlapped; make lifetime at least {_d(needed)} or rotate more often",
            ))
        before = rotation.renew_before(lifetime)
        if before is not None and lifetime <= before + rotation.overlap:  # (4)
            broken.append((
                "rotation.beforeExpiry",
                f"{rotation.show_before_expiry(lifetime)} plus overlap {_d(rotation.overlap)} is not "
                f"shorter than lifetime {_d(lifetime)}, so each new credential would be due "
                "again as soon as its rotation completed; make beforeExpiry shorter than "
                f"{_d(lifetime - rotation.overlap)}",
            ))
        return broken

    def _one_subject_per_app(self) -> list[tuple[str, str]]:
        certificate = self.credential.certificate
        several = len(self.selector.apps) > 1 or any(c in self.selector.apps[0] for c in "*?[")
        if certificate is not None and several and "{app}" not in certificate.subject:
            return [(
                "credential.certificate.subject",
                f"{certificate.subject!r} has no {{app}}, so every application the selector "
                "matches would get the same subject DN; put {app} in it, e.g. CN={app},O=Acme",
            )]
        return []


    def _gap_of_secrets_only(self) -> list[tuple[str, str]]:
        if self.rotation.accept_secret_gap and self.credential.usage is not Usage.CLIENT_SECRET:
            return [(
                "rotation.acceptSecretGap",
                f"only a client_secret rotation can have a secret gap, not {self.credential.usage} "
                "(its old and new credentials overlap); remove it",
            )]
        return []


class Policy(BaseModel):
    model_config = _MODEL
    api_version: Literal["orchestrator/v1"] = Field(alias="apiVersion")
    kind: Literal["RotationPolicy"]
    metadata: Metadata
    spec: Spec

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def usage(self) -> Usage:
        return self.spec.credential.usage

    def matches(self, app: str, labels: Mapping[str, str]) -> bool:
        """Whether the selector claims this application (some glob and every label match)."""
        return self.spec.selector.matches(app, labels)
