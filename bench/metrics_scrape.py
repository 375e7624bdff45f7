"""How long a scrape of ``/metrics`` takes over a large fleet (``daemon --listen``).

A SQLite log of ``--apps`` applications, each registered with one active Private Key JWT key
(written with the store's own ``append``, one stream each, then projected), one policy
selecting all of them. The daemon's registry (``bootstrap.daemon_metrics`` and
``System.serve_metrics``, as the daemon wires it) is rendered with
``prometheus_client.generate_latest``: the first scrape (every state read and parsed), then
``--repeats`` scrapes with nothing changed (one query of versions; the states in memory), then
scrapes after 1% of the applications changed (an expiry moved; those states read again). Times
are ``time.perf_counter``, median and best; the text's size and series count are reported.

    python bench/metrics_scrape.py [--apps 10000] [--repeats 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from prometheus_client import generate_latest

from events import catalog as ev
from events.sql import SQLEventStore
from events.state import stream_id
from events.store import NewEvent
from orchestrator.bootstrap import Settings, bootstrap, daemon_metrics

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
POLICY = yaml.safe_dump({
    "apiVersion": "orchestrator/v1", "kind": "RotationPolicy", "metadata": {"name": "keys"},
    "spec": {"selector": {"apps": ["app-*"]},
             "credential": {"usage": "private_key_jwt", "algorithm": "RS256", "keySize": 2048},
             "rotation": {"every": "30d", "beforeExpiry": "10d", "overlap": "1h"},
             "lifetime": "60d"}})


def _fleet(store: SQLEventStore, apps: int) -> None:
    for n in range(apps):
        app, cid = f"app-{n:06d}", f"cred_{n:06d}"
        store.append(stream_id(app), [
            NewEvent(ev.ApplicationRegistered(app=app, labels={}), NOW, "bench"),
            NewEvent(ev.CredentialAdded(
                credential_id=cid, usage="private_key_jwt", kind=ev.CredentialKind.PUBLIC_KEY,
                kid=f"kid-{n}", fingerprint=f"sha256:{n:064x}", alg="RS256", key_size=2048,
                expires_at=NOW + timedelta(days=60)), NOW, "bench"),
            NewEvent(ev.CredentialActivated(credential_id=cid), NOW, "bench")], 0)


def _timed(render: object) -> tuple[float, bytes]:
    began = time.perf_counter()
    text = render()  # type: ignore[operator]
    return time.perf_counter() - began, text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "policies").mkdir()
        (root / "policies" / "keys.yaml").write_text(POLICY)
        settings = Settings(db=f"sqlite:///{root / 'o.db'}", keystore=root / "ks",
                            policies=root / "policies", delivery=root / "delivery")
        system = bootstrap(settings, clock=lambda: NOW)
        began = time.perf_counter()
        _fleet(system.sql_store, args.apps)
        system.projector.catch_up()
        built = time.perf_counter() - began
        metrics = daemon_metrics()
        system.serve_metrics(metrics, lambda: (True, NOW))

        def render() -> bytes:
            return generate_latest(metrics.registry)

        first, text = _timed(render)
        steady = [_timed(render)[0] for _ in range(args.repeats)]
        changed = []
        for rep in range(args.repeats):
            for n in range(0, args.apps, 100):  # 1% of the fleet: an expiry moved
                app, cid = f"app-{n:06d}", f"cred_{n:06d}"
                version = 3 + rep
                system.sql_store.append(stream_id(app), [NewEvent(ev.CredentialExpiryChanged(
                    credential_id=cid, expires_at=NOW + timedelta(days=61 + rep)), NOW,
                    "bench")], version)
            system.projector.catch_up()
            changed.append(_timed(render)[0])
        system.close()
    series = sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))
    result = {"apps": args.apps, "series": series, "bytes": len(text),
              "fleet_built_s": round(built, 2), "first_scrape_s": round(first, 3),
              "unchanged_median_s": round(statistics.median(steady), 3),
              "unchanged_best_s": round(min(steady), 3),
              "one_percent_changed_median_s": round(statistics.median(changed), 3),
              "one_percent_changed_best_s": round(min(changed), 3)}
    print(json.dumps(result, indent=2) if args.json else
          "\n".join(f"{k:>32}: {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
