"""The local provider: the orchestrator's own log acts as the identity provider's registry.

Credentials are what the event log says they are (``state_of(app)``): registering, activating
and deactivating are recorded by the orchestrator itself, so here they only check the log agrees.
Verification follows the identity provider's rules: a client assertion must be signed by an
active, unexpired credential of the app (found by ``kid``, or any when the header has none) and
pass the assertion checks of ``crypto.verify_client_assertion``; an mTLS certificate must be
valid now and match an active self-signed certificate (by key fingerprint), or be issued by a CA
the provider trusts and match an active CA-issued one (by subject DN: the customer edge verifies
the chain and the identity provider compares the DN; a new certificate of the same DN from the
same CA needs no change here); a client secret is checked in constant time against salted hashes kept in the
keystore (``idp/<app>/secret/v<N>``), the previous version only until its grace period ends.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime

from events import catalog as ev
from events.codec import format_time, parse_time
from events.state import AppState, Credential
from orchestrator.adapters import crypto
from orchestrator.app.ports import Keystore
from orchestrator.domain.errors import ProviderError
from orchestrator.domain.identity_provider import Capabilities, Proof
from orchestrator.domain.vocabulary import DEFAULT_ALGORITHM, SECRET_USAGE

__all__ = ["LOCAL_CAPABILITIES", "LocalProvider"]

# two per usage, any number of records, a secret whose previous version overlaps, all testable
LOCAL_CAPABILITIES = Capabilities()

SIGNING_USAGES = (ev.Usage.PRIVATE_KEY_JWT, ev.Usage.JAR)


class LocalProvider:
    def __init__(self, state_of: Callable[[str], AppState], keystore: Keystore,
                 audience: str = "https://orchestrator.local/",
                 trusted_cas: Callable[[], Iterable[bytes]] = tuple) -> None:
        self._state_of = state_of
        self._keystore = keystore
        self.audience = audience
        self._trusted_cas = trusted_cas  # CA certificates (PEM) the edge verifies chains to

    def _credential(self, app: str, credential_id: str) -> Credential:
        cred = self._state_of(app).credentials.get(credential_id)
        if cred is None:
            raise ProviderError(f"provider: application {app!r} has no credential {credential_id}")
        return cred

    def capabilities(self, app: str) -> Capabilities:
        return LOCAL_CAPABILITIES

    def metadata(self, app: str) -> dict[str, str]:
        return {"issuer": self.audience, "token_endpoint": f"{self.audience}oauth/token",
                "audience": self.audience, "client_id": self._state_of(app).provider_client_id}

    def register(self, app: str, credential: Credential) -> str | None:
        self._credential(app, credential.id)
        return None  # the log is the registry: the credential id is the only id

    def activate(self, app: str, credential_id: str) -> None:
        self._credential(app, credential_id)

    def deactivate(self, app: str, credential_id: str) -> None:
        self._credential(app, credential_id)

    def remove(self, app: str, credential_id: str) -> None:
        return None

    def authenticate(self, app: str, proof: Proof, at: datetime) -> str | None:
        """The test, as the identity provider would run it: the new secret, the new certificate,
        or a client assertion signed with the new key."""
        if proof.usage == SECRET_USAGE:
            return str(self.verify_secret(app, proof.secret or "", at))
        cred = proof.credential
        if cred is None or proof.private_key_der is None:
            raise ProviderError("provider: the test needs the credential and its private key")
        if proof.usage == ev.Usage.MTLS:
            return self.verify_certificate(app, cred.certificate_pem or "", at)
        token = crypto.sign_client_assertion(
            proof.private_key_der, alg=cred.alg or DEFAULT_ALGORITHM, kid=cred.kid,
            client_id=proof.client_id, audience=self.audience, now=at)
        return self.verify_assertion(app, token, at)

    # --- secrets -----------------------------------------------------------------------------

    def _secret_item(self, app: str, version: int) -> str:
        return f"idp/{app}/secret/v{version}"

    def set_secret(self, app: str, version: int, secret: str,
                   previous_valid_until: datetime | None) -> None:
        record = {"hash": crypto.hash_secret(secret), "version": version}
        self._keystore.put(self._secret_item(app, version), json.dumps(record).encode())
        meta = {"current": version, "previous_valid_until":
                format_time(previous_valid_until) if previous_valid_until else None}
        self._keystore.put(f"idp/{app}/secret", json.dumps(meta).encode())
        for old in range(1, version - 1):  # keep the current and the previous version only
            self._keystore.delete(self._secret_item(app, old))

    def verify_secret(self, app: str, secret: str, at: datetime) -> int:
        raw = self._keystore.get(f"idp/{app}/secret")
        if raw is None:
            raise ProviderError(f"provider: application {app!r} has no client secret")
        meta = json.loads(raw)
        candidates = [meta["current"]]
        until = meta["previous_valid_until"]
        if until is not None and at < parse_time(until):
            candidates.append(meta["current"] - 1)
        for version in candidates:
            stored = self._keystore.get(self._secret_item(app, version))
            if stored is not None and crypto.check_secret(secret, json.loads(stored)["hash"]):
                return int(version)
        raise ProviderError(f"provider: invalid client secret for {app!r}")

    # --- keys and certificates -----------------------------------------------------------------

    def verify_assertion(self, app: str, assertion: str, at: datetime) -> str:
        import jwt  # here: wiring the provider (every command that builds the service) skips it

        try:
            kid = jwt.get_unverified_header(assertion).get("kid")
        except jwt.InvalidTokenError:
            raise ProviderError("provider: invalid_client: not a JWT") from None
        state = self._state_of(app)
        candidates = [
            c for c in state.credentials.values()
            if c.usage in SIGNING_USAGES and c.usable(at) and (kid is None or c.kid == kid)
        ]
        if not candidates:
            raise ProviderError(f"provider: invalid_client: no active credential of {app!r} "
                                f"has kid {kid!r}")
        last: Exception | None = None
        for cred in candidates:
            try:
                crypto.verify_client_assertion(
                    assertion, public_pem=cred.public_pem or "", alg=cred.alg or DEFAULT_ALGORITHM,
                    client_id=state.provider_client_id, audience=self.audience, now=at,
                )
                return cred.id
            except ProviderError as exc:
                last = exc
        raise ProviderError(f"provider: invalid_client: {last}")

    def verify_certificate(self, app: str, certificate_pem: str, at: datetime) -> str:
        material = crypto.parse_pem(certificate_pem.encode(), "client certificate")
        if (material.not_before and at < material.not_before) or (
                material.not_after and material.not_after <= at):
            raise ProviderError("provider: client certificate is outside its validity period")
        ca_verified = any(crypto.issued_by(certificate_pem.encode(), ca, at)
                          for ca in self._trusted_cas())
        by_dn: list[Credential] = []
        for cred in self._state_of(app).credentials.values():
            if cred.usage != ev.Usage.MTLS or not cred.usable(at):
                continue
            if cred.kind is ev.CredentialKind.X509_CERT and cred.fingerprint == material.fingerprint:
                return cred.id  # a self-signed certificate: matched by its key
            if (ca_verified and cred.kind is ev.CredentialKind.CERT_SUBJECT_DN
                    and cred.subject_dn == material.subject_dn):
                by_dn.append(cred)
        if by_dn:  # one registration of the DN at the identity provider
            return min(by_dn, key=lambda c: (c.added_at, c.id)).id
        raise ProviderError(f"provider: no active mTLS credential of {app!r} matches the "
                            "certificate" + ("" if ca_verified else
                                             " (nor is it issued by a trusted CA)"))
