"""Notifier resources: webhooks told what happens, beside the policies.

Same folder, same loader, same style as ``RotationPolicy`` and ``IdentityProvider``: frozen
pydantic models, camelCase keys, unknown keys refused, every error one line naming file and
field::

    apiVersion: orchestrator/v1
    kind: Notifier
    metadata: {name: ops-webhook}
    spec:
      url: https://hooks.example.com/orchestrator
      secret: {env: OPS_WEBHOOK_SECRET}
      events: [credential.expiring, credential.expired, rotation.failed, rotation.parked]
      thresholds: [30d, 7d, 1d]
      timeout: 10s
      retry: {backoff: 10s, maxBackoff: 10m}

``events`` defaults to every kind (``orchestrator.domain.notices.NoticeKind``); ``thresholds``
(for ``credential.expiring``) to 30d, 7d and 1d. The secret is a reference
(``orchestrator.policies.secret_refs``), resolved when a delivery is signed, so ``policy
validate`` needs none of the secrets. The URL is https (http only to a loopback host), with no
user, password, query or fragment: a secret in a URL ends up in logs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from orchestrator.app.notifications import Webhook
from orchestrator.domain.durations import format_duration
from orchestrator.domain.notices import DEFAULT_THRESHOLDS, NoticeKind
from orchestrator.policies.identity_providers import _url
from orchestrator.policies.models import Metadata, PositiveDuration, refuse
from orchestrator.policies.secret_refs import SecretRef

__all__ = ["MAX_THRESHOLD", "MAX_TIMEOUT", "Notifier", "NotifierRetry", "NotifierSpec",
           "to_webhook"]

_MODEL = ConfigDict(extra="forbid", frozen=True, populate_by_name=True,
                    field_title_generator=lambda name, info: info.alias or name)
MAX_TIMEOUT = timedelta(seconds=60)  # a delivery waits this long at most: the tick waits too
MAX_THRESHOLD = timedelta(days=3650)
MAX_THRESHOLDS = 10
T = TypeVar("T")


def _each_once(items: Sequence[T], shown: Callable[[T], str]) -> None:
    twice = next((item for item in items if items.count(item) > 1), None)
    if twice is not None:
        raise ValueError(f"{shown(twice)} is listed twice; list each once")


class NotifierRetry(BaseModel):
    """A failed delivery is tried again after ``backoff``, doubling up to ``maxBackoff``, for
    as long as it takes: nothing is dropped."""

    model_config = _MODEL
    backoff: PositiveDuration = timedelta(seconds=10)
    max_backoff: PositiveDuration = Field(timedelta(minutes=10), alias="maxBackoff")

    @model_validator(mode="after")
    def _ordered(self) -> NotifierRetry:
        if self.max_backoff < self.backoff:
            raise refuse("maxBackoff", f"{format_duration(self.max_backoff)} is shorter than "
                                       f"backoff ({format_duration(self.backoff)}); make it at "
                                       f"least {format_duration(self.backoff)}")
        return self


class NotifierSpec(BaseModel):
    model_config = _MODEL
    url: str
    secret: SecretRef
    events: tuple[NoticeKind, ...] = tuple(NoticeKind)
    thresholds: tuple[PositiveDuration, ...] = DEFAULT_THRESHOLDS
    timeout: PositiveDuration = timedelta(seconds=10)
    retry: NotifierRetry = NotifierRetry()

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        if "@" in urlsplit(url).netloc:
            raise ValueError("a URL with a user or password in it is refused (it would be "
                             "logged); the signature with spec.secret authenticates each "
                             "delivery")
        return _url(url, "the notifications", "https://hooks.example.com/orchestrator")

    @field_validator("events")
    @classmethod
    def _events(cls, events: tuple[NoticeKind, ...]) -> tuple[NoticeKind, ...]:
        if not events:
            raise ValueError("no event kinds: the notifier would be told nothing; list at "
                             "least one or leave events out for all of them")
        _each_once(events, lambda e: e.value)
        return events

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, thresholds: tuple[timedelta, ...]) -> tuple[timedelta, ...]:
        if not thresholds:
            raise ValueError("no thresholds; give at least one (e.g. [30d, 7d, 1d]) or leave "
                             "thresholds out for those")
        if len(thresholds) > MAX_THRESHOLDS:
            raise ValueError(f"{len(thresholds)} thresholds; give at most {MAX_THRESHOLDS}")
        _each_once(thresholds, format_duration)
        if (longest := max(thresholds)) > MAX_THRESHOLD:
            raise ValueError(f"{format_duration(longest)} is longer than "
                             f"{format_duration(MAX_THRESHOLD)}; give a shorter threshold")
        return tuple(sorted(thresholds, reverse=True))

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, timeout: timedelta) -> timedelta:
        if timeout > MAX_TIMEOUT:
            raise ValueError(f"{format_duration(timeout)} is longer than "
                             f"{format_duration(MAX_TIMEOUT)}: the daemon's tick waits for a "
                             "delivery; give a shorter timeout")
        return timeout

    @model_validator(mode="before")
    @classmethod
    def _thresholds_told(cls, data: object) -> object:
        if (isinstance(data, dict) and "thresholds" in data and isinstance(data.get("events"),
                                                                               list)
                and NoticeKind.EXPIRING.value not in data["events"]):
            raise refuse("thresholds", "thresholds are for credential.expiring, which is not "
                                       "in events; add it to events or remove thresholds")
        return data


class Notifier(BaseModel):
    model_config = _MODEL
    api_version: Literal["orchestrator/v1"] = Field(alias="apiVersion")
    kind: Literal["Notifier"]
    metadata: Metadata
    spec: NotifierSpec

    @property
    def name(self) -> str:
        return self.metadata.name


def to_webhook(resource: Notifier) -> Webhook:
    """What the notifications subscriber needs of a Notifier; its secret is resolved at each
    use (an InputError naming the notifier and the reference when it cannot be had)."""
    spec, name = resource.spec, resource.name

    def secret() -> str:
        return spec.secret.resolve(f"notifier {name}: spec.secret").get_secret_value()

    return Webhook(name=name, url=spec.url, kinds=frozenset(spec.events),
                   thresholds=spec.thresholds, timeout=spec.timeout,
                   backoff=spec.retry.backoff, max_backoff=spec.retry.max_backoff,
                   secret=secret)
