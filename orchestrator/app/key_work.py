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

import json
from datetime import datetime, timedelta

from events import catalog as ev
from events.state import AppState, Credential, Rotation
from orchestrator.app.delivering import PRIVATE_KEY_FILE
from orchestrator.app.ports import Crypto, Keystore, Provider
from orchestrator.domain.errors import OrchestratorError
from orchestrator.domain.identity_provider import Proof, TestSkipped
from orchestrator.domain.material import GeneratedKey, PublicMaterial
from orchestrator.domain.rotation import Params, why_test_failed

__all__ = ["DEFAULT_LIFETIME", "METADATA_FILE", "KeyWork", "metadata_json"]

DEFAULT_LIFETIME = timedelta(days=365)
METADATA_FILE = "metadata.json"
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

    def prove(self, state: AppState, new: Credential, params: Params,
              at: datetime) -> str | None:
        """The test of ``new`` at the provider's token endpoint: raises OrchestratorError naming
        why it does not work. Returns why it was skipped, when the provider cannot test the
        usage and the policy accepts that."""
        app = state.app
        private = self.private(new.id)
        if new.usage == ev.Usage.MTLS:
            certificate = (new.certificate_pem or "").encode()
            mine = self.crypto.public_material_of_private_key(private)
            if mine.fingerprint != self.crypto.parse_pem(certificate, "new certificate").fingerprint:
                raise OrchestratorError(f"the stored private key of {new.id} does not belong to "
                                        "its certificate")
        proof = Proof(client_id=state.provider_client_id, usage=new.usage, credential=new,
                      private_key_der=private)
        try:
            accepted = self.provider.authenticate(app, proof, at)
        except TestSkipped as skipped:
            if not params.accept_untested:
                raise OrchestratorError(
                    f"the identity provider cannot test {new.usage} credentials ({skipped}); "
                    "set rotation.acceptUntested: true in the policy to rotate them untested"
                ) from None
            return f"test skipped: {skipped}"
        if accepted is not None:
            refusal = why_test_failed(state, new, accepted)
            if refusal is not None:
                raise OrchestratorError(refusal)
        return None

    def files(self, state: AppState, new: Credential) -> dict[str, bytes]:
        files = {PRIVATE_KEY_FILE: self.crypto.private_key_pem(self.private(new.id)),
                 "kid": new.kid.encode(), "credential_id": new.id.encode(),
                 METADATA_FILE: metadata_json(self.provider.metadata(state.app), new)}
        if new.alg:
            files["alg"] = new.alg.encode()
        if new.certificate_pem:
            files["certificate.pem"] = new.certificate_pem.encode()
        return files


def metadata_json(provider: dict[str, str], new: Credential) -> bytes:
    """``metadata.json``: everything the app needs beside the key to authenticate with it."""
    facts = {**provider, "kid": new.kid, "alg": new.alg, "usage": str(new.usage),
             "credential_id": new.provider_id or new.id, "orchestrator_credential_id": new.id}
    if new.subject_dn:
        facts["subject_dn"] = new.subject_dn
    return (json.dumps(facts, indent=2, sort_keys=True) + "\n").encode()
