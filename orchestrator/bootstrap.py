"""The one composition root: settings -> wired objects. The only place that knows the clock.

Settings come from the command line or the environment:

    ORCHESTRATOR_DB          database URL   (default sqlite:///var/orchestrator.db)
    ORCHESTRATOR_KEYSTORE    keystore dir   (default var/keystore)
    ORCHESTRATOR_POLICIES    policies dir   (default policies)
    ORCHESTRATOR_DELIVERY    where each app's current private key / secret is delivered
                             (default var/delivery)
    ORCHESTRATOR_PROVIDER    local (default), or faulty:<failure rate>[:<seed>] to rehearse
                             provider failures
    ORCHESTRATOR_MASTER_KEY  keystore master key, base64url of 32 bytes (default: a 0600 file
                             master.key inside the keystore, created on first use)
    ORCHESTRATOR_ACTOR       who is acting  (default cli:<login name>)
    ORCHESTRATOR_CRASH_AT    TEST-ONLY fault injection: "<point>:<n>" kills the process with
                             SIGKILL the n-th time the rotator reaches point, e.g.
                             before_record:test:1 (see orchestrator.rotator.CrashAt); never set
                             it in production
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError

from events.projector import Projector
from events.sql import SQLEventStore, create_engine, current_revision, upgrade
from events.state import AppState
from orchestrator.errors import InputError, OrchestratorError
from orchestrator.fleet import FleetView
from orchestrator.keystore import FileKeystore, Keystore
from orchestrator.policy_source import PolicySource
from orchestrator.providers import Provider
from orchestrator.providers.faulty import FaultyProvider
from orchestrator.providers.local import LocalProvider
from orchestrator.rotator import CrashAt, Rotator
from orchestrator.service import Service
from orchestrator.tick import Ticker

__all__ = ["DEFAULT_DB", "Settings", "System", "bootstrap", "utc_now"]

DEFAULT_DB = "sqlite:///var/orchestrator.db"
DEFAULT_KEYSTORE = "var/keystore"
DEFAULT_POLICIES = "policies"
DEFAULT_DELIVERY = "var/delivery"
HEAD_REVISION = "0002"


def utc_now() -> datetime:
    return datetime.now(UTC)


def _default_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no login name (containers)
        return "cli:unknown"


@dataclass(frozen=True)
class Settings:
    db: str = DEFAULT_DB
    keystore: Path = Path(DEFAULT_KEYSTORE)
    policies: Path = Path(DEFAULT_POLICIES)
    delivery: Path = Path(DEFAULT_DELIVERY)
    provider: str = "local"
    actor: str = field(default_factory=_default_actor)
    crash_at: str | None = None  # TEST-ONLY fault injection (ORCHESTRATOR_CRASH_AT)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {
            "db": env.get("ORCHESTRATOR_DB") or DEFAULT_DB,
            "keystore": Path(env.get("ORCHESTRATOR_KEYSTORE") or DEFAULT_KEYSTORE),
            "policies": Path(env.get("ORCHESTRATOR_POLICIES") or DEFAULT_POLICIES),
            "delivery": Path(env.get("ORCHESTRATOR_DELIVERY") or DEFAULT_DELIVERY),
            "provider": env.get("ORCHESTRATOR_PROVIDER") or "local",
            "actor": env.get("ORCHESTRATOR_ACTOR") or _default_actor(),
            "crash_at": env.get("ORCHESTRATOR_CRASH_AT") or None,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


@dataclass
class System:
    settings: Settings
    engine: Engine
    store: SQLEventStore
    keystore: Keystore
    projector: Projector
    service: Service
    clock: Callable[[], datetime]
    fleet: FleetView
    provider: Provider
    rotator: Rotator
    policies: PolicySource
    ticker: Ticker

    def close(self) -> None:
        self.engine.dispose()


def open_engine(url: str) -> Engine:
    try:
        return create_engine(url)
    except ValueError as exc:
        raise InputError(f"--db {url}: {exc}") from None
    except Exception as exc:  # malformed URL, missing driver
        raise InputError(f"--db {url}: cannot use this database URL ({exc})") from None


def ensure_schema(engine: Engine, url: str) -> bool:
    """Bring the schema to head; True when it had to be created or upgraded."""
    try:
        if current_revision(engine) == HEAD_REVISION:
            return False
        upgrade(engine)
        return True
    except (OperationalError, ProgrammingError) as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise OrchestratorError(f"database {_safe(url)}: {reason}") from None


def _safe(url: str) -> str:
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
) -> System:
    """Wire everything. ``daemon=True`` keeps the fleet in memory for the write path too."""
    engine = open_engine(settings.db)
    if migrate:
        ensure_schema(engine, settings.db)
    store = SQLEventStore(engine, clock=clock)
    projector = Projector(engine, store)
    ks = keystore if keystore is not None else FileKeystore(settings.keystore)
    fleet = FleetView(store)
    service = Service(store, ks, clock, settings.actor, projector,
                      fleet=fleet if daemon else None)
    provider = make_provider(settings.provider, service.load, ks)
    rotator = Rotator(service, provider, ks, settings.delivery, clock,
                      actor="scheduler" if daemon else settings.actor,
                      crash_at=_crash_at(settings.crash_at))
    policies = PolicySource(settings.policies, store, clock)
    ticker = Ticker(service, rotator, fleet, policies.current, clock, should_stop)
    return System(settings, engine, store, ks, projector, service, clock, fleet, provider,
                  rotator, policies, ticker)


def _crash_at(spec: str | None) -> CrashAt | None:
    """TEST-ONLY fault injection from ORCHESTRATOR_CRASH_AT; None (the default) in production."""
    if spec is None:
        return None
    try:
        return CrashAt.parse(spec)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def make_provider(spec: str, state_of: Callable[[str], AppState], keystore: Keystore) -> Provider:
    """``local`` or ``faulty:<rate>[:<seed>]`` (the local provider failing that share of calls)."""
    local = LocalProvider(state_of, keystore)
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
