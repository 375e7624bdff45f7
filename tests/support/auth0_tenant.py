"""An Auth0 tenant for end-to-end tests: the emulator in this process, the installed
``orchestrator`` in subprocesses pointed at it by an IdentityProvider resource in the policies
folder, and changes made at the tenant behind the orchestrator's back (the emulator's own rules
apply to them, as the Management API's would).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from orchestrator.adapters.crypto import PrimePairKeys
from tests.helpers import Cli, spki_pem
from tests.peers.auth0 import Auth0Emulator

__all__ = ["DOMAIN", "NAME", "Tenant", "key", "resource_yaml"]

NAME = "auth0-test"
DOMAIN = "drift.auth0.test"
SECRET_VARIABLE = "AUTH0_MGMT_SECRET"
PKJWT, JAR = "private_key_jwt", "signed_request_object"


_KEYS = PrimePairKeys()


@cache
def key(number: int) -> rsa.RSAPrivateKey:
    """The ``number``-th test key: real RSA-2048, made once a session from pooled primes (fast,
    unique, weak: they never leave the test)."""
    return _KEYS(2048)


def pem(number: int) -> str:
    return spki_pem(key(number)).decode()


def resource_yaml(base_url: str, name: str = NAME, extra: str = "") -> str:
    return (f"apiVersion: orchestrator/v1\nkind: IdentityProvider\nmetadata: {{name: {name}}}\n"
            f"spec:\n  auth0:\n    domain: {DOMAIN}\n    baseUrl: {base_url}\n"
            f"    clientId: emulator-management-app\n"
            f"    clientSecret: {{env: {SECRET_VARIABLE}}}\n{extra}")


class Tenant:
    def __init__(self, emu: Auth0Emulator, db_url: str, folder: Path) -> None:
        self.emu = emu
        policies = folder / "policies"
        policies.mkdir(exist_ok=True)
        (policies / "auth0.yaml").write_text(resource_yaml(emu.base_url))
        self.policies = policies
        self.cli = Cli(db_url, folder / "keystore", cwd=folder)
        self.cli.env.update(ORCHESTRATOR_POLICIES=str(policies),
                            ORCHESTRATOR_DELIVERY=str(folder / "delivery"),
                            **{SECRET_VARIABLE: emu.config.management.client_secret})

    # --- the tenant as its owners change it ------------------------------------------------

    def client(self, name: str, *attached: int, jar: Sequence[int] = (),
               pool: Sequence[int] = (), expires: datetime | None = None) -> str:
        """A client with keys ``attached`` (by test key number) in its private_key_jwt slot,
        ``jar`` in its JAR slot and ``pool`` created but attached nowhere (each expiring at
        ``expires``); its client id."""
        dated = {"expires_at": expires.isoformat()} if expires else {}
        spec: dict[str, Any] = {"name": name}
        if attached:
            spec["token_endpoint_auth_method"] = None
            spec["client_authentication_methods"] = {PKJWT: {"credentials": [
                {**_credential(n), **dated} for n in attached]}}
        if jar:
            spec[JAR] = {"credentials": [{**_credential(n), **dated} for n in jar]}
        client_id = self.emu.seed_client(spec).client_id
        for number in pool:
            self.add(client_id, number, **dated)
        return client_id

    def add(self, client_id: str, number: int, **body: Any) -> str:
        """A credential created at the tenant (attached nowhere); its id."""
        return self.emu.tenant.create_credential(client_id, {**_credential(number), **body}).id

    def attach(self, client_id: str, *ids: str, slot: str = PKJWT) -> None:
        """Make ``slot`` hold exactly ``ids``."""
        refs = [{"id": i} for i in ids]
        if slot == JAR:
            self.emu.tenant.update_client(client_id, {JAR: {"credentials": refs}})
        else:
            self.emu.tenant.update_client(client_id, {
                "token_endpoint_auth_method": None,
                "client_authentication_methods": {slot: {"credentials": refs}}})

    def delete(self, client_id: str, credential_id: str) -> None:
        """Take it out of every slot, then delete it."""
        for slot in (PKJWT, JAR):
            held = self.attached(client_id, slot)
            if credential_id in held:
                self.attach(client_id, *[i for i in held if i != credential_id], slot=slot)
        self.emu.tenant.delete_credential(client_id, credential_id)

    def redate(self, client_id: str, credential_id: str, expires_at: datetime) -> None:
        self.emu.tenant.update_credential(client_id, credential_id,
                                          {"expires_at": expires_at.isoformat()})

    def to_secret(self, client_id: str) -> None:
        """Switch the client back to a client secret (its keys leave their slot)."""
        self.emu.tenant.update_client(client_id, {"client_authentication_methods": None,
                                                  "token_endpoint_auth_method":
                                                      "client_secret_post"})

    # --- what the tenant holds ---------------------------------------------------------------

    def remote(self, client_id: str) -> dict[str, Any]:
        return next(c for c in self.emu.snapshot()["clients"] if c["client_id"] == client_id)

    def pool(self, client_id: str) -> list[dict[str, Any]]:
        return list(self.remote(client_id)["credentials"])

    def pool_ids(self, client_id: str) -> set[str]:
        return {c["id"] for c in self.pool(client_id)}

    def attached(self, client_id: str, slot: str = PKJWT) -> list[str]:
        client = self.remote(client_id)
        if slot == JAR:
            return [r["id"] for r in (client.get(JAR) or {}).get("credentials", [])]
        return list((client.get("client_authentication_methods") or {}).get(slot, []))

    def expiry(self, client_id: str, credential_id: str) -> str | None:
        return next(c["expires_at"] for c in self.pool(client_id) if c["id"] == credential_id)

    # --- the orchestrator's side ---------------------------------------------------------------

    def credentials(self, app: str) -> list[dict[str, Any]]:
        return list(self.cli("credential", "list", app, "--all", "--json").json())

    def imported(self, match: str | None = None) -> dict[str, Any]:
        args = ["import", "--provider", NAME, "--json", *(["--match", match] if match else [])]
        return dict(self.cli(*args).json())

    def drift(self, *args: str) -> Any:
        return self.cli.run("drift", *args)


def _credential(number: int) -> dict[str, Any]:
    return {"credential_type": "public_key", "pem": pem(number), "alg": "RS256",
            "name": f"test key {number}"}
