"""The logs never carry secret material: the redaction processor's contract."""

from __future__ import annotations

import json
import logging

import structlog

from orchestrator.entrypoints.logs import REDACTED, configure, redact

PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"


def test_keys_that_name_secret_material_are_redacted() -> None:
    """secret, private_key, password, token, assertion, master_key: their values never pass."""
    event = {"event": "x", "client_secret": "s3cr3t", "private_key": "k", "password": "p",
             "token": "t", "client_assertion": "a", "master_key": "m", "app": "svc"}
    out = redact(None, "info", dict(event))
    assert out["app"] == "svc" and out["event"] == "x"
    assert all(out[k] == REDACTED for k in event if k not in ("app", "event"))


def test_private_keys_and_bytes_are_redacted_wherever_they_hide() -> None:
    """A PEM private key in any value, nested in dicts or lists, and raw bytes are redacted;
    public material and fingerprints are kept."""
    out = redact(None, "info", {"event": "x", "detail": PEM, "nested": {"list": [PEM, "ok"]},
                                "raw": b"\x00\x01", "fingerprint": "sha256:ab",
                                "public_pem": "-----BEGIN PUBLIC KEY-----\nAAA\n"})
    assert out["detail"] == REDACTED and out["nested"]["list"] == [REDACTED, "ok"]
    assert out["raw"] == REDACTED
    assert out["fingerprint"] == "sha256:ab" and out["public_pem"].startswith("-----BEGIN PUBLIC")


def test_the_configured_json_logs_apply_the_redaction(capsys: object) -> None:
    """Through the configured pipeline: JSON lines on stderr, secret values replaced."""
    configure(json_logs=True, level=logging.INFO)
    try:
        structlog.get_logger("t").info("secret_rotated", app="svc", secret="hunter2", pem=PEM)
        err = capsys.readouterr().err  # type: ignore[attr-defined]
        line = json.loads(err.strip().splitlines()[-1])
        assert line["secret"] == REDACTED and line["pem"] == REDACTED and line["app"] == "svc"
        assert "hunter2" not in err and "MIIEvQ" not in err
    finally:
        structlog.reset_defaults()  # never leave a logger bound to this test's captured stderr
        root = logging.getLogger()
        for handler in [h for h in root.handlers if h.get_name() == "orchestrator.structlog"]:
            root.removeHandler(handler)
