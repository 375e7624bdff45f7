"""The installed daemon's logs as an operator reads them: with ``--json-logs`` every stderr line
is one JSON object (APScheduler's and Python warnings' too), a heartbeat follows every tick that
did something and otherwise comes once a minute, and an error names the app and the fix.

The daemon runs under a virtual clock (``LAUNCHER``): each tick is placed by the test, never by
the machine's speed."""

from __future__ import annotations

import json
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

from events.codec import format_time
from tests.conftest import NOW
from tests.e2e.test_operator_view import daemon_once, site  # noqa: F401  (the fixture)
from tests.helpers import LAUNCHER, ORCHESTRATOR_PYTHON, Cli, json_daemon, json_events, wait_for

# Runs the test launcher (the installed daemon) and, once the daemon has set its logs up, makes
# real APScheduler code log (a job whose run time was missed, from its executor) and Python
# warn: the daemon itself runs no APScheduler scheduler (its own loop on the injected clock;
# APScheduler gives it cron triggers, which never log), so a library's line is provoked here.
PROVOKER = """
    import runpy, sys, threading, time, warnings
    from datetime import UTC, datetime, timedelta

    LAUNCH = sys.argv.pop(1)

    def provoke():
        from orchestrator.entrypoints import logs
        while not logs.is_configured():
            time.sleep(0.01)
        from apscheduler.schedulers.background import BackgroundScheduler
        scheduler = BackgroundScheduler(timezone=UTC)
        scheduler.add_job(print, "date", run_date=datetime.now(UTC) - timedelta(hours=1),
                          misfire_grace_time=1, id="provoked")
        scheduler.start()
        warnings.warn("provoked by the test", UserWarning)

    threading.Thread(target=provoke, daemon=True).start()
    sys.argv[0] = LAUNCH
    runpy.run_path(LAUNCH, run_name="__main__")
"""


def lines_of(log: Path) -> list[dict[str, Any]]:
    """Every complete line of ``log``, each parsed as JSON (a line that is not fails here)."""
    return [json.loads(line) for line in log.read_text().split("\n")[:-1]]


def test_every_line_of_the_daemon_is_json_apschedulers_and_warnings_too(
        site: Cli, tmp_path: Path) -> None:  # noqa: F811
    provoker = tmp_path / "provoker.py"
    provoker.write_text(textwrap.dedent(PROVOKER))
    site("app", "register", "pay-1")
    program = [str(ORCHESTRATOR_PYTHON), str(provoker), LAUNCHER[1]]
    with json_daemon(site, "--interval", "3600", program=program) as (daemon, log):
        wait_for(lambda: json_events(log, "python_warning") and json_events(log,
                 "daemon_heartbeat") and [x for x in lines_of(log) if x.get("logger", "")
                                          .startswith("apscheduler")],
                 "the provoked lines and a heartbeat", daemon, log)
    assert daemon.returncode == 0
    lines = lines_of(log)
    assert log.read_text().endswith("\n") and len(lines) == len(log.read_text().splitlines())
    (missed,) = [x for x in lines if x.get("logger", "").startswith("apscheduler")]
    assert missed["event"].startswith("Run time of job") and missed["level"] == "warning"
    assert missed["logger"] == "apscheduler.executors.default"
    (warned,) = json_events(log, "python_warning")
    assert "UserWarning: provoked by the test" in warned["warning"]
    assert warned["logger"] == "py.warnings" and warned["level"] == "warning"
    assert [x["event"] for x in lines if x["event"] in ("daemon_started", "daemon_stopped")] == [
        "daemon_started", "daemon_stopped"]


def _status_tick(cli: Cli) -> str | None:
    tick = cli("status", "--json").json()["last_tick"]
    return tick and tick["at"]


def test_a_heartbeat_follows_a_busy_tick_and_otherwise_comes_once_a_minute(
        site: Cli) -> None:  # noqa: F811
    """Ticks every 30 s: 1 (provisions pay-1) and 2 (pay-2) beat at once; 3 did nothing
    and the minute since the last beat has not passed: no beat; 4 did nothing, a minute
    since the last beat: a beat."""
    clock = site.clock
    assert clock is not None
    site("app", "register", "pay-1")
    with json_daemon(site, "--interval", "30") as (daemon, log):
        def beats() -> list[dict[str, Any]]:
            return json_events(log, "daemon_heartbeat")

        wait_for(lambda: len(beats()) == 1, "the first tick's heartbeat", daemon, log)
        site("app", "register", "pay-2")
        clock.advance(timedelta(seconds=30))
        wait_for(lambda: len(beats()) == 2, "the second tick's heartbeat", daemon, log)
        third = clock.advance(timedelta(seconds=30))
        wait_for(lambda: _status_tick(site) == format_time(third),
                 "the third tick", daemon, log)
        clock.advance(timedelta(seconds=30))
        wait_for(lambda: len(beats()) == 3, "the fourth tick's heartbeat", daemon, log)
    assert daemon.returncode == 0
    found = beats()
    assert [b["ticks"] for b in found] == [1, 2, 4]
    assert [b["last_tick_at"] for b in found] == [
        (NOW + timedelta(seconds=s)).isoformat() for s in (0, 30, 90)]
    last = found[-1]
    assert (last["role"], last["epoch"], last["parked"], last["in_flight"]) == ("leader", 1, 0, 0)
    assert [d["app"] for d in last["apps_due_next"]] == ["pay-1", "pay-2"]
    assert last["apps_due_next"][0]["at"] == (NOW + timedelta(days=30)).isoformat()
    assert last["last_error"] is None and last["drift_held"] == []
    assert all(line["level"] != "error" for line in lines_of(log))


def test_errors_name_the_app_and_the_fix(site: Cli) -> None:  # noqa: F811
    """The provider refuses every call: svc-1's secret rotation parks (one attempt); pay-1
    never gets a key. Every error line names its app and what the operator does."""
    site("app", "register", "svc-1", "pay-1")
    lines = daemon_once(site, ORCHESTRATOR_PROVIDER="faulty:1.0")
    errors = [x for x in lines if x["level"] in ("error", "critical")]
    assert {x["event"] for x in errors} >= {"rotation_parked"}, lines
    for line in errors:
        assert line.get("app") and line.get("fix"), line
    (parked,) = [x for x in errors if x["event"] == "rotation_parked"]
    assert f"orchestrator rotations retry {parked['app']} {parked['rotation_id']}" in parked["fix"]

