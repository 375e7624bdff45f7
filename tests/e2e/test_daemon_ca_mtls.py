"""CA-issued mTLS certificates rotated by the daemon process, judged by an independent oracle.

A policy with ``certificate.issuer`` has the daemon issue each application a certificate from a
CA; the identity provider matches such a certificate by its subject DN and its chain to the CA,
so every new certificate (same DN, same CA) authenticates through the registration the old one
has. The installed ``orchestrator daemon --once`` runs again and again at instants the test
chooses (a ``VirtualClock``: time is driven, never waited for) across three rotations, and
then:

* the events table, read with plain SQL and folded by ``tests.oracle`` (not by the product),
  shows every rotation completed, none failed or parked, each delivery before the old
  certificate expired, no old certificate disabled before its successor was tested and
  delivered, and no instant without a usable credential from the first activation on;
* the certificate the application holds was valid over the whole time it held it;
* the delivered files, read with ``cryptography``: the private key belongs to the certificate
  (a challenge signed with it verifies with the certificate's key), the certificate is issued
  by the CA for the application's DN and is the newest one in the log.

On SQLite only: what is judged here does not depend on the database (both dialects are held to
the same log by tests/integration/test_store.py and the end-to-end tests about the store).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from tests.helpers import Cli, VirtualClock, rsa_key
from tests.oracle import gaps, key_belongs_to_certificate, read_log
from tests.support.ca import ca_mtls_policy, subject_of, write_ca

T0 = datetime(2031, 3, 3, 9, 0, tzinfo=UTC)
DAY, HOUR, MINUTE = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)
APPS = ("bank-1", "bank-2")
# every day for 13 days, and just after each rotation's overlap (rotations start on days 4, 8, 12)
INSTANTS = sorted([T0 + d * DAY for d in range(14)]
                  + [T0 + d * DAY + HOUR + 2 * MINUTE for d in (4, 8, 12)])


@pytest.mark.slow
def test_ca_issued_certificates_rotate_with_a_usable_credential_at_every_instant(
        tmp_path: Path, sqlite_url: str) -> None:
    clock = VirtualClock(tmp_path / "clock", T0)
    cli = Cli(sqlite_url, tmp_path / "keystore", tmp_path, clock=clock)
    policies, delivery = tmp_path / "policies", tmp_path / "delivery"
    ca_pem = write_ca(policies, rsa_key(), T0 - 30 * DAY, T0 + 3650 * DAY)
    (policies / "bank-mtls.yaml").write_text(ca_mtls_policy())
    cli.env.update(ORCHESTRATOR_POLICIES=str(policies), ORCHESTRATOR_DELIVERY=str(delivery))
    cli("policy", "validate")
    for app in APPS:
        cli("app", "register", app)

    for instant in INSTANTS:
        clock.set(instant)
        cli("daemon", "--once", "--json-logs")
    end = INSTANTS[-1]

    log = read_log(tmp_path / "orchestrator.db")
    ca = x509.load_pem_x509_certificate(ca_pem)
    for app in APPS:
        types = log.types(app)
        assert "rotation.failed" not in types and "rotation.parked" not in types, types
        started = [r for r in log.rows if r["app"] == app and r["type"] == "rotation.started"]
        completed = {r["payload"]["rotation_id"] for r in log.rows
                     if r["app"] == app and r["type"] == "rotation.completed"}
        assert len(started) == 4  # provisioning, then days 4, 8 and 12
        assert {r["payload"]["rotation_id"] for r in started} == completed

        creds = log.creds[app]
        holding: list[tuple[datetime, str]] = []  # (delivered at, credential id)
        for row in started:
            rid, data = row["payload"]["rotation_id"], row["payload"]
            new, old = creds[data["new_credential_id"]], creds.get(data["old_credential_id"] or "")
            assert new.kind == "cert_subject_dn" and new.subject_dn == subject_of(app)
            tested, delivered = log.step_time(rid, "tested"), log.step_time(rid, "delivered")
            assert tested is not None and delivered is not None and tested <= delivered
            holding.append((delivered, new.id))
            if old is not None:
                assert old.expires_at is not None and delivered < old.expires_at, (
                    f"{app}: {new.id} delivered at {delivered}, after {old.id} expired")
                disabled = [t for t in old.inactive_from if t <= end]
                assert disabled and min(disabled) >= delivered

        # the identity provider accepted one of the app's credentials at every instant
        intervals = [i for c in creds.values() for i in c.usable_intervals(end)]
        first = min(a for a, _ in intervals)
        assert gaps(intervals, first, end) == []
        # the app held an accepted certificate from its first delivery on
        assert gaps(log.held_intervals(app, end), holding[0][0], end) == []
        # and the certificate the app held was valid the whole time it held it
        for (since, cid), (until, _) in zip(holding, [*holding[1:], (end, "")], strict=True):
            held = x509.load_pem_x509_certificate((creds[cid].certificate_pem or "").encode())
            assert held.not_valid_before_utc <= since and until < held.not_valid_after_utc

        folder = delivery / app / "mtls"
        cert_pem = (folder / "certificate.pem").read_bytes()
        assert key_belongs_to_certificate((folder / "private_key.pem").read_bytes(), cert_pem)
        delivered_cert = x509.load_pem_x509_certificate(cert_pem)
        delivered_cert.verify_directly_issued_by(ca)
        assert delivered_cert.subject.rfc4514_string() == subject_of(app)
        assert delivered_cert.not_valid_before_utc <= end < delivered_cert.not_valid_after_utc
        assert cert_pem.decode() == creds[holding[-1][1]].certificate_pem
