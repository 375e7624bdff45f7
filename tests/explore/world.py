"""One world of the exploration: the real service layer (``bootstrap.wire``: service, fleet,
rotator, ticker, planner) over an in-memory log and keystore, the model provider and delivery, a
clock that stands still, and the hand that answers every effect.

A ``Snapshot`` is everything that survives a crash: the log, the keystore, the provider's and
the application's state, the time, and the explorer's budgets. ``World(snapshot, hand)`` builds
a fresh process on it (nothing in memory survives from the last move, as after a restart),
``tick()`` runs one daemon tick until one rotation step is recorded (or the tick ends, or the
hand crashes it), and ``snapshot()`` is the world after. Invariants are judged after every effect
(``effect``) and on every delivery here, and on every world between moves by ``rest``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from events.state import AppState
from events.store import InMemoryEventStore, NewEvent, ReadFilter, Recorded
from orchestrator.adapters.crypto import Cryptography, PrimePairKeys
from orchestrator.adapters.keystore import MemoryKeystore
from orchestrator.bootstrap import Core, wire
from orchestrator.domain.planner import PlanPolicy
from orchestrator.domain.vocabulary import SECRET_USAGE
from tests.explore.hand import Hand, Pause, Stop
from tests.explore.judge import LogFold, Violation
from tests.explore.model import (
    Delivered,
    ModelDelivery,
    ModelProvider,
    ProviderState,
    spki_of_private,
    usable_held,
)

__all__ = ["APP", "Budget", "KeyPool", "Scenario", "Snapshot", "World", "fingerprint",
           "spki_of_cert"]

APP = "app"


class KeyPool:
    """RSA keys for the exploration: a fixed pool, handed out by index, so that a replayed
    path makes the same keys (pooled primes: real, fast, weak; they never leave the test)."""

    def __init__(self, size: int = 96) -> None:
        source = PrimePairKeys()
        self.keys = [source(2048) for _ in range(size)]

    def __getitem__(self, index: int) -> rsa.RSAPrivateKey:
        if index >= len(self.keys):
            raise AssertionError(f"a path made more than {len(self.keys)} keys")
        return self.keys[index]


@dataclass(frozen=True)
class Budget:
    faults: int
    crashes: int
    jumps: int  # jumps of the clock to the end of the old credential


@dataclass(frozen=True)
class Snapshot:
    records: tuple[Recorded, ...]
    claims: tuple[tuple[tuple[str, str], str], ...]
    state: AppState  # the product's fold (the fleet view's), kept to build the next world fast
    keystore: tuple[tuple[str, bytes], ...]
    provider: ProviderState
    held: tuple[tuple[str, Delivered], ...]
    log: LogFold  # the oracle's fold
    now: datetime
    budget: Budget
    had: bool  # the application has held a usable credential of the usage
    stranded: bool  # ... and holds none now: time took it (an expiry)

    def at(self, now: datetime, ca: x509.Certificate | None, usage: str,
           budget: Budget | None = None) -> Snapshot:
        """The same world later."""
        usable = usable_held(self.provider, usage, dict(self.held).get(usage), now, ca)
        return replace(self, now=now, budget=budget or self.budget, had=self.had or usable,
                       stranded=(self.had or usable) and not usable)


def _rel(t: datetime | None, t0: datetime) -> float | None:
    return None if t is None else (t - t0).total_seconds()


def fingerprint(s: Snapshot, t0: datetime) -> tuple[Any, ...]:
    """What two worlds are compared by: everything the product and the checks read, without
    key material (which credential is which is kept: ids are replayed exactly), and without the
    budgets (``Snapshot.budget``, compared apart)."""
    st = s.state
    creds = tuple(sorted(
        (c.id, c.usage, c.kind, c.status, c.alg, c.key_size, _rel(c.not_before, t0),
         _rel(c.expires_at, t0), c.generated, _rel(c.activated_at, t0), _rel(c.disabled_at, t0),
         _rel(c.expired_at, t0), _rel(c.deleted_at, t0), c.provider_id, c.subject_dn)
        for c in st.credentials.values()))
    rots = tuple(
        (r.id, r.usage, r.reason, r.new_credential_id, r.old_credential_id, r.status, r.policy,
         r.steps, r.attempts, _rel(r.started_at, t0), _rel(r.updated_at, t0),
         _rel(r.next_attempt_at, t0), _rel(r.completed_at, t0), _rel(r.tested_at, t0))
        for r in st.rotations.values())
    secret = (None if st.secret is None else
              (st.secret.version, _rel(st.secret.rotated_at, t0),
               _rel(st.secret.previous_valid_until, t0)))
    held = tuple(sorted((u, d.get("credential_id") or d.get("version")) for u, d in s.held))
    return (creds, rots, secret, tuple(k for k, _ in s.keystore), s.provider.view(str), held,
            _rel(s.now, t0), s.had, s.stranded)


class EffectStore:
    """The in-memory store; every append is an effect the hand may crash after."""

    def __init__(self, inner: InMemoryEventStore, world: World) -> None:
        self.inner = inner
        self.world = world

    def append(self, stream_id: str, events: Sequence[NewEvent],
               expected_version: int) -> list[Recorded]:
        self.world.hand.check_alive()
        records = self.inner.append(stream_id, events, expected_version)
        what = "append " + "+".join(r.type for r in records)
        self.world.log.feed(records)
        self.world.effect(what)
        self.world.hand.after(what)
        return records

    def read(self, where: ReadFilter = ReadFilter()) -> Iterator[Recorded]:
        return self.inner.read(where)


class EffectKeystore(MemoryKeystore):
    def __init__(self, items: dict[str, bytes], hand: Hand) -> None:
        super().__init__()
        for k, v in items.items():
            MemoryKeystore.put(self, k, v)
        self.hand = hand

    def put(self, item_id: str, data: bytes) -> None:
        self.hand.check_alive()
        super().put(item_id, data)
        self.hand.after(f"keystore put {item_id}")

    def put_new(self, item_id: str, data: bytes) -> bytes:
        self.hand.check_alive()
        had = self.get(item_id) is not None
        stored = super().put_new(item_id, data)
        if not had:
            self.hand.after(f"keystore put {item_id}")
        return stored

    def delete(self, item_id: str) -> None:
        self.hand.check_alive()
        if self.get(item_id) is not None:
            super().delete(item_id)
            self.hand.after(f"keystore delete {item_id}")

    def items(self) -> tuple[tuple[str, bytes], ...]:
        return tuple((k, self.get(k) or b"") for k in self.ids())


class ExplorerCrypto(Cryptography):
    """The real crypto port with ids and keys drawn from what the log holds (``serial``): a
    rotation, its new credential and that credential's key are numbered by the rotations and
    credentials recorded so far, so a step repeated after a crash makes the same ones, and a
    replayed path makes the same ones too."""

    def __init__(self, pool: KeyPool, serial: Callable[[str], int]) -> None:
        super().__init__(self._key)
        self.pool = pool
        self.serial = serial  # event type -> how many of them the log holds

    def _key(self, key_size: int) -> rsa.RSAPrivateKey:
        return self.pool[self.serial("credential.added")]

    def new_credential_id(self) -> str:
        return f"cred_{self.serial('rotation.started') + 1:04d}"

    def rotation_id(self) -> str:
        return f"rot_{self.serial('rotation.started') + 1:04d}"


@dataclass
class Scenario:
    usage: str
    name: str  # fresh, capacity
    policy: PlanPolicy
    ca_pem: bytes | None = None
    t0: datetime = datetime(2027, 1, 4, 9, 0)
    label: str = ""  # e.g. "mtls (CA-issued)"
    root_held: str | None = None  # the credential (or secret version) the app holds at the root
    root_rotations: frozenset[str] = frozenset()  # the rotations that ran before the root

    @property
    def ca(self) -> x509.Certificate | None:
        return x509.load_pem_x509_certificate(self.ca_pem) if self.ca_pem else None


def spki_of_cert(cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)


def _fork_store(s: Snapshot, clock: Callable[[], datetime]) -> InMemoryEventStore:
    store = InMemoryEventStore(clock)
    records = list(s.records)
    store._records = records
    streams: dict[str, list[Recorded]] = {}
    versions: dict[str, int] = {}
    for rec in records:
        streams.setdefault(rec.stream_id, []).append(rec)
        versions[rec.stream_id] = rec.stream_version
    store._streams = streams
    store._versions = versions
    store._claims = dict(s.claims)
    return store


@dataclass
class World:
    scenario: Scenario
    snap: Snapshot
    hand: Hand
    pool: KeyPool
    violations: list[Violation] = field(default_factory=list)

    def __post_init__(self) -> None:
        s, sc = self.snap, self.scenario
        self.now = s.now
        self.usage = sc.usage
        self.ca = sc.ca
        self.log = s.log.fork()
        self.inner = _fork_store(s, lambda: self.now)
        self.keystore = EffectKeystore(dict(s.keystore), self.hand)
        self.provider = ModelProvider(s.provider.fork(), self.hand, sc.ca_pem, self.effect)
        self.held = dict(s.held)
        self.delivery = ModelDelivery(self.held, self.hand, self._delivered, self.effect)
        self.crypto = ExplorerCrypto(self.pool, self._serial)
        self.policies = (sc.policy,)
        self.had, self.stranded = s.had, s.stranded
        self.usable = usable_held(s.provider, self.usage, self.held.get(self.usage), self.now,
                                  self.ca)
        self._before = s.provider
        self.core: Core = wire(
            EffectStore(self.inner, self), keystore=self.keystore, clock=lambda: self.now,
            policies=lambda: self.policies, provider=lambda load, ks: self.provider,
            delivery=self.delivery, crypto=self.crypto, actor="scheduler",
            on_step=self._pause, rotation_ids=self.crypto.rotation_id)
        fleet = self.core.fleet
        fleet._states = {APP: s.state} if s.state.registered else {}
        fleet.position = s.records[-1].position if s.records and s.state.registered else 0

    def _serial(self, event_type: str) -> int:
        return sum(r.type == event_type for r in self.inner.read())

    # --- running -------------------------------------------------------------------------------

    def _pause(self, app: str, rotation_id: str, step: object) -> None:
        self.hand.stop(Pause(f"{rotation_id} {step}"))

    def tick(self) -> None:
        with contextlib.suppress(Stop):
            self.core.ticker.tick()

    def do(self, action: Callable[[Core], object]) -> None:
        """An action of the setup (or an operator's) on this world."""
        with contextlib.suppress(Stop):
            action(self.core)

    def snapshot(self) -> Snapshot:
        self.core.fleet.refresh()
        state = self.core.fleet.get(APP)
        used = self.hand
        b = self.snap.budget
        return Snapshot(
            records=tuple(self.inner.read()), claims=tuple(self.inner._claims.items()),
            state=state, keystore=self.keystore.items(), provider=self.provider.state,
            held=tuple(sorted(self.held.items())), log=self.log, now=self.now,
            budget=Budget(b.faults - used.faults_used, b.crashes - used.crashes_used, b.jumps),
            had=self.had, stranded=self.stranded)

    # --- judging -------------------------------------------------------------------------------

    def violate(self, invariant: str, message: str) -> None:
        self.violations.append(Violation(invariant, message, tuple(self.hand.labels)))

    def effect(self, what: str) -> None:
        """After every effect: nothing the orchestrator does takes the last usable credential
        away, nor detaches the old one before its successor is tested and held."""
        for invariant, message in self.log.problems:
            self.violate(invariant, f"after {what}: {message}")
        self.log.problems.clear()
        now = usable_held(self.provider.state, self.usage, self.held.get(self.usage), self.now,
                          self.ca)
        if self.usable and not now:
            self.violate("keeps_a_usable_credential",
                         f"{what} took away the last {self.usage} credential the application "
                         "holds that the provider accepts")
        self.usable = now
        if now:
            self.had, self.stranded = True, False
        self._retired(what)
        self._at_most_two(what)
        self._before = self.provider.state.fork()

    def _retired(self, what: str) -> None:
        before, after = self._before, self.provider.state
        gone = [rid for rid in before.attached(self.usage)
                if rid not in after.attached(self.usage) and before.records[rid].alive(self.now)]
        rot = self.log.in_flight(self.usage)
        for rid in gone:
            if rot is None or rot.old is None or rot.old not in before.records[rid].names:
                continue
            held = self.held.get(self.usage)
            holds_new = held is not None and held.get("credential_id") == rot.new.encode()
            if rot.new not in after.accepted or not holds_new:
                self.violate("old_retired_after_successor",
                             f"{what} detached the old credential {rot.old} before "
                             f"{rot.new} was " + ("accepted by the provider's test"
                                                 if rot.new not in after.accepted
                                                 else "delivered to the application"))

    def _at_most_two(self, what: str) -> None:
        s = self.provider.state
        records = [r for r in s.records.values() if r.usage == self.usage]
        if len(records) > 2:
            self.violate("at_most_two_live",
                         f"after {what} the provider holds {len(records)} {self.usage} records")
        if len(s.attached(self.usage)) > 2:
            self.violate("at_most_two_live", f"after {what} the {self.usage} slot holds "
                         f"{len(s.attached(self.usage))}")

    def _delivered(self, usage: str, files: Delivered) -> None:
        s = self.provider.state
        if usage == SECRET_USAGE:
            value = (files.get("client_secret") or b"").decode()
            version = int(files.get("version") or b"0")
            if s.secret is None or s.secret != (version, value):
                self.violate("delivered_key_belongs",
                             f"delivered client secret v{version} is not the provider's current "
                             f"one (v{s.secret[0] if s.secret else None})")
            if f"secret v{version}" not in s.accepted:
                self.violate("delivered_key_belongs",
                             f"delivered client secret v{version} never passed the test")
            return
        cid = (files.get("credential_id") or b"").decode()
        private = files.get("private_key.pem") or b""
        spki = spki_of_private(private)
        cert_pem = files.get("certificate.pem")
        if cert_pem is not None:
            cert = x509.load_pem_x509_certificate(cert_pem)
            if spki_of_cert(cert) != spki:
                self.violate("delivered_key_belongs",
                             f"delivered {cid}: the private key is not the certificate's")
        found = s.by_name(cid)
        if found is None:
            self.violate("delivered_key_belongs", f"delivered {cid}, which the provider lacks")
        else:
            rec = found[1]
            if rec.spki is not None and rec.spki != spki:
                self.violate("delivered_key_belongs",
                             f"delivered {cid}: the private key is not the registered key")
            if rec.kid is not None and (files.get("kid") or b"").decode() != rec.kid:
                self.violate("delivered_key_belongs", f"delivered {cid} with another kid")
        if cid not in s.accepted:
            self.violate("delivered_key_belongs",
                         f"delivered {cid}, which never passed the provider's test")
        if not usable_held(s, usage, files, self.now, self.ca):
            self.violate("delivered_key_belongs",
                         f"delivered {cid}, which the provider does not accept now")
