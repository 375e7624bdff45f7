"""The emulator under load: the per-tenant token bucket and its headers, injected faults (5xx
before the work, lost answers after it, latency, 409 under load), counters, the HTTP control
surface, and the emulator as a separate process."""

from __future__ import annotations

import math
import subprocess
import sys

import httpx
import pytest

from tests.conftest import ROOT
from tests.peers.auth0 import Auth0Emulator, emulator_process
from tests.peers.kit import (
    create_credential,
    http_client,
    management_grant,
    public_pem,
    token_request,
)

CREDENTIALS = "/api/v2/clients/{id}/credentials"


def session(emu: Auth0Emulator) -> httpx.Client:
    return http_client(base_url=emu.api_url,
                       headers={"authorization": f"Bearer {emu.management_token()}"})


# --- rate limiting ---------------------------------------------------------------------------


def test_every_management_answer_carries_the_rate_limit_headers(clock):
    with Auth0Emulator({"management_rate": {"burst": 5, "per_second": 2}}, clock=clock) as emu, \
            session(emu) as api:
        answers = [api.get("/clients"), api.get("/clients/nope"),
                   api.post("/clients", json={"colour": "red"})]
        assert [a.status_code for a in answers] == [200, 404, 400]
        assert [a.headers["x-ratelimit-remaining"] for a in answers] == ["4", "3", "2"]
        assert {a.headers["x-ratelimit-limit"] for a in answers} == {"5"}
        # three tokens missing at 2/s: full again 1.5 s from now
        assert answers[-1].headers["x-ratelimit-reset"] == str(math.ceil(clock.now() + 1.5))
        assert "retry-after" not in answers[-1].headers


def test_an_empty_bucket_answers_429_and_refills_with_time(clock):
    with Auth0Emulator({"management_rate": {"burst": 3, "per_second": 2}}, clock=clock) as emu, \
            session(emu) as api:
        assert [api.get("/clients").status_code for _ in range(3)] == [200, 200, 200]
        limited = api.post("/clients", json={"name": "never-made"})
        assert limited.status_code == 429
        assert limited.json() == {"statusCode": 429, "error": "Too Many Requests",
                                  "message": "Global limit has been reached",
                                  "errorCode": "too_many_requests"}
        assert limited.headers["x-ratelimit-remaining"] == "0"
        assert int(limited.headers["x-ratelimit-reset"]) >= clock.now() + 1
        assert "never-made" not in {c["name"] for c in emu.snapshot()["clients"]}
        clock.advance(0.5)
        assert api.get("/clients").status_code == 200
        assert api.get("/clients").status_code == 429
        assert emu.counters.snapshot()["rate_limited"] == 2


def test_retry_after_is_a_switch(clock):
    with Auth0Emulator({"management_rate": {"burst": 1, "per_second": 0.25},
                        "retry_after": True}, clock=clock) as emu, session(emu) as api:
        assert "retry-after" not in api.get("/clients").headers
        assert api.get("/clients").headers["retry-after"] == "4"


def test_token_endpoint_has_its_own_bucket(clock):
    with Auth0Emulator({"management_rate": {"burst": 1, "per_second": 1},
                        "oauth_rate": {"burst": 2, "per_second": 1}}, clock=clock) as emu:
        data = management_grant(emu)
        statuses = [token_request(emu, data).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        with session(emu) as api:
            assert api.get("/clients").status_code == 200


def test_token_endpoint_is_unlimited_by_default(emulator):
    assert "x-ratelimit-limit" not in token_request(emulator, {}).headers


# --- faults ----------------------------------------------------------------------------------


def test_a_5xx_fault_answers_before_doing_the_work(emulator, keys):
    app = emulator.seed_client({"name": "a"}).client_id
    emulator.faults.script("503", method="POST", route=CREDENTIALS)
    with session(emulator) as api:
        failed = api.post(f"/clients/{app}/credentials",
                          json={"credential_type": "public_key", "pem": public_pem(keys[0])})
        assert failed.status_code == 503
        assert failed.json()["statusCode"] == 503
        assert api.get(f"/clients/{app}/credentials").json() == []
        create_credential(api, app, credential_type="public_key", pem=public_pem(keys[0]))
    assert emulator.counters.snapshot()["faults"] == {"503": 1}


def test_a_scripted_429_is_the_empty_bucket_s_answer_before_the_work(clock):
    with Auth0Emulator({"management_rate": None, "retry_after": True}, clock=clock) as emu, \
            session(emu) as api:
        app = emu.seed_client({"name": "a"}).client_id
        secret = emu.tenant.client(app).client_secret
        emu.faults.script("429", method="POST", route="/api/v2/clients/{id}/rotate-secret",
                          seconds=3)
        limited = api.post(f"/clients/{app}/rotate-secret")
        assert limited.status_code == 429
        assert limited.json()["message"] == "Global limit has been reached"
        assert limited.headers["retry-after"] == "3"
        assert emu.tenant.client(app).client_secret == secret  # nothing done
        assert api.post(f"/clients/{app}/rotate-secret").status_code == 200
    assert emu.counters.snapshot()["rate_limited"] == 1


def test_a_lost_answer_does_the_work_but_the_client_sees_a_broken_connection(emulator, keys):
    app = emulator.seed_client({"name": "a"}).client_id
    emulator.faults.script("lost", method="POST", route=CREDENTIALS)
    with session(emulator) as api:
        with pytest.raises(httpx.RemoteProtocolError):
            api.post(f"/clients/{app}/credentials",
                     json={"credential_type": "public_key", "pem": public_pem(keys[0])})
        listed = api.get(f"/clients/{app}/credentials").json()  # the same client reconnects
    assert len(listed) == 1
    pool = emulator.snapshot()["clients"][-1]["credentials"]
    assert [c["id"] for c in pool] == [listed[0]["id"]]
    counts = emulator.counters.snapshot()
    assert counts["by_route"][f"POST {CREDENTIALS}"] == {"lost": 1}
    assert counts["faults"] == {"lost": 1}


def test_a_repeat_after_a_lost_answer_meets_the_duplicate_rule(emulator, keys):
    app = emulator.seed_client({"name": "a"}).client_id
    emulator.faults.script("lost", route=CREDENTIALS)
    body = {"credential_type": "public_key", "pem": public_pem(keys[0])}
    with session(emulator) as api:
        with pytest.raises(httpx.TransportError):
            api.post(f"/clients/{app}/credentials", json=body)
        again = api.post(f"/clients/{app}/credentials", json=body)
    assert again.status_code == 400
    assert again.json()["message"] == (
        "credentials contains public keys that already exist in client")


def test_fault_rates_are_seeded_and_reproducible(clock):
    def statuses(seed: int) -> list[int]:
        config = {"management_rate": None,
                  "faults": {"seed": seed, "error_rate": 0.3, "conflict_rate": 0.2,
                             "conflict_under_load": False}}
        with Auth0Emulator(config, clock=clock) as emu, session(emu) as api:
            return [api.get("/clients").status_code for _ in range(40)]

    first, again, other = statuses(7), statuses(7), statuses(8)
    assert first == again
    assert first != other
    assert set(first) <= {200, 409, 500, 502, 503}
    assert {500, 502, 503} & set(first) and 409 in first and 200 in first


def test_faults_spare_the_token_endpoint_unless_asked(clock):
    config = {"faults": {"error_rate": 1.0}, "management_rate": None}
    with Auth0Emulator(config, clock=clock) as emu:
        data = management_grant(emu)
        assert token_request(emu, data).status_code == 200
        emu.configure(faults={"apply_to_oauth": True})  # merged into the running rates
        assert token_request(emu, data).status_code in (500, 502, 503)


def test_fault_methods_filter_spares_reads(clock):
    config = {"faults": {"error_rate": 1.0, "methods": ["POST", "PATCH", "DELETE"]},
              "management_rate": None}
    with Auth0Emulator(config, clock=clock) as emu, session(emu) as api:
        assert api.get("/clients").status_code == 200
        assert api.post("/clients", json={"name": "x"}).status_code >= 500


def test_latency_is_added_through_the_injected_sleep(clock):
    slept: list[float] = []
    config = {"faults": {"latency_rate": 1.0, "latency_seconds": 0.25}, "management_rate": None}
    with Auth0Emulator(config, clock=clock, sleep=slept.append) as emu, session(emu) as api:
        assert api.get("/clients").status_code == 200
    assert slept == [0.25]


def test_409_comes_only_under_load_by_default(clock):
    config = {"management_rate": {"burst": 4, "per_second": 1}, "faults": {"conflict_rate": 1.0}}
    with Auth0Emulator(config, clock=clock) as emu, session(emu) as api:
        statuses = [api.get("/clients").status_code for _ in range(4)]
    assert statuses == [200, 200, 409, 409]  # the bucket below half full from the third on


# --- counters and the HTTP control surface ---------------------------------------------------


def test_counters_by_route_and_status_and_reset(emulator):
    with session(emulator) as api:
        api.get("/clients")
        api.get("/clients/nope")
        api.get("/clients/nope")
    counts = emulator.counters.snapshot()
    assert counts["by_route"]["GET /api/v2/clients/{id}"] == {"404": 2}
    assert counts["by_route"]["GET /api/v2/clients"] == {"200": 1}
    assert counts["total"] == 3
    emulator.counters.reset()
    assert emulator.counters.snapshot()["total"] == 0


def test_control_endpoints_seed_inspect_and_steer(emulator, keys):
    with http_client(base_url=f"{emulator.base_url}/__emulator") as control:
        health = control.get("/health").json()
        assert health["management_audience"] == emulator.management_audience
        made = control.post("/clients", json={
            "client_id": "seeded-client", "client_secret": "s" * 40, "name": "seeded",
            "grants": [{"audience": "https://api/", "scope": ["a"]}]})
        assert made.status_code == 201
        assert control.post("/clients", json={"generate": {"count": 3}}).json() == {
            "created": 3}
        state = control.get("/state").json()
        assert [c["name"] for c in state["clients"]][-4:] == [
            "seeded", "app-00001", "app-00002", "app-00003"]
        assert state["grants"][-1]["client_id"] == "seeded-client"
        data = {"grant_type": "client_credentials", "client_id": "seeded-client",
                "client_secret": "s" * 40, "audience": "https://api/"}
        assert token_request(emulator, data).status_code == 200
        control.post("/faults", json={"script": [{"fault": "500", "route": "/api/v2/clients"}]})
        assert control.get("/faults").json()["script"][0]["fault"] == "500"
        token = control.post("/token", json={}).json()["access_token"]
        answer = httpx.get(f"{emulator.api_url}/clients",
                           headers={"authorization": f"Bearer {token}"})
        assert answer.status_code == 500
        assert control.get("/counters").json()["faults"] == {"500": 1}
        assert control.post("/counters/reset").status_code == 204
        before = control.get("/clock").json()["now"]
        assert control.post("/clock", json={"advance": 90}).json()["now"] == before + 90
        config = control.post("/config", json={"slot_cap": 3}).json()
        assert config["slot_cap"] == 3
        refused = control.post("/config", json={"clients": []})
        assert refused.status_code == 400
        assert control.post("/reset").status_code == 204
        assert len(control.get("/state").json()["clients"]) == 1


def test_unknown_config_keys_are_refused():
    with pytest.raises(ValueError, match="unknown keys"):
        Auth0Emulator({"pool_capp": 3})


# --- a separate process ----------------------------------------------------------------------


def test_the_emulator_runs_as_a_process_and_prints_its_base_url(tmp_path):
    with emulator_process({"management_rate": {"burst": 10, "per_second": 5}}) as base_url:
        assert base_url.startswith("http://127.0.0.1:")
        with http_client(base_url=base_url) as http:
            health = http.get("/__emulator/health").json()
            answer = http.post("/oauth/token", data={
                "grant_type": "client_credentials",
                "client_id": health["management_client_id"],
                "client_secret": "emulator-management-secret",
                "audience": health["management_audience"]})
            assert answer.status_code == 200
            token = answer.json()["access_token"]
            listed = http.get("/api/v2/clients", headers={"authorization": f"Bearer {token}"})
            assert listed.status_code == 200
            assert listed.headers["x-ratelimit-limit"] == "10"


def test_fault_rates_set_over_http_merge_into_the_running_ones(clock):
    with Auth0Emulator({"faults": {"seed": 5}, "management_rate": None}, clock=clock) as emu, \
            http_client(base_url=f"{emu.base_url}/__emulator") as control:
        rates = control.post("/faults", json={"rates": {"error_rate": 1.0}}).json()["rates"]
        assert (rates["seed"], rates["error_rate"]) == (5, 1.0)
        with session(emu) as api:
            assert api.get("/clients").status_code in (500, 502, 503)


def test_the_command_refuses_an_unknown_config_key(tmp_path):
    config = tmp_path / "config.json"
    config.write_text('{"pool_capp": 3}')
    done = subprocess.run([sys.executable, "-m", "tests.peers.auth0", "--config", str(config)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "unknown keys ['pool_capp']" in done.stderr
    assert done.stdout == ""
