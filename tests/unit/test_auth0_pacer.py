"""The Auth0 tenant's pacer and the retry policy, on a virtual clock: a token bucket that
callers reserve from (no race, no spin), learns the tenant's budget from its x-ratelimit-*
headers when none is configured, holds everyone after a 429, and is one per tenant and
process; retries back off with jitter from a seeded source and give up in bounded time, and
after a call that failed every attempt the next calls make one attempt each until one
succeeds."""

from __future__ import annotations

import random
import re
import threading

import pytest

from orchestrator.adapters.providers.auth0.pacer import Pacer, RateLimit, tenant_pacer
from orchestrator.adapters.providers.auth0.retries import RetryPolicy, Transient
from orchestrator.domain.errors import ProviderError
from orchestrator.domain.identity_provider import ProviderUnavailable


class Time:
    """A clock that only the pacer's own sleep moves."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def headers(limit: int, remaining: int, reset: float) -> dict[str, str]:
    return {"x-ratelimit-limit": str(limit), "x-ratelimit-remaining": str(remaining),
            "x-ratelimit-reset": str(int(reset))}


def test_concurrent_callers_reserve_their_tokens_in_turn() -> None:
    waits: list[float] = []
    pacer = Pacer(RateLimit(per_second=10, burst=5), lambda: 1000.0, waits.append)
    threads = [threading.Thread(target=pacer.acquire) for _ in range(25)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 5 at once, then one every 0.1 s
    assert sorted(round(w, 6) for w in waits) == [round(0.1 * n, 6) for n in range(1, 21)]


def test_a_configured_budget_lets_a_burst_through_then_paces_it() -> None:
    t = Time()
    pacer = Pacer(RateLimit(per_second=4, burst=3), t.clock, t.sleep)
    for _ in range(11):
        pacer.acquire()
    assert t.waits == pytest.approx([0.25] * 8)
    assert t.now == pytest.approx(1002.0)


def test_without_a_budget_it_paces_by_what_the_tenant_says() -> None:
    t = Time()
    pacer = Pacer(None, t.clock, t.sleep)
    pacer.acquire()
    assert t.waits == []  # nothing known yet: no pacing
    pacer.observe(headers(limit=10, remaining=0, reset=t.now + 5))  # empty, full in 5 s: 2/s
    pacer.acquire()
    assert t.waits == pytest.approx([0.5])
    assert pacer.limit == RateLimit(per_second=2.0, burst=10)


def test_the_tenants_count_of_what_is_left_wins_over_a_generous_budget() -> None:
    t = Time()
    pacer = Pacer(RateLimit(per_second=100, burst=100), t.clock, t.sleep)
    pacer.acquire()
    pacer.observe(headers(limit=10, remaining=0, reset=t.now + 10))  # another process drained it
    pacer.acquire()
    assert t.waits == pytest.approx([1.0])  # the tenant's rate (1/s), not the configured 100/s
    assert pacer.limit == RateLimit(per_second=100, burst=100)  # the budget itself is kept


def test_a_429_holds_every_caller_until_the_time_the_tenant_named() -> None:
    t = Time()
    pacer = Pacer(RateLimit(per_second=2, burst=2), t.clock, t.sleep)
    pacer.hold(3.0)
    pacer.acquire()
    pacer.acquire()
    assert t.waits[0] == pytest.approx(3.5)  # the hold, then a token at 2/s
    assert t.now == pytest.approx(1004.0)


def test_one_pacer_per_tenant_and_process_reconfigured_when_the_budget_changes() -> None:
    t = Time()
    first = tenant_pacer("Example.eu.auth0.com", RateLimit(16, 50), t.clock, t.sleep)
    again = tenant_pacer("example.eu.auth0.com", RateLimit(16, 50), t.clock, t.sleep)
    assert again is first
    changed = tenant_pacer("example.eu.auth0.com", RateLimit(2, 10), t.clock, t.sleep)
    assert changed is first and first.limit == RateLimit(2, 10)
    assert tenant_pacer("other.eu.auth0.com", None, t.clock, t.sleep) is not first


def test_retries_back_off_with_seeded_jitter_and_give_up_bounded() -> None:
    t = Time()
    policy = RetryPolicy(attempts=4, base=0.5, cap=8.0, rng=random.Random(1))
    calls = []

    def failing() -> None:
        calls.append(t.now)
        raise Transient("GET /api/v2/clients: 503")

    with pytest.raises(ProviderUnavailable, match=r"503 .*gave up after 4 attempts"):
        policy.run(failing, "read", t.sleep)
    assert len(calls) == 4 and len(t.waits) == 3
    for attempt, wait in enumerate(t.waits, start=1):
        ceiling = 0.5 * 2 ** (attempt - 1)
        assert ceiling / 2 <= wait <= ceiling
    again = Time()
    attempts = iter([Transient("x"), Transient("x"), None])

    def twice_failing() -> str:
        failure = next(attempts)
        if failure is not None:
            raise failure
        return "ok"

    assert RetryPolicy(attempts=4, rng=random.Random(1)).run(twice_failing, "read",
                                                             again.sleep) == "ok"
    assert again.waits == t.waits[:2]  # the same seed, the same jitter


def test_a_429_asking_for_longer_than_the_call_may_wait_ends_the_call_at_once() -> None:
    t = Time()

    def limited() -> None:
        raise Transient("429 rate limited", wait=60.0)

    with pytest.raises(ProviderUnavailable, match="gave up after 1 attempt;"):
        RetryPolicy(max_wait=30).run(limited, "read", t.sleep)
    assert t.waits == []


def test_a_tenant_that_failed_every_attempt_gets_one_attempt_a_call_until_one_succeeds() -> None:
    """The tenant down for hours: a call after one that failed every attempt makes a single
    attempt and waits for nothing, so a tick's steps fail at once instead of each waiting out
    its backoffs; the first call that gets through brings the attempts back."""
    t = Time()
    policy = RetryPolicy(attempts=4, rng=random.Random(1))
    outcomes: list[Transient | None] = []
    calls = []

    def call() -> str:
        calls.append(t.now)
        failure = outcomes.pop(0)
        if failure is not None:
            raise failure
        return "ok"

    outcomes += [Transient("cannot connect")] * 4
    with pytest.raises(ProviderUnavailable, match="gave up after 4 attempts;"):
        policy.run(call, "read", t.sleep)
    assert (len(calls), len(t.waits)) == (4, 3)
    outcomes += [Transient("cannot connect")] * 2
    for _ in range(2):  # the outage goes on: one attempt each, no wait
        with pytest.raises(ProviderUnavailable, match=re.escape(
                "cannot connect (gave up after 1 attempt: the call before failed every "
                "attempt; the rotation retries later)")):
            policy.run(call, "read", t.sleep)
    assert (len(calls), len(t.waits)) == (6, 3)
    outcomes += [None, Transient("503"), None]  # back: a success, then a blip is ridden out
    assert policy.run(call, "read", t.sleep) == "ok"
    assert policy.run(call, "read", t.sleep) == "ok"
    assert (len(calls), len(t.waits)) == (9, 4)


def test_a_429_or_a_refusal_is_an_answer_and_keeps_the_attempts() -> None:
    t = Time()
    policy = RetryPolicy(attempts=4, max_wait=30, rng=random.Random(1))

    def limited() -> None:
        raise Transient("429 rate limited", wait=60.0)

    with pytest.raises(ProviderUnavailable, match="gave up after 1 attempt;"):
        policy.run(limited, "read", t.sleep)
    assert not policy.failing
    policy.failing = True  # an outage ...

    def refused() -> None:
        raise ProviderError("400 bad request")

    with pytest.raises(ProviderError, match="400"):
        policy.run(refused, "write", t.sleep)
    assert not policy.failing  # ... ended: the tenant answers
