"""The tick does not start a client-secret rotation its provider cannot overlap (issue 7, part 6).

Auth0 and RFC 7592 providers hold one client secret: the old one stops working when the new one
is set. The loader refuses a client_secret policy beside such a provider unless it accepts the
gap; the tick holds the same line wherever the provider came from: an application whose
provider says ``secret_overlap=False`` gets no client-secret rotation unless its policy says
``acceptSecretGap``, and the tick says so at error level, once per tick.

The tick starts no rotation at all of an application whose identity provider is not
configured (its IdentityProvider resource removed, or its file broken): the router knows it
before anything is done, so nothing is generated into the keystore and nothing recorded; one
error line names the application, the provider and the fix, every tick, until it is back.

Wired through ``bootstrap.in_memory`` with a virtual clock, beside a named provider: the local
provider, declaring (as Auth0 does) that its secret cannot overlap.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path

from structlog.testing import capture_logs

from events.store import ReadFilter
from orchestrator.adapters.providers.local import LocalProvider
from orchestrator.app.ports import Provider
from orchestrator.bootstrap import Core, fast_keys, in_memory
from orchestrator.domain.identity_provider import Capabilities
from orchestrator.domain.planner import PlanPolicy
from orchestrator.policies.files import load_policy_file
from orchestrator.policies.source import to_plan_policy
from tests.conftest import NOW
from tests.helpers import policy_yaml

MINUTE = timedelta(minutes=1)
ONE_SECRET = Capabilities(secret_overlap=False)


class SingleSecretProvider(LocalProvider):
    """The local provider, declaring what Auth0 declares of its client secret."""

    def capabilities(self, app: str) -> Capabilities:
        return ONE_SECRET


def key_policy(tmp_path: Path) -> PlanPolicy:
    path = tmp_path / "keys.yaml"
    path.write_text(policy_yaml("keys", '["svc-*"]', "{usage: private_key_jwt}",
                                "{every: 30d, beforeExpiry: 7d, overlap: 1h}"))
    return to_plan_policy(load_policy_file(path))


def secret_policy(tmp_path: Path, *, accept_gap: bool) -> PlanPolicy:
    accept = ", acceptSecretGap: true" if accept_gap else ""
    path = tmp_path / "secrets.yaml"
    path.write_text(policy_yaml("internal-secrets", '["svc-*"]', "{usage: client_secret}",
                                f"{{every: 30d, beforeExpiry: 7d, overlap: 1h{accept}}}",
                                lifetime=None))
    return to_plan_policy(load_policy_file(path))


def system(policy: PlanPolicy,
           named: dict[str, Provider] | None = None) -> tuple[Core, list[datetime]]:
    """svc-tenant bound to the named provider ``auth0-like`` (kept in ``named``, which the
    test may empty and fill again as an operator removes and restores its file), svc-local."""
    now = [NOW]
    named = {} if named is None else named

    def providers() -> Mapping[str, Provider]:
        return named

    core = in_memory(lambda: now[0], lambda: (policy,), crypto=fast_keys(),
                     identity_providers=providers)
    named["auth0-like"] = SingleSecretProvider(core.service.load, core.keystore)
    core.service.register_apps([("svc-tenant", {})], provider="auth0-like")
    core.service.register_apps([("svc-local", {})])
    return core, now


def started(core: Core) -> list[str]:
    return sorted(r.stream_id for r in core.store.read(ReadFilter())
                  if r.type == "rotation.started")


def test_a_secret_rotation_the_provider_cannot_overlap_is_not_started(tmp_path: Path) -> None:
    core, now = system(secret_policy(tmp_path, accept_gap=False))
    refusals = []
    for tick in range(3):
        now[0] = NOW + tick * MINUTE
        with capture_logs() as logs:
            report = core.ticker.tick()
        refusals.append([e for e in logs if e["event"] == "client_secret_rotation_refused"])
        assert report.refused == 1
    assert started(core) == ["app:svc-local"]  # the local provider overlaps: it rotates
    assert core.service.load("svc-tenant").secret is None
    assert core.service.load("svc-local").secret is not None
    for logged in refusals:  # every tick, once
        [line] = logged
        assert line["log_level"] == "error"
        assert line["apps"] == ["svc-tenant"] and line["count"] == 1
        assert "acceptSecretGap: true" in line["fix"] and "private_key_jwt" in line["fix"]


def test_a_policy_that_accepts_the_gap_rotates_the_secret(tmp_path: Path) -> None:
    core, _ = system(secret_policy(tmp_path, accept_gap=True))
    with capture_logs() as logs:
        report = core.ticker.tick()
    assert report.refused == 0
    assert not [e for e in logs if e["event"] == "client_secret_rotation_refused"]
    assert started(core) == ["app:svc-local", "app:svc-tenant"]
    secret = core.service.load("svc-tenant").secret
    assert secret is not None and secret.version == 1


def test_no_rotation_starts_and_no_key_is_made_while_the_provider_is_gone(
        tmp_path: Path) -> None:
    named: dict[str, Provider] = {}
    core, now = system(key_policy(tmp_path), named)
    gone = named.pop("auth0-like")  # its file removed
    for tick in range(2):
        now[0] = NOW + tick * MINUTE
        with capture_logs() as logs:
            report = core.ticker.tick()
        [line] = [e for e in logs if e["event"] == "rotation_not_started"]
        assert line["log_level"] == "error"
        assert (line["app"], line["provider"], line["usage"]) == (
            "svc-tenant", "auth0-like", "private_key_jwt")
        assert "identity provider 'auth0-like' is not configured" in line["error"]
        assert "restore the IdentityProvider resource 'auth0-like'" in line["fix"]
        assert report.refused == 1
    assert started(core) == ["app:svc-local"]
    assert core.service.load("svc-tenant").credentials == {}
    local_ids = set(core.service.load("svc-local").credentials)
    assert local_ids and {i.split("/")[0] for i in core.keystore.ids()} == local_ids

    named["auth0-like"] = gone  # the file is back
    now[0] += MINUTE
    with capture_logs() as logs:
        assert core.ticker.tick().refused == 0
    assert not [e for e in logs if e["event"] == "rotation_not_started"]
    assert started(core) == ["app:svc-local", "app:svc-tenant"]
