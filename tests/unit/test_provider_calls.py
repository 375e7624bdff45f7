"""``observed``: each call of a provider is told once, with its outcome, and its result or error
passes through unchanged."""

from __future__ import annotations

import pytest

from orchestrator.app.provider_calls import observed
from orchestrator.domain.errors import ProviderError
from orchestrator.domain.identity_provider import ProviderUnavailable


def raising(exc: Exception) -> str:
    raise exc


@pytest.mark.parametrize(("call", "outcome", "raised"), [
    (lambda: "kid-1", "ok", None),
    (lambda: raising(ProviderUnavailable("connection refused")), "unavailable",
     ProviderUnavailable),
    (lambda: raising(ProviderError("401 invalid_client")), "error", ProviderError),
    (lambda: raising(KeyError("a bug")), "error", KeyError),
], ids=["answered", "not reached", "refused", "anything else"])
def test_a_call_is_told_once_with_its_outcome(call, outcome, raised) -> None:  # type: ignore[no-untyped-def]
    told: list[tuple[str, str]] = []
    if raised is None:
        assert observed("auth0-prod", call, lambda *seen: told.append(seen)) == "kid-1"
    else:
        with pytest.raises(raised):
            observed("auth0-prod", call, lambda *seen: told.append(seen))
    assert told == [("auth0-prod", outcome)]
