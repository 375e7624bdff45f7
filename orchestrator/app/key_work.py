"""The outside work of a key or certificate rotation's steps (the rotator records the events).

* ``material``: the new key pair (and certificate) in the keystore under the new credential id;
  a repeat after a crash finds it there rather than making another.
* ``prove``: the test. The provider must accept what the app will present: a client assertion
  signed with the new key, or the new certificate (a CA-issued one is matched by its subject DN
  and its chain to the CA; a self-signed one by its key). For a certificate the private key the
  app will be given must also be the certificate's own.
* ``files``: what the app's delivery folder holds for the new credential.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from events import catalog as ev
from events.state import AppState, Credential, Rotation
from orchestrator.app.ports import Crypto, Keystore, Provider
from orchestrator.domain.errors import OrchestratorError
from orchestrator.domain.material import GeneratedKey, PublicMaterial
from orchestrator.domain.rotation import Params, why_test_failed
from orchestrator.domain.vocabulary import DEFAULT_ALGORITHM

__all__ = ["DEFAULT_LIFETIME", "KeyWork"]

DEFAULT_LIFETIME = timedelta(days=365)
BACKDATE = timedelta(minutes=5)  # a new certificate is valid a little before now (clock skew)


class KeyWork:
    def __init__(self, keystore: Keystore, crypto: Crypto, provider: Provider) -> None:
        self.keystore = keystore
        self.crypto = crypto
        self.provider = provider

    def material(self, app: str, rotation: Rotation, params: Params,
                 at: datetime) -> PublicMaterial:
        """The new credential's public material, its private part stored (made once)."""
        new_id = rotation.new_credential_id
        private = self.keystore.get(new_id)
        cert = self.keystore.get(f"{new_id}/certificate")
        if private is None or (rotation.usage == ev.Usage.MTLS and cert is None):
            generated = self._new_key(app, rotation.usage, params, at,
                                      at + (params.lifetime or DEFAULT_LIFETIME))
            if generated.material.certificate_pem is not None:
                self.keystore.put(f"{new_id}/certificate",
                                  generated.material.certificate_pem.encode())
            self.keystore.put(new_id, generated.private_key_der)  # last: marks the key complete
            return generated.material
        return (self.crypto.parse_pem(cert, "stored certificate") if cert is not None
                else self.crypto.public_material_of_private_key(private))

    def _new_key(self, app: str, usage: str, params: Params, not_before: datetime,
                 not_after: datetime) -> GeneratedKey:
        if usage != ev.Usage.MTLS:
            return self.crypto.generate_rsa(params.key_size)
        subject = (params.subject or "CN={app}").replace("{app}", app)
        if params.issuer_cert is not None and params.issuer_key is not None:
            return self.crypto.issue_certificate(params.issuer_cert, params.issuer_key, subject,
                                                 params.key_size, not_before - BACKDATE, not_after)
        cn = subject.split("CN=", 1)[-1].split(",", 1)[0] if "CN=" in subject else app
        return self.crypto.generate_self_signed(params.key_size, cn, not_before - BACKDATE,
                                                not_after)

    def private(self, credential_id: str) -> bytes:
        private = self.keystore.get(credential_id)
        if private is None:
            raise OrchestratorError(f"keystore has no private key for {credential_id}")
        return private

    def prove(self, state: AppState, new: Credential, at: datetime) -> None:
        """The test of ``new``: raises OrchestratorError naming why it does not work."""
        app = state.app
        if new.usage == ev.Usage.MTLS:
            certificate = (new.certificate_pem or "").encode()
            mine = self.crypto.public_material_of_private_key(self.private(new.id))
            if mine.fingerprint != self.crypto.parse_pem(certificate, "new certificate").fingerprint:
                raise OrchestratorError(f"the stored private key of {new.id} does not belong to "
                                        "its certificate")
            accepted = self.provider.verify_certificate(app, certificate.decode(), at)
        else:
            token = self.crypto.sign_client_assertion(
                self.private(new.id), alg=new.alg or DEFAULT_ALGORITHM, kid=new.kid,
                client_id=app, audience=self.provider.audience, now=at)
            accepted = self.provider.verify_assertion(app, token, at)
        refusal = why_test_failed(state, new, accepted)
        if refusal is not None:
            raise OrchestratorError(refusal)

    def files(self, new: Credential) -> dict[str, bytes]:
        files = {"private_key.pem": self.crypto.private_key_pem(self.private(new.id)),
                 "kid": new.kid.encode(), "credential_id": new.id.encode()}
        if new.alg:
            files["alg"] = new.alg.encode()
        if new.certificate_pem:
            files["certificate.pem"] = new.certificate_pem.encode()
        return files
