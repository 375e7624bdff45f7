"""Resources as the daemon sees them: loaded from files, reloaded on change, last good kept.

``PolicySource.current()`` re-reads the resource files when any changed (by content hash) and
returns the policies; ``identity_providers()`` and ``notifiers()`` return the IdentityProvider
and Notifier resources of the same reload (loading them on first use). A file that no longer validates keeps its last good
version in force; the error is logged and recorded once as ``policy.rejected``. Each accepted
version is recorded once as ``policy.applied`` with its content hash (stream ``policy:<name>``
for a policy, ``identity-provider:<name>`` for a provider, ``notifier:<name>`` for a notifier),
so the log says which was in force when.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

import structlog

from events import catalog as ev
from events.store import ConcurrencyError, EventStore, NewEvent, ReadFilter
from orchestrator.domain.errors import PolicyError
from orchestrator.domain.hooks import Hook
from orchestrator.domain.planner import PlanPolicy
from orchestrator.domain.rotation import Params
from orchestrator.domain.vocabulary import DEFAULT_KEY_SIZE, SIGNING_USAGES
from orchestrator.policies.windows import CronWindow

if TYPE_CHECKING:
    from orchestrator.policies.identity_providers import IdentityProvider
    from orchestrator.policies.loaded import LoadedIdentityProvider, LoadedNotifier, LoadedPolicy
    from orchestrator.policies.notifiers import Notifier

__all__ = ["PolicySource", "to_plan_policy"]

log = structlog.get_logger("orchestrator.policies")
_Good = tuple["LoadedPolicy", PlanPolicy]  # a file as loaded, and what the planner takes of it
POLICY_STREAM = "policy:"
PROVIDER_STREAM = "identity-provider:"
NOTIFIER_STREAM = "notifier:"
REJECTED_STREAM = "policies:rejected"


def to_plan_policy(loaded: LoadedPolicy) -> PlanPolicy:
    """What the planner and the rotation process need of a policy file."""
    policy = loaded.policy
    spec = policy.spec
    cred = spec.credential
    rot = spec.rotation
    issuer_cert = issuer_key = None
    subject = None
    if cred.certificate is not None:
        subject = cred.certificate.subject
        if cred.certificate.issuer is not None:
            base = loaded.path.parent
            issuer_cert = (base / cred.certificate.issuer.certificate).read_bytes()
            issuer_key = (base / cred.certificate.issuer.key).read_bytes()
    hook = None
    if spec.delivery.hook is not None:
        program, *args = spec.delivery.hook.command
        if "/" in program and not Path(program).is_absolute():  # beside the policy file
            program = str(loaded.path.parent / program)
        hook = Hook((program, *args), spec.delivery.hook.timeout)
    window = None
    if rot.window is not None:
        window = CronWindow(rot.window.cron, rot.window.duration, rot.window.timezone)
    params = Params(
        usage=cred.usage,
        algorithm=cred.algorithm if cred.usage in SIGNING_USAGES else None,
        key_size=cred.key_size or DEFAULT_KEY_SIZE,
        overlap=rot.overlap,
        lifetime=spec.lifetime,
        subject=subject,
        issuer_cert=issuer_cert,
        issuer_key=issuer_key,
        attempts=rot.retry.attempts,
        backoff=rot.retry.backoff,
        max_backoff=rot.retry.max_backoff,
        accept_untested=rot.accept_untested,
        accept_secret_gap=rot.accept_secret_gap,
        hook=hook,
    )
    return PlanPolicy(
        name=policy.metadata.name,
        params=params,
        every=rot.every,
        # a percentage: the policy's own lifetime's share stands for a credential whose
        # lifetime is unknown; each other credential gets the share of its own
        before_expiry=rot.renew_before(spec.lifetime) or timedelta(0),
        before_expiry_fraction=rot.before_expiry_fraction,
        retention=spec.retention,
        apps=tuple(spec.selector.apps),
        labels=dict(spec.selector.labels or {}),
        window=window,
        max_per_tick=rot.max_per_tick,
        matches=policy.matches,
    )


class PolicySource:
    def __init__(self, directory: Path, store: EventStore | None, clock: Callable[[], datetime],
                 actor: str = "scheduler") -> None:
        self.directory = directory
        self.store = store
        self.clock = clock
        self.actor = actor
        self._fingerprint: str | None = None
        self._good: dict[Path, _Good] = {}
        self._current: tuple[PlanPolicy, ...] = ()
        self._good_providers: dict[Path, LoadedIdentityProvider] = {}
        self._providers: Mapping[str, IdentityProvider] = MappingProxyType({})
        self._good_notifiers: dict[Path, LoadedNotifier] = {}
        self._notifiers: Mapping[str, Notifier] = MappingProxyType({})
        self._rejected: set[tuple[str, str]] = set()
        self.errors: tuple[str, ...] = ()
        # what in_force read of the files while current() never ran: (fingerprint, policies,
        # identity providers)
        self._peeked: tuple[str, tuple[PlanPolicy, ...],
                            Mapping[str, IdentityProvider]] | None = None

    def _scan(self) -> str:
        from orchestrator.policies.files import MAX_POLICY_BYTES

        digest = hashlib.sha256()
        if self.directory.is_dir():
            for path in sorted(self.directory.glob("*.y*ml")):
                try:
                    stat = path.stat()
                    if stat.st_size > MAX_POLICY_BYTES:  # refused unread: never hash it either
                        content = f"{stat.st_size}:{stat.st_mtime_ns}".encode()
                    else:
                        content = path.read_bytes()
                    digest.update(path.name.encode() + b"\0" + content + b"\0")
                except OSError:
                    continue
        return digest.hexdigest()

    def check(self) -> None:
        """Refuse a resource set with any problem (PolicyError, one line: the first problem and
        how many there are), recording nothing. A fresh daemon has no last good version to
        keep, so it checks this before it starts: refusing to start is better than silently
        rotating nothing (or less than the files say)."""
        if not self.directory.is_dir():
            raise PolicyError(f"policies folder {self.directory} not found, so the daemon does "
                              "not start; create it or give --policies DIR")
        errors = self._load()[3]
        if errors:
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise PolicyError(
                f"the daemon does not start on a policy set with problems: {errors[0]}{more}; "
                f"orchestrator policy validate {self.directory} lists them all")

    def _load(self) -> tuple[dict[Path, _Good], dict[Path, LoadedIdentityProvider],
                             list[PolicyError], list[str], dict[Path, LoadedNotifier]]:
        """Every policy file that loads (with its issuer files read), every identity provider
        file that loads, the refusals, every error line, and every notifier file that loads."""
        from orchestrator.policies.files import PolicyFileError, load_policies

        result = load_policies([self.directory])
        refused = list(result.errors)
        loaded: dict[Path, _Good] = {}
        for item in result.policies:
            try:
                loaded[item.path] = (item, to_plan_policy(item))
            except OSError as exc:
                refused.append(PolicyFileError([
                    f"{item.path}: spec.credential.certificate.issuer: cannot read "
                    f"{exc.filename}: {exc.strerror}"]))
        providers = {item.path: item for item in result.identity_providers}
        notifiers = {item.path: item for item in result.notifiers}
        return loaded, providers, refused, [str(e) for e in refused], notifiers

    def current(self) -> Sequence[PlanPolicy]:
        fingerprint = self._scan()
        if fingerprint == self._fingerprint:
            return self._current
        self._fingerprint = fingerprint
        if not self.directory.is_dir():
            self.errors = (f"{self.directory}: policies directory not found",)
            log.error("policies_not_found", directory=str(self.directory),
                      kept=len(self._current))
            return self._current
        loaded, providers, refused, errors, notifiers = self._load()
        present = set(self.directory.glob("*.y*ml"))
        for path, last_good in self._good.items():  # a broken file keeps its last good version
            if path in present and path not in loaded:
                loaded[path] = last_good
        named = {item.resource.name for item in providers.values()}
        for path, last_provider in self._good_providers.items():
            if (path in present and path not in providers
                    and last_provider.resource.name not in named):
                providers[path] = last_provider
        told = {item.resource.name for item in notifiers.values()}
        for path, last_notifier in self._good_notifiers.items():
            if path in present and path not in notifiers and last_notifier.resource.name not in told:
                notifiers[path] = last_notifier
        for error in refused:
            self._reject(error)
        for path in sorted(loaded):
            item = loaded[path][0]
            self._applied(POLICY_STREAM, item.policy.metadata.name, item.content_hash, path)
        for path in sorted(providers):
            provider = providers[path]
            self._applied(PROVIDER_STREAM, provider.resource.name, provider.content_hash, path)
        for path in sorted(notifiers):
            notifier = notifiers[path]
            self._applied(NOTIFIER_STREAM, notifier.resource.name, notifier.content_hash, path)
        self._good = loaded
        self._current = tuple(loaded[path][1] for path in sorted(loaded))
        self._good_providers = providers
        self._providers = MappingProxyType(
            {p.resource.name: p.resource for p in sorted(providers.values(),
                                                         key=lambda p: p.resource.name)})
        self._good_notifiers = notifiers
        self._notifiers = MappingProxyType(
            {n.resource.name: n.resource for n in sorted(notifiers.values(),
                                                         key=lambda n: n.resource.name)})
        self.errors = tuple(errors)
        log.info("policies_loaded", count=len(self._current), identity_providers=len(providers),
                 notifiers=len(notifiers), errors=len(errors))
        return self._current

    def in_force(self) -> Sequence[PlanPolicy]:
        """The policies as ``current()`` last loaded them, without looking at the files; when it
        never ran (a standby daemon, which does not tick), the files as they load now, read
        without recording or logging anything (cached until a file changes). For readers in
        another thread (the metrics, the health endpoints)."""
        return self._current if self._fingerprint is not None else self._peek()[0]

    def identity_providers_in_force(self) -> Mapping[str, IdentityProvider]:
        """The IdentityProvider resources as ``in_force`` reads the policies."""
        return self._providers if self._fingerprint is not None else self._peek()[1]

    def _peek(self) -> tuple[tuple[PlanPolicy, ...], Mapping[str, IdentityProvider]]:
        fingerprint = self._scan()
        cached = self._peeked
        if cached is None or cached[0] != fingerprint:
            loaded, providers = self._load()[:2] if self.directory.is_dir() else ({}, {})
            cached = self._peeked = (
                fingerprint, tuple(loaded[p][1] for p in sorted(loaded)),
                MappingProxyType({p.resource.name: p.resource for p in providers.values()}))
        return cached[1], cached[2]

    def identity_providers(self) -> Mapping[str, IdentityProvider]:
        """The IdentityProvider resources by name, as of the last reload (``current()``, which
        the daemon calls every tick); loaded on first use. Without the folder there are none
        (the quick start needs none, and a command that only asks for a provider by name says
        which names exist)."""
        if self._fingerprint is None and self.directory.is_dir():
            self.current()
        return self._providers

    def notifiers(self) -> Mapping[str, Notifier]:
        """The Notifier resources by name, as of the last reload (loaded on first use)."""
        if self._fingerprint is None and self.directory.is_dir():
            self.current()
        return self._notifiers

    def _append(self, stream: str, event: ev.Event) -> None:
        if self.store is None:
            return
        for _ in range(5):
            version = sum(1 for _ in self.store.read(ReadFilter(stream_id=stream)))
            try:
                self.store.append(stream, [NewEvent(event, self.clock(), self.actor)], version)
                return
            except ConcurrencyError:
                continue

    def _applied(self, prefix: str, name: str, content_hash: str, path: Path) -> None:
        stream = prefix + name
        if self.store is None:
            return
        last = None
        for rec in self.store.read(ReadFilter(stream_id=stream)):
            last = rec.payload.get("content_hash")
        if last == content_hash:
            return
        self._append(stream, ev.PolicyApplied(name=name, content_hash=content_hash,
                                              path=str(path)))
        log.info("policy_applied", policy=name, stream=stream, content_hash=content_hash)

    def _reject(self, error: PolicyError) -> None:
        message = str(error)
        path = message.split(":", 1)[0]
        try:
            content = Path(path).read_bytes()
        except OSError:
            content = b""
        content_hash = "sha256:" + hashlib.sha256(content).hexdigest()
        log.error("policy_rejected", path=path, error=message)
        key = (path, content_hash)
        if not self._rejected and self.store is not None:  # what earlier runs recorded
            self._rejected = {(r.payload["path"], r.payload["content_hash"])
                              for r in self.store.read(ReadFilter(stream_id=REJECTED_STREAM))}
        if key in self._rejected:
            return
        self._rejected.add(key)
        self._append(REJECTED_STREAM, ev.PolicyRejected(path=path, content_hash=content_hash,
                                                        error=message[:1000]))
