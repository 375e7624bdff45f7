"""Running the exploration of every scenario, and its table of counts."""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping, Sequence
from datetime import timedelta
from functools import cache
from typing import Any

import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from structlog.testing import capture_logs

from tests.explore.explorer import T0, Bounds, Explorer, Result, policy, scenarios
from tests.explore.world import KeyPool, Scenario
from tests.helpers import certificate

__all__ = ["ca_pair", "explore", "explore_all", "key_pool", "table"]


@cache
def key_pool() -> KeyPool:
    return KeyPool()


@cache
def ca_pair() -> tuple[bytes, bytes]:
    """A CA (certificate and key, PEM) valid long around the exploration's instants."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = certificate(key, "CN=Explorer CA,O=Example", not_before=T0 - timedelta(days=365),
                      not_after=T0 + timedelta(days=3650), ca=True)
    return pem, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())


def _drop(logger: Any, method: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
    raise structlog.DropEvent


def explore(sc: Scenario, bounds: Bounds = Bounds()) -> Result:
    """Explore one scenario (the product's log lines dropped: millions of them say nothing)."""
    with capture_logs(processors=[_drop]):
        return Explorer(sc, key_pool(), bounds).run()


def explore_all(usages: Sequence[str] = (), *, faults: int = 2, crashes: int = 1,
                attempts: int = 2, progress: Callable[[Result], None] | None = None
                ) -> list[Result]:
    results = []
    for sc in scenarios(ca_pair()):
        if usages and not any((sc.label or sc.usage).startswith(u) for u in usages):
            continue
        if attempts != 2:
            sc.policy = policy(sc.usage, ca_pair() if sc.ca_pem else None, attempts)
        result = explore(sc, Bounds(faults=faults, crashes=crashes))
        if progress is not None:
            progress(result)
        results.append(result)
    return results


COLUMNS = ("usage", "scenario", "worlds", "visits", "transitions", "runs", "paths",
           "ends completed", "ends parked", "depth", "violations", "cpu s")


def table(results: Sequence[Result], header: bool = True) -> str:
    """The counts as a Markdown table (the README's)."""
    rows = [(r.usage, r.scenario, f"{r.states:,}", f"{r.visits:,}", f"{r.transitions:,}",
             f"{r.executions:,}", f"{r.paths:,}", f"{r.ends_completed:,}", f"{r.ends_parked:,}",
             str(r.depth), str(len(r.violations)), f"{r.seconds:.1f}")
            for r in results]
    lines = [f"| {' | '.join(row)} |" for row in rows]
    if header:
        lines = [f"| {' | '.join(COLUMNS)} |", "|" + "---|" * 2 + "---:|" * (len(COLUMNS) - 2),
                 *lines]
    return "\n".join(lines)
