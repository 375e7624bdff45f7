"""A model identity provider and a model delivery, with state of their own, told by the explorer's
hand what each call does.

``ModelProvider`` holds what a real provider holds (Auth0's shape): credential *records* with ids
of its own (``p1``, ``p2``, ...), at most ``POOL`` of them per client; one *slot* per usage with
at most 2 records attached; one client secret and the previous one until a given instant. A CA-
issued certificate is one record per subject DN, which a successor certificate of the same DN
finds again. It judges a test the way a real one does, from the bytes: an assertion's key must
be the public key of an attached, unexpired record with that kid; a certificate must be valid
now, held with its own private key, and either be an attached self-signed record's or be issued
by the trusted CA for an attached DN; a secret must be the current one, or the previous one
before its end. Nothing of the product decides any of this: keys and certificates are read with
``cryptography`` here.

``ModelDelivery`` keeps the files last delivered per usage: what the application holds.

``accepts_held`` answers the question every invariant turns on: can the application authenticate,
right now, with what it holds?
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from events.kinds import CredentialKind
from events.state import Credential
from orchestrator.domain.errors import ProviderError
from orchestrator.domain.identity_provider import Capabilities, Proof, ProviderUnavailable
from orchestrator.domain.vocabulary import SECRET_USAGE
from tests.explore.hand import Hand

__all__ = ["POOL", "Delivered", "ModelDelivery", "ModelProvider", "ProviderState", "Record",
           "held_end", "spki_of_private", "usable_held"]

POOL = 4  # records per client (Auth0's default)
PER_SLOT = 2
DER = serialization.Encoding.DER
SPKI = serialization.PublicFormat.SubjectPublicKeyInfo


@lru_cache(maxsize=4096)
def spki_of_private(private: bytes) -> bytes:
    """The public half (SPKI DER) of a private key given as DER or PEM."""
    if private.startswith(b"-----"):
        key = serialization.load_pem_private_key(private, None,
                                                 unsafe_skip_rsa_key_validation=True)
    else:
        key = serialization.load_der_private_key(private, None,
                                                 unsafe_skip_rsa_key_validation=True)
    return key.public_key().public_bytes(DER, SPKI)


@lru_cache(maxsize=4096)
def _certificate(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


@lru_cache(maxsize=4096)
def _spki_of_public(pem: bytes) -> bytes:
    if b"CERTIFICATE" in pem:
        return _certificate(pem).public_key().public_bytes(DER, SPKI)
    return serialization.load_pem_public_key(pem).public_bytes(DER, SPKI)


@dataclass(frozen=True)
class Record:
    """A credential as the provider holds it."""

    usage: str
    kind: str  # "key", "cert" (self-signed) or "dn" (CA-issued, by subject DN)
    names: tuple[str, ...]  # the orchestrator's credential ids that found this record
    kid: str | None = None
    spki: bytes | None = None
    subject: x509.Name | None = None
    expires_at: datetime | None = None

    def alive(self, at: datetime) -> bool:
        return self.expires_at is None or at < self.expires_at


@dataclass
class ProviderState:
    records: dict[str, Record] = field(default_factory=dict)
    next_id: int = 1
    slots: dict[str, tuple[str, ...]] = field(default_factory=dict)
    secret: tuple[int, str] | None = None  # (version, value)
    previous: tuple[int, str, datetime | None] | None = None  # (version, value, valid until)
    accepted: frozenset[str] = frozenset()  # credential ids / "secret vN" it accepted in a test

    def fork(self) -> ProviderState:
        return ProviderState(dict(self.records), self.next_id, dict(self.slots), self.secret,
                             self.previous, self.accepted)

    def by_name(self, credential_id: str) -> tuple[str, Record] | None:
        for rid, rec in self.records.items():
            if credential_id in rec.names:
                return rid, rec
        return None

    def attached(self, usage: str) -> tuple[str, ...]:
        return self.slots.get(usage, ())

    def view(self, name_of: Callable[[str], str]) -> tuple[Any, ...]:
        """What the explorer compares two worlds by (key material left out: only who is who)."""
        records = tuple(sorted(
            (rid, r.usage, r.kind, tuple(sorted(name_of(n) for n in r.names)), r.expires_at)
            for rid, r in self.records.items()))
        return (records, tuple(sorted(self.slots.items())),
                self.secret[0] if self.secret else None,
                self.previous[0::2] if self.previous else None,
                tuple(sorted(name_of(a) for a in self.accepted)))


class ModelProvider:
    """The ``Provider`` port over ``ProviderState``; every call asks ``hand`` how it goes."""

    def __init__(self, state: ProviderState, hand: Hand, ca_pem: bytes | None,
                 on_effect: Callable[[str], None]) -> None:
        self.state = state
        self.hand = hand
        self.ca = _certificate(ca_pem) if ca_pem else None
        self.on_effect = on_effect  # the world checks its invariants after each effect
        self.calls: list[str] = []

    # --- how a call goes ---------------------------------------------------------------------

    def _call(self, what: str, work: Callable[[], Any]) -> Any:
        self.calls.append(what)
        outcome = self.hand.provider(what)
        if outcome == "refused":
            raise ProviderError(f"model provider: {what} refused (injected)")
        if outcome == "timeout-undone":
            raise ProviderUnavailable(f"model provider: {what} timed out (injected)")
        if outcome == "429":
            raise ProviderUnavailable(f"model provider: {what}: 429 Too Many Requests (injected)")
        before = self.state.fork()
        result = work()  # a refusal of the model's own raises here, having changed nothing
        if self._changed(before):
            self.on_effect(what)
            self.hand.after(what)
        if outcome in ("lost", "timeout-done"):
            raise ProviderUnavailable(f"model provider: {what}: the answer was lost (injected)")
        return result

    def _changed(self, before: ProviderState) -> bool:
        s = self.state
        return (before.records != s.records or before.slots != s.slots
                or before.secret != s.secret or before.previous != s.previous
                or before.accepted != s.accepted)

    # --- the port ------------------------------------------------------------------------------

    def capabilities(self, app: str) -> Capabilities:
        return Capabilities(per_slot=PER_SLOT, per_client=POOL, secret_overlap=True)

    def metadata(self, app: str) -> dict[str, str]:
        return {"issuer": "https://model.example/", "audience": "https://model.example/",
                "token_endpoint": "https://model.example/oauth/token", "client_id": app}

    def register(self, app: str, credential: Credential) -> str | None:
        return str(self._call(f"register {credential.id}", lambda: self._register(credential)))

    def activate(self, app: str, credential_id: str) -> None:
        self._call(f"activate {credential_id}", lambda: self._activate(credential_id))

    def deactivate(self, app: str, credential_id: str) -> None:
        self._call(f"deactivate {credential_id}", lambda: self._detach(credential_id))

    def remove(self, app: str, credential_id: str) -> None:
        self._call(f"remove {credential_id}", lambda: self._remove(credential_id))

    def set_secret(self, app: str, version: int, secret: str,
                   previous_valid_until: datetime | None) -> None:
        self._call(f"set_secret v{version}",
                   lambda: self._set_secret(version, secret, previous_valid_until))

    def authenticate(self, app: str, proof: Proof, at: datetime) -> str | None:
        return str(self._call(f"test {proof.credential.id if proof.credential else 'secret'}",
                              lambda: self._authenticate(proof, at)))

    # --- what the provider does ----------------------------------------------------------------

    def _register(self, cred: Credential) -> str:
        s = self.state
        if cred.kind is CredentialKind.CERT_SUBJECT_DN:
            subject = x509.Name.from_rfc4514_string(cred.subject_dn or "")
            for rid, rec in s.records.items():
                if rec.kind == "dn" and rec.subject == subject and rec.usage == cred.usage:
                    if cred.id not in rec.names:
                        s.records[rid] = Record(rec.usage, rec.kind, (*rec.names, cred.id),
                                                subject=rec.subject)
                    return rid
            fresh = Record(str(cred.usage), "dn", (cred.id,), subject=subject)
        else:
            pem = (cred.certificate_pem or cred.public_pem or "").encode()
            spki = _spki_of_public(pem)
            for rid, rec in s.records.items():
                if rec.kid == cred.kid:
                    if rec.spki != spki:
                        raise ProviderError(f"model provider: kid {cred.kid} is another key's")
                    return rid
                if rec.spki == spki:
                    raise ProviderError("model provider: this key is registered already")
            kind = "cert" if cred.kind is CredentialKind.X509_CERT else "key"
            fresh = Record(str(cred.usage), kind, (cred.id,), kid=cred.kid, spki=spki,
                           expires_at=cred.expires_at)
        if len(s.records) >= POOL:
            raise ProviderError(f"model provider: the client holds its maximum of {POOL} "
                                "credentials")
        rid = f"p{s.next_id}"
        s.next_id += 1
        s.records[rid] = fresh
        return rid

    def _activate(self, credential_id: str) -> None:
        s = self.state
        found = s.by_name(credential_id)
        if found is None:
            raise ProviderError(f"model provider: {credential_id} is not registered")
        rid, rec = found
        slot = s.attached(rec.usage)
        if rid in slot:
            return
        if len(slot) >= PER_SLOT:
            raise ProviderError(f"model provider: the {rec.usage} slot holds {PER_SLOT} already")
        s.slots[rec.usage] = (*slot, rid)

    def _detach(self, credential_id: str) -> None:
        s = self.state
        found = s.by_name(credential_id)
        if found is None:
            return
        rid, rec = found
        s.slots[rec.usage] = tuple(r for r in s.attached(rec.usage) if r != rid)

    def _remove(self, credential_id: str) -> None:
        found = self.state.by_name(credential_id)
        if found is None:
            return
        self._detach(credential_id)
        del self.state.records[found[0]]

    def _set_secret(self, version: int, value: str, until: datetime | None) -> None:
        s = self.state
        if s.secret is not None and s.secret[0] == version:
            s.secret = (version, value)
            if s.previous is not None:
                s.previous = (s.previous[0], s.previous[1], until)
            return
        s.previous = (s.secret[0], s.secret[1], until) if s.secret is not None else None
        s.secret = (version, value)

    def _authenticate(self, proof: Proof, at: datetime) -> str:
        s = self.state
        if proof.usage == SECRET_USAGE:
            version = secret_accepted(s, proof.secret or "", at)
            if version is None:
                raise ProviderError("model provider: invalid_client (client secret)")
            s.accepted = s.accepted | {f"secret v{version}"}
            return str(version)
        cred = proof.credential
        assert cred is not None and proof.private_key_der is not None
        matched = match(s, str(proof.usage), proof.private_key_der,
                        (cred.certificate_pem or "").encode() or None, cred.kid, at, self.ca)
        if matched is None:
            raise ProviderError(f"model provider: invalid_client ({cred.id})")
        s.accepted = s.accepted | {cred.id}
        return s.records[matched].names[0]


def secret_accepted(s: ProviderState, value: str, at: datetime) -> int | None:
    if s.secret is not None and s.secret[1] == value:
        return s.secret[0]
    if s.previous is not None and s.previous[1] == value and (
            s.previous[2] is not None and at < s.previous[2]):
        return s.previous[0]
    return None


def match(s: ProviderState, usage: str, private: bytes, certificate: bytes | None,
          kid: str | None, at: datetime, ca: x509.Certificate | None) -> str | None:
    """The attached record that accepts what an app presents, or None."""
    spki = spki_of_private(private)
    cert = _certificate(certificate) if certificate else None
    if cert is not None:
        if not cert.not_valid_before_utc <= at < cert.not_valid_after_utc:
            return None
        if cert.public_key().public_bytes(DER, SPKI) != spki:
            return None  # TLS needs the certificate's own private key
    for rid in s.attached(usage):
        rec = s.records[rid]
        if not rec.alive(at):
            continue
        if rec.kind == "key" and rec.spki == spki and rec.kid == kid:
            return rid
        if rec.kind == "cert" and cert is not None and rec.spki == spki:
            return rid
        if rec.kind == "dn" and cert is not None and ca is not None and cert.subject == rec.subject:
            try:
                cert.verify_directly_issued_by(ca)
            except (ValueError, TypeError, Exception):
                continue
            return rid
    return None


@dataclass(frozen=True)
class Delivered:
    """What an application holds of one usage: the files of its last delivery."""

    files: tuple[tuple[str, bytes], ...]

    def get(self, name: str) -> bytes | None:
        return dict(self.files).get(name)


class ModelDelivery:
    """The ``Delivery`` port: the application's files, per usage."""

    def __init__(self, held: dict[str, Delivered], hand: Hand,
                 on_delivery: Callable[[str, Delivered], None],
                 on_effect: Callable[[str], None]) -> None:
        self.held = held
        self.hand = hand
        self.on_delivery = on_delivery  # checks what is delivered, before the app has it
        self.on_effect = on_effect

    def deliver(self, app: str, usage: str, files: Any) -> Path:
        what = f"deliver {usage}"
        if self.hand.delivery(what) != "ok":
            raise OSError(f"{what}: No space left on device (injected)")
        delivered = Delivered(tuple(sorted((k, bytes(v)) for k, v in files.items())))
        self.on_delivery(usage, delivered)
        self.held[usage] = delivered
        self.on_effect(what)
        self.hand.after(what)
        return Path("/model") / app / usage


def usable_held(s: ProviderState, usage: str, held: Delivered | None, at: datetime,
                ca: x509.Certificate | None) -> bool:
    """Whether the application can authenticate at ``at`` with what it holds of ``usage``."""
    if held is None:
        return False
    if usage == SECRET_USAGE:
        value = held.get("client_secret")
        return value is not None and secret_accepted(s, value.decode(), at) is not None
    private = held.get("private_key.pem")
    if private is None:
        return False
    kid = held.get("kid")
    return match(s, usage, private, held.get("certificate.pem"),
                 kid.decode() if kid else None, at, ca) is not None


def held_end(s: ProviderState, usage: str, held: Delivered, at: datetime,
             ca: x509.Certificate | None) -> datetime | None:
    """When the provider stops accepting what the application holds (None: not before
    something changes, or it does not accept it now)."""
    if usage == SECRET_USAGE:
        value = (held.get("client_secret") or b"").decode()
        if s.previous is not None and s.previous[1] == value and s.previous[2] is not None and (
                at < s.previous[2]) and (s.secret is None or s.secret[1] != value):
            return s.previous[2]
        return None
    private = held.get("private_key.pem")
    kid = held.get("kid")
    cert_pem = held.get("certificate.pem")
    if private is None:
        return None
    rid = match(s, usage, private, cert_pem, kid.decode() if kid else None, at, ca)
    if rid is None:
        return None
    ends = [s.records[rid].expires_at,
            _certificate(cert_pem).not_valid_after_utc if cert_pem else None]
    return min((e for e in ends if e is not None), default=None)
