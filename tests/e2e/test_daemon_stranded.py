"""A rotation that cannot pass its test, through the daemon process: parked safely, then loud.

The CA a policy issues mTLS certificates from expires (an operator forgot it). The installed
``orchestrator daemon --once`` runs at instants the test chooses (a ``VirtualClock``), and:

* the rotation's new certificate fails its test (the provider no longer trusts the chain), the
  rotation is parked, and parking leaves the old certificate as it was and the new, untested
  one disabled (in the log and so at the provider), never active;
* when the old certificate's expiry approaches, the daemon retries; once it has expired the
  application has no usable credential, which is the worst state: ``plan`` and ``plan --json``
  list it, ``rotations`` shows it, every daemon tick logs ``app_without_usable_credential`` at
  error level, and the daemon keeps retrying the parked rotation after a capped backoff (not
  before);
* once the CA is renewed (same key) the next retry passes the test and the application has a
  usable credential again, with a delivered key that belongs to its certificate.

The log is judged by ``tests.oracle`` (its own fold of the events table, read with sqlite3).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers import Cli, Result, VirtualClock, rsa_key
from tests.oracle import gaps, key_belongs_to_certificate, read_log
from tests.support.ca import ca_mtls_policy, write_ca

T0 = datetime(2031, 3, 3, 9, 0, tzinfo=UTC)
DAY, MINUTE = timedelta(days=1), timedelta(minutes=1)
APP = "bank-1"
def logged(result: Result) -> list[dict[str, object]]:
    return [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_a_stranded_application_is_retried_and_reported_until_it_has_a_credential(
        tmp_path: Path) -> None:
    db = tmp_path / "orchestrator.db"
    clock = VirtualClock(tmp_path / "clock", T0)
    cli = Cli(f"sqlite:///{db}", tmp_path / "keystore", tmp_path, clock=clock)
    policies, delivery = tmp_path / "policies", tmp_path / "delivery"
    ca_key = rsa_key()
    write_ca(policies, ca_key, T0 - 30 * DAY, T0 + 3 * DAY)  # the CA expires on day 3
    (policies / "bank-mtls.yaml").write_text(ca_mtls_policy(max_backoff="10m"))
    cli.env.update(ORCHESTRATOR_POLICIES=str(policies), ORCHESTRATOR_DELIVERY=str(delivery))
    cli("app", "register", APP)

    def daemon(at: datetime) -> Result:
        clock.set(at)
        return cli("daemon", "--once", "--json-logs")

    daemon(T0)  # provisioning: certificate A, valid 6 days
    daemon(T0 + 4 * DAY)  # its age: rotation to B; the CA has expired, B fails its test
    daemon(T0 + 4 * DAY + 5 * MINUTE)  # fails again: parked

    log = read_log(db)
    (rotation,) = [r["payload"] for r in log.rows if r["type"] == "rotation.started"][1:]
    old, new = log.creds[APP][rotation["old_credential_id"]], log.creds[APP][rotation["new_credential_id"]]
    assert log.types(APP)[-3:] == ["rotation.failed", "rotation.parked", "credential.disabled"]
    assert new.active_from and new.inactive_from and max(new.inactive_from) > max(new.active_from)
    assert old.active_from and not old.inactive_from  # the old one intact

    daemon(T0 + 5 * DAY + MINUTE)  # A expires within beforeExpiry: retried, parked again
    daemon(T0 + 5 * DAY + 10 * MINUTE)
    stranded_at = T0 + 6 * DAY + MINUTE  # A has expired: no usable credential
    first = daemon(stranded_at)
    retried = [r["at"] for r in read_log(db).rows if r["type"] == "rotation.retried"]
    assert retried[-1] == stranded_at  # retried at once: the parking was 51 minutes ago

    clock.set(stranded_at + MINUTE)
    plan = cli("plan", "--json").json()
    assert [(a["app"], a["usage"]) for a in plan["without_usable_credential"]] == [(APP, "mtls")]
    assert "NO USABLE CREDENTIAL" in cli("plan").stdout
    assert f"NO USABLE CREDENTIAL: application '{APP}' has no usable mtls credential" in cli(
        "rotations").stdout
    daemon(stranded_at + 10 * MINUTE)  # fails again: parked at +10m
    quiet = daemon(stranded_at + 15 * MINUTE)  # inside the capped backoff: not retried yet
    assert [r["at"] for r in read_log(db).rows if r["type"] == "rotation.retried"] == retried
    for run in (first, quiet):
        alarms = [line for line in logged(run) if line["event"] == "app_without_usable_credential"]
        assert alarms and all(line["level"] == "error" and line["app"] == APP for line in alarms)

    # the operator renews the CA (same key); the next retry passes and completes
    write_ca(policies, ca_key, T0 - 30 * DAY, T0 + 3650 * DAY)
    end = stranded_at + 30 * MINUTE
    last = daemon(end)
    assert not [line for line in logged(last) if line["event"] == "app_without_usable_credential"]
    log = read_log(db)
    rid = rotation["rotation_id"]
    assert [r["type"] for r in log.by_rotation[rid]][-1] == "rotation.completed"
    assert old.expires_at is not None  # the app held a usable credential but for the CA's outage
    assert gaps(log.held_intervals(APP, end + MINUTE), T0, end + MINUTE) == [(old.expires_at, end)]
    folder = delivery / APP / "mtls"
    assert (folder / "credential_id").read_text() == new.id
    assert key_belongs_to_certificate((folder / "private_key.pem").read_bytes(),
                                      (folder / "certificate.pem").read_bytes())
    clock.set(end + MINUTE)
    assert cli("plan", "--json").json()["without_usable_credential"] == []
