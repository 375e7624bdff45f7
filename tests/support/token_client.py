"""TEST-ONLY live client: an application that knows only its delivery folder, asking the identity
provider for tokens continuously while the daemon rotates its credential.

    python tests/support/token_client.py --folder DELIVERY/<app>/<usage> --stats OUT.json
        [--ca-file CA.pem] [--keep DIR] [--stop-file FILE] [--audience AUD]
        [--api-audience API] [--client-auth none|private_key_jwt] [--pause S]

Each request reads one version of the folder's files through ``..data`` (opened once, as a
reader that needs consistency does: orchestrator/adapters/delivery.py), and authenticates with
what it holds, as the app would:

* ``private_key_jwt``: a client assertion (RFC 7523) signed with ``private_key.pem``, ``kid`` and
  ``alg`` from ``metadata.json``, at ``token_endpoint`` (client_credentials grant);
* ``jar``: a request object signed with the key, pushed to the PAR endpoint (RFC 9126:
  ``par_endpoint`` or ``pushed_authorization_request_endpoint``), the request authenticating as
  the app is configured to (``--client-auth``, else ``client_auth`` in ``metadata.json``, else
  none): ``private_key_jwt`` signs the client assertion with the same delivered key (RFC 7591
  has one key set per client);
* ``mtls``: ``certificate.pem`` and ``private_key.pem`` on a new TLS connection for each version,
  at ``mtls_token_endpoint`` when there is one, else ``token_endpoint``;
* ``client_secret``: ``client_secret`` in the form (client_secret_post).

``--api-audience`` asks for a token for that API (Auth0's ``audience`` parameter).

A request counts as OK when the provider authenticated the client (200/201, or an error after
authentication such as unauthorized_client / access_denied: the app may hold no grant); a
FAILURE is a refusal of the credential (401, invalid_client, invalid_request_object) or a
transport error. The counts go to ``--stats``: rewritten after the first request made with each
new version (so a test reading it knows that version is in use; ``versions`` and, beside them,
``credentials`` name each one), every 20 requests and at the end. ``--keep`` saves every
distinct version seen as ``DIR/001``, ``DIR/002``... (to replay an old credential after its
rotation completed: ``attempt`` below is the same request, importable).
The client stops when ``--stop-file`` exists or on SIGTERM. Nothing here imports the
orchestrator: it is the application's side, written from the delivery folder's contract.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import ssl
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization

__all__ = ["Options", "accepted", "attempt", "http_client", "main", "read_version"]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
AUTHENTICATED_ERRORS = {"unauthorized_client", "access_denied", "invalid_grant", "invalid_scope",
                        "invalid_target", "unsupported_grant_type"}
STATS_EVERY = 20  # requests


@dataclass(frozen=True)
class Options:
    """What the app is configured with besides its delivery folder."""

    ca_file: str | None = None  # the CA bundle that verifies the provider's TLS
    audience: str | None = None  # the client assertion's aud (default: metadata's, or issuer)
    api_audience: str | None = None  # the API a token is asked for (Auth0's audience)
    client_auth: str | None = None  # how a PAR request authenticates (jar only)


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


@functools.lru_cache(maxsize=8)
def private_key(pem: bytes) -> Any:
    """The key, loaded once per version (loading checks the RSA key: far slower than signing)."""
    return serialization.load_pem_private_key(pem, password=None)


def sign(files: dict[str, bytes], meta: dict[str, Any], claims: dict[str, Any]) -> str:
    headers = {"kid": meta["kid"]} if meta.get("kid") else {}
    return jwt.encode(claims, private_key(files["private_key.pem"]),
                      algorithm=meta.get("alg") or "RS256", headers=headers)


def assertion(files: dict[str, bytes], meta: dict[str, Any], audience: str) -> str:
    now = int(time.time())
    client_id = meta["client_id"]
    return sign(files, meta, {"iss": client_id, "sub": client_id, "aud": audience, "iat": now,
                              "exp": now + 60, "jti": uuid.uuid4().hex})


def http_client(files: dict[str, bytes], options: Options) -> httpx.Client:
    """A new HTTP client for one version: for mtls, with its certificate on every connection."""
    meta = json.loads(files["metadata.json"])
    context = ssl.create_default_context(cafile=options.ca_file) if options.ca_file else None
    if meta.get("usage") == "mtls":
        context = context or ssl.create_default_context()
        with tempfile.TemporaryDirectory(prefix="token-client-") as scratch:
            cert, key = Path(scratch) / "cert.pem", Path(scratch) / "key.pem"
            cert.write_bytes(files["certificate.pem"])
            key.touch(mode=0o600)
            key.write_bytes(files["private_key.pem"])
            context.load_cert_chain(cert, key)
    return httpx.Client(verify=context if context is not None else True, timeout=10.0)


def attempt(files: dict[str, bytes], options: Options,
            http: httpx.Client | None = None) -> tuple[int, str | None]:
    """One authentication with one version's files: (HTTP status or 0, error code or text).
    ``http``: the version's client (``http_client``); a fresh one when None."""
    meta = json.loads(files["metadata.json"])
    usage = meta.get("usage", "private_key_jwt")
    aud = options.audience or meta.get("audience") or meta["issuer"]
    form: dict[str, str] = {"client_id": meta["client_id"]}
    if usage == "jar":
        url = meta.get("par_endpoint") or meta["pushed_authorization_request_endpoint"]
        now = int(time.time())
        form["request"] = sign(files, meta, {
            "iss": meta["client_id"], "aud": meta["issuer"], "client_id": meta["client_id"],
            "response_type": "code", "scope": "openid",
            "redirect_uri": meta.get("redirect_uri", "https://app.example/cb"),
            "state": uuid.uuid4().hex, "iat": now, "exp": now + 60, "nbf": now,
            "jti": uuid.uuid4().hex})
        client_auth = (options.client_auth or meta.get("client_auth")
                       or meta.get("token_endpoint_auth_method") or "none")
        if client_auth == "private_key_jwt":
            form.update({"client_assertion_type": ASSERTION_TYPE,
                         "client_assertion": assertion(files, meta, aud)})
    else:
        url = (meta.get("mtls_token_endpoint") if usage == "mtls" else None) or meta[
            "token_endpoint"]
        form["grant_type"] = "client_credentials"
        api_audience = options.api_audience or meta.get("api_audience")
        if api_audience:
            form["audience"] = api_audience
        if usage == "private_key_jwt":
            form.update({"client_assertion_type": ASSERTION_TYPE,
                         "client_assertion": assertion(files, meta, aud)})
        elif usage == "client_secret":
            form["client_secret"] = files["client_secret"].decode()
    own = http is None
    client = http_client(files, options) if http is None else http
    try:
        answer = client.post(url, data=form)
    except httpx.HTTPError as exc:
        return 0, f"{type(exc).__name__}: {exc}"
    finally:
        if own:
            client.close()
    if answer.status_code < 400:
        return answer.status_code, None
    try:
        body = answer.json()
        error = body.get("error") if isinstance(body, dict) else "malformed answer"
    except ValueError:
        error = "malformed answer"
    return answer.status_code, error


def accepted(status: int, error: str | None) -> bool:
    """Did the provider authenticate the client? (An error after authentication counts.)"""
    return status in (200, 201) or (status in (400, 403) and error in AUTHENTICATED_ERRORS)


class Client:
    def __init__(self, args: argparse.Namespace) -> None:
        self.folder = Path(args.folder)
        self.options = Options(ca_file=args.ca_file, audience=args.audience,
                               api_audience=args.api_audience, client_auth=args.client_auth)
        self.keep = Path(args.keep) if args.keep else None
        self.stats: dict[str, Any] = {"requests": 0, "ok": 0, "failures": 0, "versions": [],
                                      "credentials": [], "requests_by_version": {},
                                      "failure_samples": [], "statuses": {}}
        self._http: httpx.Client | None = None
        self._http_version: str | None = None

    def http(self, version: str, files: dict[str, bytes]) -> httpx.Client:
        if self._http is not None and self._http_version == version:
            return self._http
        if self._http is not None:
            self._http.close()
        self._http = http_client(files, self.options)
        self._http_version = version
        return self._http

    def once(self) -> bool:
        """One request; True when it was the first made with a new version."""
        version, files = read_version(self.folder)
        meta = json.loads(files["metadata.json"])
        new = version not in self.stats["requests_by_version"]
        if new and self.keep is not None:
            target = self.keep / f"{len(self.stats['versions']) + 1:03d}"
            target.mkdir(parents=True, exist_ok=True)
            for name, data in files.items():
                (target / name).write_bytes(data)
        status, error = attempt(files, self.options, self.http(version, files))
        self.stats["requests"] += 1
        if new:
            self.stats["versions"].append(version)
            self.stats["credentials"].append(
                meta.get("orchestrator_credential_id") or meta.get("credential_id"))
        by_version = self.stats["requests_by_version"]
        by_version[version] = by_version.get(version, 0) + 1
        key = str(status)
        self.stats["statuses"][key] = self.stats["statuses"].get(key, 0) + 1
        if accepted(status, error):
            self.stats["ok"] += 1
        else:
            self.stats["failures"] += 1
            if len(self.stats["failure_samples"]) < 20:
                self.stats["failure_samples"].append(
                    {"at": time.time(), "status": status, "error": error, "version": version,
                     "kid": meta.get("kid")})
        return new

    def close(self) -> None:
        if self._http is not None:
            self._http.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--folder", required=True)
    parser.add_argument("--stats", required=True)
    parser.add_argument("--ca-file")
    parser.add_argument("--keep")
    parser.add_argument("--stop-file")
    parser.add_argument("--audience")
    parser.add_argument("--api-audience")
    parser.add_argument("--client-auth", choices=("none", "private_key_jwt"))
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
            new = client.once()
            if new or client.stats["requests"] % STATS_EVERY == 0:
                write()
            if args.pause:
                time.sleep(args.pause)
    finally:
        client.stats["stopped"] = True
        write()
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
