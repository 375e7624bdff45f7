"""``events.state._new``, the fold's constructor of credentials and rotations, against the
dataclasses' own ``__init__``: the same value for any field values, the same refusals."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from events.kinds import CredentialKind, Usage
from events.state import Credential, Rotation, RotationStatus, Status, _new

_TIMES = st.datetimes(timezones=st.just(UTC))
_OPTIONAL_TEXT = st.none() | st.text(max_size=8)


def _credentials() -> st.SearchStrategy[dict[str, Any]]:
    required = {"id": st.text(max_size=8), "usage": st.sampled_from(list(Usage)),
                "kind": st.sampled_from(list(CredentialKind)), "kid": st.text(max_size=8),
                "fingerprint": st.text(max_size=8), "status": st.sampled_from(list(Status)),
                "added_at": _TIMES, "updated_at": _TIMES}
    optional = {"alg": _OPTIONAL_TEXT, "key_size": st.none() | st.integers(0, 8192),
                "public_pem": _OPTIONAL_TEXT, "expires_at": st.none() | _TIMES,
                "generated": st.booleans(), "deleted_at": st.none() | _TIMES}
    return st.fixed_dictionaries(required, optional=optional)


def _rotations() -> st.SearchStrategy[dict[str, Any]]:
    required = {"id": st.text(max_size=8), "usage": st.text(max_size=8),
                "reason": st.text(max_size=8), "new_credential_id": st.text(max_size=8),
                "started_at": _TIMES, "updated_at": _TIMES}
    optional = {"status": st.sampled_from(list(RotationStatus)), "policy": _OPTIONAL_TEXT,
                "steps": st.lists(st.text(max_size=5), max_size=3).map(tuple),
                "attempts": st.integers(0, 9), "completed_at": st.none() | _TIMES}
    return st.fixed_dictionaries(required, optional=optional)


@given(st.one_of(_credentials().map(lambda kw: (Credential, kw)),
                 _rotations().map(lambda kw: (Rotation, kw))))
def test_new_makes_the_value_the_constructor_makes(case: tuple[type, dict[str, Any]]) -> None:
    cls, values = case
    made: Any = _new(cls, **values)
    expected: Any = cls(**values)
    assert made == expected and hash(made) == hash(expected) and repr(made) == repr(expected)
    assert dataclasses.asdict(made) == dataclasses.asdict(expected)
    assert set(vars(made)) == {f.name for f in dataclasses.fields(cls)}
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.id = "other"
    assert type(made) is cls


def test_new_refuses_what_the_constructor_refuses() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    values: dict[str, Any] = {"id": "r1", "usage": "private_key_jwt", "reason": "manual",
                              "new_credential_id": "c1", "started_at": at, "updated_at": at}
    for wrong in ({**values, "colour": "red"}, {k: v for k, v in values.items() if k != "id"}):
        with pytest.raises(TypeError) as ours:
            _new(Rotation, **wrong)
        with pytest.raises(TypeError) as theirs:
            Rotation(**wrong)
        assert str(ours.value) == str(theirs.value)
