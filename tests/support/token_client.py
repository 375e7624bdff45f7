"""TEST-ONLY live client: an application that knows only its delivery folder, asking the identity
provider for tokens continuously while the daemon rotates its credential.

    python tests/support/token_client.py --folder DELIVERY/<app>/<usage> --stats OUT.json
        [--ca-file CA.pem] [--keep DIR] [--stop-file FILE] [--audience AUD] [--pause S]

Each request reads one version of the folder's files through ``..data`` (opened once, as a
reader that needs consistency does: orchestrator/adapters/delivery.py), and authenticates with
what it holds, as the app would:

* ``private_key_jwt``: a client assertion (RFC 7523) signed with ``private_key.pem``, ``kid`` and
  ``alg`` from ``metadata.json``, at ``token_endpoint`` (client_credentials grant);
* ``jar``: a request object signed with the key, pushed to ``par_endpoint`` (RFC 9126), the client
  authenticating as ``metadata.json`` says (``client_auth``: none or private_key_jwt);
* ``mtls``: ``certificate.pem`` and ``private_key.pem`` on the TLS connection;
* ``client_secret``: ``client_secret`` in the form (client_secret_post).

A request counts as OK when the provider authenticated the client (200, or an error after
authentication such as unauthorized_client / access_denied: the app may hold no grant); a
FAILURE is a refusal of the credential (401, invalid_client, invalid_request_object) or a
transport error. The counts go to ``--stats`` (rewritten every 50 requests and at the end);
``--keep`` saves every distinct version seen (to replay an old credential after its rotation).
The client stops when ``--stop-file`` exists or on SIGTERM. Nothing here imports the
orchestrator: it is the application's side, written from the delivery folder's contract.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import ssl
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
AUTHENTICATED_ERRORS = {"unauthorized_client", "access_denied", "invalid_grant", "invalid_scope",
                        "invalid_target", "unsupported_grant_type"}


def read_version(folder: Path) -> tuple[str, dict[str, bytes]]:
    """(version name, files) of one version of the delivery folder."""
    for _ in range(10):
        try:
            version = os.readlink(folder / "..data")
            fd = os.open(folder / "..data", os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            continue
        try:
            files = {}
            for entry in os.listdir(fd):
                file_fd = os.open(entry, os.O_RDONLY, dir_fd=fd)
                with os.fdopen(file_fd, "rb") as handle:
                    files[entry] = handle.read()
            return version, files
        except FileNotFoundError:  # replaced while reading: open ..data again
            continue
        finally:
            os.close(fd)
    raise RuntimeError(f"{folder}: no stable version to read")


def sign(files: dict[str, bytes], meta: dict[str, Any], claims: dict[str, Any]) -> str:
    headers = {"kid": meta["kid"]} if meta.get("kid") else {}
    return jwt.encode(claims, files["private_key.pem"], algorithm=meta.get("alg") or "RS256",
                      headers=headers)


def assertion(files: dict[str, bytes], meta: dict[str, Any], audience: str) -> str:
    now = int(time.time())
    client_id = meta["client_id"]
    return sign(files, meta, {"iss": client_id, "sub": client_id, "aud": audience, "iat": now,
                              "exp": now + 60, "jti": uuid.uuid4().hex})


class Client:
    def __init__(self, args: argparse.Namespace) -> None:
        self.folder = Path(args.folder)
        self.ca_file = args.ca_file
        self.audience = args.audience
        self.keep = Path(args.keep) if args.keep else None
        self.stats: dict[str, Any] = {"requests": 0, "ok": 0, "failures": 0, "versions": [],
                                      "failure_samples": [], "statuses": {}}
        self._http: httpx.Client | None = None
        self._http_version: str | None = None
        self._tmp = Path(args.stats).with_suffix(".tls")

    def http(self, version: str, files: dict[str, bytes], usage: str) -> httpx.Client:
        if self._http is not None and (usage != "mtls" or self._http_version == version):
            return self._http
        if self._http is not None:
            self._http.close()
        verify: ssl.SSLContext | bool = True
        context = ssl.create_default_context(cafile=self.ca_file) if self.ca_file else None
        if usage == "mtls":
            context = context or ssl.create_default_context()
            self._tmp.mkdir(mode=0o700, exist_ok=True)
            cert, key = self._tmp / "cert.pem", self._tmp / "key.pem"
            cert.write_bytes(files["certificate.pem"])
            key.touch(mode=0o600)
            key.write_bytes(files["private_key.pem"])
            context.load_cert_chain(cert, key)
            cert.unlink()
            key.unlink()
        if context is not None:
            verify = context
        self._http = httpx.Client(verify=verify, timeout=10.0)
        self._http_version = version
        return self._http

    def once(self) -> None:
        version, files = read_version(self.folder)
        meta = json.loads(files["metadata.json"])
        usage = meta.get("usage", "private_key_jwt")
        if version not in self.stats["versions"]:
            self.stats["versions"].append(version)
            if self.keep is not None:
                target = self.keep / f"{len(self.stats['versions']):03d}"
                target.mkdir(parents=True, exist_ok=True)
                for name, data in files.items():
                    (target / name).write_bytes(data)
        http = self.http(version, files, usage)
        aud = self.audience or meta.get("audience") or meta["issuer"]
        form: dict[str, str] = {"client_id": meta["client_id"]}
        url = meta["token_endpoint"]
        if usage == "jar":
            url = meta["par_endpoint"]
            now = int(time.time())
            form.update({"request": sign(files, meta, {
                "iss": meta["client_id"], "aud": meta["issuer"], "client_id": meta["client_id"],
                "response_type": "code", "scope": "openid",
                "redirect_uri": meta.get("redirect_uri", "https://app.example/cb"),
                "iat": now, "exp": now + 60, "nbf": now, "jti": uuid.uuid4().hex})})
            if meta.get("client_auth") == "private_key_jwt":
                form.update({"client_assertion_type": ASSERTION_TYPE,
                             "client_assertion": assertion(files, meta, aud)})
        else:
            form["grant_type"] = "client_credentials"
            if meta.get("api_audience"):
                form["audience"] = meta["api_audience"]
            if usage in ("private_key_jwt",):
                form.update({"client_assertion_type": ASSERTION_TYPE,
                             "client_assertion": assertion(files, meta, aud)})
            elif usage == "client_secret":
                form["client_secret"] = files["client_secret"].decode()
        self.stats["requests"] += 1
        try:
            answer = http.post(url, data=form)
            status = answer.status_code
            try:
                error = answer.json().get("error") if status >= 400 else None
            except ValueError:
                error = "malformed answer"
        except httpx.HTTPError as exc:
            status, error = 0, f"{type(exc).__name__}: {exc}"
        key = str(status)
        self.stats["statuses"][key] = self.stats["statuses"].get(key, 0) + 1
        if status in (200, 201) or (status in (400, 403) and error in AUTHENTICATED_ERRORS):
            self.stats["ok"] += 1
        else:
            self.stats["failures"] += 1
            if len(self.stats["failure_samples"]) < 20:
                self.stats["failure_samples"].append(
                    {"at": time.time(), "status": status, "error": error, "version": version,
                     "kid": meta.get("kid")})

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        shutil.rmtree(self._tmp, ignore_errors=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--folder", required=True)
    parser.add_argument("--stats", required=True)
    parser.add_argument("--ca-file")
    parser.add_argument("--keep")
    parser.add_argument("--stop-file")
    parser.add_argument("--audience")
    parser.add_argument("--pause", type=float, default=0.0)
    args = parser.parse_args(argv)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    client = Client(args)
    stats_path = Path(args.stats)

    def write() -> None:
        tmp = stats_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(client.stats))
        tmp.replace(stats_path)

    print("ready", flush=True)
    try:
        while not stopping and not (args.stop_file and Path(args.stop_file).exists()):
            client.once()
            if client.stats["requests"] % 50 == 0:
                write()
            if args.pause:
                time.sleep(args.pause)
    finally:
        write()
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
