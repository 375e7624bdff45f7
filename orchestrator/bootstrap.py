"""The one composition root: settings -> wired objects. The only place that knows the clock.

Settings come from the command line or the environment:

    ORCHESTRATOR_DB          database URL   (default sqlite:///var/orchestrator.db)
    ORCHESTRATOR_KEYSTORE    keystore dir   (default var/keystore): the file keystore's items,
                             and the master.key file of either keystore
    ORCHESTRATOR_KEYSTORE_BACKEND  file or database: where the encrypted items live (default:
                             database on PostgreSQL, so daemons on several hosts share them;
                             file on SQLite)
    ORCHESTRATOR_POLICIES    policies dir   (default policies)
    ORCHESTRATOR_DELIVERY    where each app's current private key / secret is delivered
                             (default var/delivery)
    ORCHESTRATOR_PROVIDER    local (default), or faulty:<failure rate>[:<seed>] to rehearse
                             provider failures
    ORCHESTRATOR_MASTER_KEY  keystore master key, base64url of 32 bytes (default: a 0600 file
                             master.key inside the keystore, created on first use; the
                             keystore's key-check file refuses any other key afterwards)
    ORCHESTRATOR_ACTOR       who is acting  (default cli:<login name>)
    ORCHESTRATOR_CHECKPOINT_KEY  the Ed25519 key that signs checkpoints of the log's head (a
                             file, mode 0600, never in the database; default: none)
    ORCHESTRATOR_CHECKPOINTS where the daemon writes its checkpoints (a folder; default: none)

Nothing else is read from the environment: a test's virtual clock or fault injection is passed
in as an argument (``bootstrap(clock=..., wrap_store=...)``, reached from
``orchestrator.entrypoints.cli.main``; ``wrap_keystore`` likewise) by a launcher that lives under tests/, never by a setting
an operator could trip.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.domain.errors import InputError, OrchestratorError

if TYPE_CHECKING:  # the parts are imported where they are built, so a command loads only its own
    from sqlalchemy.engine import Engine

    from events.anchor import Checkpoint
    from events.projector import Projector
    from events.sql import SQLEventStore
    from events.state import AppState
    from events.store import EventStore
    from orchestrator.adapters.db_keystore import DatabaseKeystore
    from orchestrator.adapters.metrics import DaemonMetrics
    from orchestrator.adapters.providers.router import ProviderRouter
    from orchestrator.app.anchoring import Anchorer
    from orchestrator.app.fleet import FleetView
    from orchestrator.app.notifications import Notifications, Webhook
    from orchestrator.app.ports import (
        CheckpointKey,
        Crypto,
        Delivery,
        HookRunner,
        Keystore,
        Lease,
        Provider,
    )
    from orchestrator.app.rotator import Rotator
    from orchestrator.app.service import Service
    from orchestrator.app.tick import Ticker
    from orchestrator.domain.planner import PlanPolicy
    from orchestrator.domain.rotation import Step
    from orchestrator.policies.identity_providers import IdentityProvider
    from orchestrator.policies.source import PolicySource

__all__ = [
    "DEFAULT_DB",
    "BuiltProviders",
    "Core",
    "Settings",
    "System",
    "bootstrap",
    "build_identity_provider",
    "checkpoint_key",
    "create_checkpoint_key",
    "daemon_metrics",
    "ensure_schema",
    "fast_keys",
    "in_memory",
    "issuers",
    "make_provider",
    "open_engine",
    "read_checkpoints",
    "redacted_url",
    "require_schema",
    "utc_now",
    "wire",
]

DEFAULT_DB = "sqlite:///var/orchestrator.db"
DEFAULT_KEYSTORE = "var/keystore"
DEFAULT_POLICIES = "policies"
DEFAULT_DELIVERY = "var/delivery"
HEAD_REVISION = "0007"


def utc_now() -> datetime:
    return datetime.now(UTC)


def _default_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no login name (containers)
        return "cli:unknown"


def _path_or_none(value: str | None) -> Path | None:
    return Path(value) if value else None


@dataclass(frozen=True)
class Settings:
    db: str = DEFAULT_DB
    keystore: Path = Path(DEFAULT_KEYSTORE)
    keystore_backend: str | None = None  # file | database; None: database on PostgreSQL
    policies: Path = Path(DEFAULT_POLICIES)
    delivery: Path = Path(DEFAULT_DELIVERY)
    provider: str = "local"
    actor: str = field(default_factory=_default_actor)
    checkpoint_key: Path | None = None
    checkpoints: Path | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {
            "db": env.get("ORCHESTRATOR_DB") or DEFAULT_DB,
            "keystore": Path(env.get("ORCHESTRATOR_KEYSTORE") or DEFAULT_KEYSTORE),
            "keystore_backend": env.get("ORCHESTRATOR_KEYSTORE_BACKEND") or None,
            "policies": Path(env.get("ORCHESTRATOR_POLICIES") or DEFAULT_POLICIES),
            "delivery": Path(env.get("ORCHESTRATOR_DELIVERY") or DEFAULT_DELIVERY),
            "provider": env.get("ORCHESTRATOR_PROVIDER") or "local",
            "actor": env.get("ORCHESTRATOR_ACTOR") or _default_actor(),
            "checkpoint_key": _path_or_none(env.get("ORCHESTRATOR_CHECKPOINT_KEY")),
            "checkpoints": _path_or_none(env.get("ORCHESTRATOR_CHECKPOINTS")),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


@dataclass
class Core:
    """The service layer, wired: what the daemon, the CLI, the simulator, tests and benchmarks
    drive. Built only by ``wire``."""

    store: EventStore
    keystore: Keystore
    service: Service
    clock: Callable[[], datetime]
    fleet: FleetView
    provider: ProviderRouter
    rotator: Rotator
    ticker: Ticker


class System:
    """Everything on the configured database. Each part is built on first use, so a command
    pays only for what it touches: ``app list`` reads the projections and never loads the
    keystore, cryptography, the policies or the scheduler."""

    def __init__(self, settings: Settings, engine: Engine, clock: Callable[[], datetime], *,
                 keystore: Keystore | None = None, daemon: bool = False,
                 should_stop: Callable[[], bool] = lambda: False,
                 before_logging: Callable[[], None] = lambda: None,
                 wrap_store: Callable[[EventStore], EventStore] | None = None,
                 wrap_keystore: Callable[[Keystore], Keystore] | None = None,
                 lease_timeout: timedelta | None = None,
                 provider_calls: Callable[[str, str], None] | None = None) -> None:
        self.settings = settings
        self._lease_timeout = lease_timeout
        self._provider_calls = provider_calls
        self._before_logging = before_logging  # the parts below log: set the logs up first
        self.engine = engine
        self.clock = clock
        self._keystore = keystore
        self._daemon = daemon
        self._should_stop = should_stop
        self._wrap_store = wrap_store
        self._wrap_keystore = wrap_keystore
        self._built: dict[str, tuple[IdentityProvider, Provider]] = {}

    @cached_property
    def sql_store(self) -> SQLEventStore:
        from events.sql import SQLEventStore

        lease = self.lease if self._daemon else None  # the daemon's appends are fenced
        return SQLEventStore(self.engine, clock=self.clock,
                             fence=None if lease is None else lambda: lease.fence)

    @cached_property
    def store(self) -> EventStore:
        """The store the write path appends through: ``sql_store``, or ``wrap_store(sql_store)``
        (a decorator; tests inject faults around an append with it)."""
        wrap = self._wrap_store
        return self.sql_store if wrap is None else wrap(self.sql_store)

    @cached_property
    def projector(self) -> Projector:
        from events.projector import Projector

        return Projector(self.engine, self.sql_store)

    @cached_property
    def keystore(self) -> Keystore:
        """The keystore given, else the configured one (``keystore_backend``), decorated by
        ``wrap_keystore`` (tests inject faults around its steps with it)."""
        if self._keystore is not None:
            return self._keystore
        if self.keystore_backend == "database":
            keystore: Keystore = self.database_keystore()
        else:
            from orchestrator.adapters.keystore import FileKeystore

            keystore = FileKeystore(self.settings.keystore)
        wrap = self._wrap_keystore
        return keystore if wrap is None else wrap(keystore)

    @cached_property
    def keystore_backend(self) -> str:
        chosen = self.settings.keystore_backend
        if chosen is None:
            return "database" if self.engine.dialect.name == "postgresql" else "file"
        if chosen not in ("file", "database"):
            raise InputError(f"ORCHESTRATOR_KEYSTORE_BACKEND={chosen!r}: use file or database")
        return chosen

    def database_keystore(self, *, guard_files: bool = True) -> DatabaseKeystore:
        """The keystore in this database; ``guard_files``: refused while it is empty and the
        file keystore of ``settings.keystore`` holds items (``keystore import-files``)."""
        from orchestrator.adapters.db_keystore import DatabaseKeystore

        folder = self.settings.keystore
        return DatabaseKeystore(self.engine, folder, clock=self.clock,
                                file_items=folder / "items" if guard_files else None)

    def file_keystore(self) -> Keystore:
        from orchestrator.adapters.keystore import FileKeystore

        return FileKeystore(self.settings.keystore)

    @cached_property
    def policies(self) -> PolicySource:
        self._before_logging()  # first: the logs import structlog their way (entrypoints.logs)
        from orchestrator.policies.source import PolicySource

        return PolicySource(self.settings.policies, self.store, self.clock)

    @cached_property
    def lease(self) -> Lease:
        from orchestrator.adapters.lease import DatabaseLease, limit_sessions

        if self._daemon:  # a stopped daemon's transactions end too (PostgreSQL)
            limit_sessions(self.engine, self._lease_timeout)
        return DatabaseLease(self.engine, self._lease_timeout)

    @cached_property
    def core(self) -> Core:
        self._before_logging()  # first, as in ``policies``
        from orchestrator.adapters.delivery import FileDelivery
        from orchestrator.adapters.hooks import SubprocessHooks

        settings = self.settings
        return wire(self.store, keystore=self.keystore, clock=self.clock,
                    policies=lambda: self.policies.current(),  # read when planning, so a
                    provider=settings.provider,  # command that never plans never loads them
                    delivery=FileDelivery(settings.delivery, self.clock), actor=settings.actor,
                    rotation_actor="scheduler" if self._daemon else settings.actor,
                    projector=self.projector, fleet_writes=self._daemon,
                    should_stop=self._should_stop, identity_providers=self.identity_providers,
                    provider_problems=lambda: self.policies.errors,
                    fence=self.lease.confirm if self._daemon else None,
                    hooks=SubprocessHooks(),
                    provider_calls=self._provider_calls)

    def identity_providers(self) -> Mapping[str, Provider]:
        """The IdentityProvider resources of the policies folder, by name, as providers. Each is
        built when first asked for (so one whose secret cannot be had fails alone, and naming
        the providers builds none) and kept while its resource is unchanged: a reload keeps
        the provider object, its token cache and its tenant's rate pacer."""
        return BuiltProviders(self.policies.identity_providers(), self._built,
                               lambda name, resource: build_identity_provider(
                                   name, resource, state_of=self.service.load,
                                   keystore=self.keystore))

    @property
    def service(self) -> Service:
        return self.core.service

    @property
    def fleet(self) -> FleetView:
        return self.core.fleet

    @property
    def provider(self) -> ProviderRouter:
        return self.core.provider

    @property
    def rotator(self) -> Rotator:
        return self.core.rotator

    @property
    def ticker(self) -> Ticker:
        return self.core.ticker

    def notifications(self, held: Callable[[], Mapping[str, str]] = dict) -> Notifications:
        """The Notifier resources' subscriber on this database (``held``: the drift watch's
        held applications, each with why); the daemon's leader polls it after each tick."""
        from orchestrator.adapters.webhooks import HttpSender, SqlOutbox
        from orchestrator.app.notifications import Notifications
        from orchestrator.policies.notifiers import to_webhook

        def webhooks() -> dict[str, Webhook]:
            return {name: to_webhook(n) for name, n in self.policies.notifiers().items()}

        lease = self.lease if self._daemon else None
        return Notifications(self.sql_store, SqlOutbox(self.engine), HttpSender(), webhooks,
                             self.fleet.all, self.clock, held=held,
                             guard=lease.confirm if lease is not None else (lambda: None),
                             should_stop=self._should_stop)

    def anchorer(self, key: Path, out: Path | str) -> Anchorer:
        """Signs the log's head with the key at ``key`` into the folder ``out`` (``-``: one
        line on stdout)."""
        import sys

        from orchestrator.adapters.anchor_files import CheckpointFolder, StreamSink
        from orchestrator.adapters.anchor_keys import load_signer
        from orchestrator.app.anchoring import Anchorer

        sink = StreamSink(sys.stdout) if str(out) == "-" else CheckpointFolder(Path(out))
        return Anchorer(self.sql_store, load_signer(key), sink, self.clock,
                        redacted_url(self.settings.db))

    def serve_metrics(self, metrics: DaemonMetrics,
                      status: Callable[[], tuple[bool, datetime | None]],
                      drift: Callable[[], Mapping[str, bool]] = dict) -> None:
        """Register the fleet's series (the read model, the policies in force, ``drift``), the
        log's rotation counts and the daemon's ``status`` (whether it leads, when it last
        completed a tick) in ``metrics``' registry."""
        from orchestrator.adapters.metrics import (
            DaemonCollector,
            DaemonStatus,
            FleetCollector,
            FleetStates,
            RotationCounts,
        )

        metrics.register(FleetCollector(FleetStates(self.projector), self.policies.in_force,
                                        self.clock, drift))
        metrics.register(RotationCounts(self.sql_store))
        metrics.register(DaemonCollector(lambda: DaemonStatus(*status())))

    def close(self) -> None:
        """Give back the store's held connection, then close the engine's pool."""
        store = self.__dict__.get("sql_store")  # only one already made (cached_property)
        if store is not None:
            store.close()
        self.engine.dispose()


def wire(
    store: EventStore,
    *,
    keystore: Keystore,
    clock: Callable[[], datetime],
    policies: Callable[[], Sequence[PlanPolicy]],
    provider: Callable[[Callable[[str], AppState], Keystore], Provider] | str = "local",
    delivery: Delivery | None = None,
    crypto: Crypto | None = None,
    actor: str = "scheduler",
    rotation_actor: str = "scheduler",
    projector: Projector | None = None,
    fleet_writes: bool = True,
    should_stop: Callable[[], bool] = lambda: False,
    on_step: Callable[[str, str, Step], None] | None = None,
    identity_providers: Callable[[], Mapping[str, Provider]] = dict,
    provider_problems: Callable[[], Sequence[str]] = tuple,
    rotation_ids: Callable[[], str] | None = None,
    fence: Callable[[], None] | None = None,
    hooks: HookRunner | None = None,
    provider_calls: Callable[[str, str], None] | None = None,
) -> Core:
    """The one place the service layer is assembled, from real adapters or fakes.

    ``provider`` is a spec (``local``, ``faulty:<rate>[:<seed>]``) or a factory given the
    state reader and the keystore: the local provider, beside the ``identity_providers`` by
    name (an app goes to the one it belongs to); ``fleet_writes`` lets the write path read states from the
    in-memory fleet view (the daemon, the simulator) rather than from the store;
    ``rotation_ids`` (default: random) names each new rotation, so a test can replay a run;
    ``fence`` (the daemon's ``Lease.confirm``) is asked before each provider call, delivery and
    keystore write (``orchestrator.app.fencing``); ``provider_calls`` is told (provider,
    outcome) after each call made of a provider (the daemon's metrics).
    """
    from orchestrator.adapters.crypto import Cryptography
    from orchestrator.adapters.providers.router import ProviderRouter
    from orchestrator.app.fleet import FleetView
    from orchestrator.app.rotator import Rotator, random_rotation_id
    from orchestrator.app.service import Service
    from orchestrator.app.tick import Ticker

    kit = crypto if crypto is not None else Cryptography()
    if fence is not None:
        from orchestrator.app.fencing import FencedDelivery, FencedHooks, FencedKeystore

        keystore = FencedKeystore(keystore, fence)
        delivery = None if delivery is None else FencedDelivery(delivery, fence)
        hooks = None if hooks is None else FencedHooks(hooks, fence)
    fleet = FleetView(store, seed=None if projector is None else projector.seed)
    service = Service(store, keystore, clock, actor, kit, projector,
                      fleet=fleet if fleet_writes else None)
    local = (make_provider(provider, service.load, keystore, lambda: issuers(policies()))
             if isinstance(provider, str) else provider(service.load, keystore))
    idp = ProviderRouter(service.peek, local, identity_providers, provider_problems,
                         guard=fence or (lambda: None),
                         observe=provider_calls or (lambda _provider, _outcome: None))
    rotator = Rotator(service, idp, keystore, kit, delivery, clock, actor=rotation_actor,
                      on_step=on_step, new_rotation_id=rotation_ids or random_rotation_id,
                      hooks=hooks)
    ticker = Ticker(service, rotator, fleet, policies, clock, should_stop,
                    urgent=None if projector is None else projector.apps_due_to_expire)
    return Core(store, keystore, service, clock, fleet, idp, rotator, ticker)


def in_memory(
    clock: Callable[[], datetime],
    policies: Callable[[], Sequence[PlanPolicy]] = lambda: (),
    *,
    provider: Callable[[Callable[[str], AppState], Keystore], Provider] | str = "local",
    delivery: Delivery | None = None,
    crypto: Crypto | None = None,
    actor: str = "scheduler",
    identity_providers: Callable[[], Mapping[str, Provider]] = dict,
) -> Core:
    """An in-memory log, keystore and local provider (and the named ``identity_providers``):
    the simulator's and the tests' system."""
    from events.store import InMemoryEventStore
    from orchestrator.adapters.keystore import MemoryKeystore

    return wire(InMemoryEventStore(clock), keystore=MemoryKeystore(), clock=clock,
                policies=policies, provider=provider, delivery=delivery, crypto=crypto,
                actor=actor, rotation_actor=actor, identity_providers=identity_providers)


class BuiltProviders(Mapping[str, "Provider"]):
    """name -> provider over the current resources, each built on first access; ``built``
    (kept by the caller across reloads) holds what was built, by name, with the resource it was
    built from. A changed resource is built again; a removed one is dropped."""

    def __init__(self, resources: Mapping[str, IdentityProvider],
                 built: dict[str, tuple[IdentityProvider, Provider]],
                 build: Callable[[str, IdentityProvider], Provider]) -> None:
        self._resources = resources
        self._built = built
        self._build = build
        for gone in [name for name in built if name not in resources]:
            del built[gone]

    def __getitem__(self, name: str) -> Provider:
        resource = self._resources[name]
        cached = self._built.get(name)
        if cached is not None and cached[0] == resource:
            return cached[1]
        provider = self._build(name, resource)
        self._built[name] = (resource, provider)
        return provider

    def __iter__(self) -> Iterator[str]:
        return iter(self._resources)

    def __len__(self) -> int:
        return len(self._resources)



def fast_keys() -> Crypto:
    """RSA keys from pooled primes: real keys, real signatures, unique, but weak. The simulator
    (and tests that need thousands of keys) only; never for a credential that leaves memory."""
    from orchestrator.adapters.crypto import Cryptography, PrimePairKeys

    return Cryptography(PrimePairKeys())


def open_engine(url: str) -> Engine:
    from events.sql import create_engine

    try:
        return create_engine(url)
    except ValueError as exc:
        raise InputError(f"--db {url}: {exc}") from None
    except Exception as exc:  # malformed URL, missing driver
        raise InputError(f"--db {url}: cannot use this database URL ({exc})") from None


def ensure_schema(engine: Engine, url: str) -> bool:
    """Create the schema or bring it to head (``orchestrator init`` only); True when it had to
    be created or upgraded. A schema newer than this code is refused, never touched."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from events.sql import current_revision, known_revisions, upgrade

    try:
        revision = current_revision(engine)
        if revision == HEAD_REVISION:
            return False
        if revision is not None and revision not in known_revisions():
            raise OrchestratorError(_newer(url, revision))
        upgrade(engine)
        return True
    except (OperationalError, ProgrammingError) as exc:
        raise OrchestratorError(f"database {redacted_url(url)}: {_reason(exc)}") from None


def require_schema(engine: Engine, url: str) -> None:
    """Refuse a database whose schema is not this code's (absent, older or newer); reads only,
    so a mistyped URL leaves nothing behind. Every command but ``init`` goes through here."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from events.sql import current_revision, known_revisions

    try:
        revision = current_revision(engine)
    except (OperationalError, ProgrammingError) as exc:
        raise OrchestratorError(f"database {redacted_url(url)}: {_reason(exc)}") from None
    if revision == HEAD_REVISION:
        return
    if revision is None:
        raise OrchestratorError(_not_initialised(url))
    if revision not in known_revisions():
        raise OrchestratorError(_newer(url, revision))
    raise OrchestratorError(f"database {redacted_url(url)} is at schema {revision}, older than "
                            f"this orchestrator ({HEAD_REVISION}): run orchestrator init to "
                            "upgrade it")


def _not_initialised(url: str) -> str:
    return f"database {redacted_url(url)} is not initialised: run orchestrator init"


def _newer(url: str, revision: str) -> str:
    return (f"database {redacted_url(url)} is at schema {revision}, newer than this orchestrator "
            f"({HEAD_REVISION}): upgrade the orchestrator")


def _reason(exc: Exception) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig).strip().splitlines()[0] if orig else str(exc)


def _missing_sqlite_file(url: str) -> bool:
    """A SQLite URL naming a file that does not exist (connecting would create it)."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # open_engine reports a malformed URL
        return False
    database = parsed.database or ""
    return (parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:")
            and not database.startswith("file:") and not Path(database).exists())


def redacted_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unreadable URL)"


def bootstrap(
    settings: Settings,
    *,
    clock: Callable[[], datetime] = utc_now,
    keystore: Keystore | None = None,
    migrate: bool = True,
    daemon: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
    before_logging: Callable[[], None] = lambda: None,
    wrap_store: Callable[[EventStore], EventStore] | None = None,
    wrap_keystore: Callable[[Keystore], Keystore] | None = None,
    lease_timeout: timedelta | None = None,
    provider_calls: Callable[[str, str], None] | None = None,
) -> System:
    """Wire everything on the configured database. ``daemon=True`` keeps the fleet in memory for
    the write path too; ``wrap_store`` decorates the store the write path appends through.
    ``migrate=True`` (tests, benchmarks) creates or upgrades the schema; the command line
    passes False, so only ``orchestrator init`` does, and every other command refuses a
    database that is not initialised (creating nothing, not even a SQLite file)."""
    if not migrate and _missing_sqlite_file(settings.db):
        raise OrchestratorError(_not_initialised(settings.db))
    engine = open_engine(settings.db)
    if migrate:
        ensure_schema(engine, settings.db)
    else:
        try:
            require_schema(engine, settings.db)
        except OrchestratorError:
            engine.dispose()
            raise
    return System(settings, engine, clock, keystore=keystore, daemon=daemon,
                  should_stop=should_stop, before_logging=before_logging, wrap_store=wrap_store,
                  wrap_keystore=wrap_keystore, lease_timeout=lease_timeout,
                  provider_calls=provider_calls)


def daemon_metrics() -> DaemonMetrics:
    """The daemon's Prometheus registry and the counters it feeds (``System.serve_metrics``
    adds the rest)."""
    from orchestrator.adapters.metrics import DaemonMetrics

    return DaemonMetrics()


def create_checkpoint_key(path: Path) -> tuple[str, Path]:
    """A new checkpoint signing key at ``path`` (0600) and its public half beside it: (key id,
    the public half's path)."""
    from orchestrator.adapters.anchor_keys import create_key, public_path

    return create_key(path).key_id, public_path(path)


def checkpoint_key(public_key: Path | None, key: Path | None) -> CheckpointKey:
    """The key a verifier trusts: the public key file, else the public half of the signing
    key; refused when neither is given."""
    from orchestrator.adapters.anchor_keys import load_key, load_signer

    if public_key is not None:
        return load_key(public_key)
    if key is not None:
        return load_signer(key).key
    raise InputError("--checkpoint needs the key that signed it: give --public-key FILE (the "
                     ".pub file orchestrator checkpoint init-key wrote)")


def read_checkpoints(paths: Sequence[Path]) -> list[tuple[str, Checkpoint]]:
    from orchestrator.adapters.anchor_files import read_checkpoints as read

    return read(paths)


def issuers(policies: Sequence[PlanPolicy]) -> tuple[bytes, ...]:
    """The CA certificates the policies issue from: the ones the local provider's edge trusts."""
    return tuple(p.params.issuer_cert for p in policies if p.params.issuer_cert is not None)


def build_identity_provider(name: str, resource: IdentityProvider, *,
                            state_of: Callable[[str], AppState], keystore: Keystore,
                            wall_clock: Callable[[], float] | None = None) -> Provider:
    """The provider an IdentityProvider resource describes. Its secrets are resolved here: an
    unset variable or an unreadable file is one InputError naming the resource and the
    reference. ``wall_clock``: the adapter's own (``time.time`` by default; a provider checks
    what it is sent against its own clock, never the orchestrator's, which a test may have
    moved)."""
    import time

    if (auth0 := resource.spec.auth0) is not None:
        from orchestrator.adapters.providers.auth0 import Auth0Provider

        secret = auth0.client_secret.resolve(f"identity provider {name}: spec.auth0.clientSecret")
        limit = auth0.rate_limit
        return Auth0Provider(
            name, domain=auth0.domain, client_id=auth0.client_id,
            client_secret=secret.get_secret_value(), base_url=auth0.base_url,
            state_of=state_of, keystore=keystore,
            rate_limit=(limit.per_second, limit.bucket) if limit is not None else None,
            max_credentials=auth0.max_credentials, mtls_edge=auth0.mtls_edge,
            secret_rotation=auth0.secret_rotation, wall_clock=wall_clock or time.time)
    if (oidc := resource.spec.oidc) is not None:
        from orchestrator.adapters.providers.oidc import OidcProvider

        token = None if oidc.initial_access_token is None else oidc.initial_access_token.resolve(
            f"identity provider {name}: spec.oidc.initialAccessToken").get_secret_value()
        return OidcProvider(name, issuer=oidc.issuer, state_of=state_of, keystore=keystore,
                            initial_access_token=token, ca_file=oidc.ca_file,
                            wall_clock=wall_clock or time.time)
    raise AssertionError(f"identity provider {name}: neither auth0 nor oidc")

def make_provider(spec: str, state_of: Callable[[str], AppState], keystore: Keystore,
                  trusted_cas: Callable[[], Sequence[bytes]] = tuple) -> Provider:
    """``local`` or ``faulty:<rate>[:<seed>]`` (the local provider failing that share of calls).
    ``trusted_cas``: the CA certificates whose issued mTLS certificates the provider accepts by
    subject DN."""
    from orchestrator.adapters.providers.faulty import FaultyProvider
    from orchestrator.adapters.providers.local import LocalProvider

    local = LocalProvider(state_of, keystore, trusted_cas=trusted_cas)
    if spec == "local":
        return local
    name, _, rest = spec.partition(":")
    if name == "faulty":
        rate_text, _, seed_text = rest.partition(":")
        try:
            rate = float(rate_text or "0.1")
            seed = int(seed_text or "0")
        except ValueError:
            rate = -1.0
            seed = 0
        if 0.0 <= rate <= 1.0:
            return FaultyProvider(local, rate=rate, seed=seed)
    raise InputError(f"ORCHESTRATOR_PROVIDER={spec!r}: use local or faulty:<rate 0-1>[:<seed>]")
