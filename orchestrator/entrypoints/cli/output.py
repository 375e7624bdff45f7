"""How states and credentials look on output: JSON objects and plain tables (Rich)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from events.codec import format_time
from events.state import AppState, Credential

__all__ = ["credential_json", "credential_table", "print_table", "printable", "state_json"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with every control character (escape sequences, carriage returns, bidi
    overrides) written as its escape, ``\\x1b``: whatever a name or a message holds, the
    terminal shows it and never obeys it."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def _t(value: datetime | None) -> str | None:
    return format_time(value) if value is not None else None


def credential_json(cred: Credential, now: datetime) -> dict[str, Any]:
    """A credential as the JSON outputs show it; ``status`` is the effective one at ``now``."""
    return {
        "id": cred.id,
        "usage": cred.usage.value,
        "kind": cred.kind.value,
        "kid": cred.kid,
        "alg": cred.alg,
        "key_size": cred.key_size,
        "fingerprint": cred.fingerprint,
        "name": cred.name,
        "status": cred.effective_status(now).value,
        "recorded_status": cred.status.value,
        "expires_at": _t(cred.expires_at),
        "not_before": _t(cred.not_before),
        "subject_dn": cred.subject_dn,
        "generated": cred.generated,
        "provider_id": cred.provider_id,
        "added_at": _t(cred.added_at),
        "activated_at": _t(cred.activated_at),
        "updated_at": _t(cred.updated_at),
    }


def state_json(state: AppState, at: datetime, include_deleted: bool = False) -> dict[str, Any]:
    return {
        "app": state.app,
        "at": format_time(at),
        "version": state.version,
        "labels": dict(state.labels),
        "registered_at": _t(state.registered_at),
        "credentials": [
            credential_json(c, at)
            for c in state.credentials.values()
            if include_deleted or c.live
        ],
        "secret": None if state.secret is None else {
            "version": state.secret.version,
            "fingerprint": state.secret.fingerprint,
            "rotated_at": _t(state.secret.rotated_at),
            "previous_valid_until": _t(state.secret.previous_valid_until),
        },
        "rotations": [
            {"id": r.id, "usage": r.usage, "reason": r.reason, "status": r.status.value,
             "attempts": r.attempts, "last_error": r.last_error,
             "started_at": _t(r.started_at), "completed_at": _t(r.completed_at)}
            for r in state.rotations.values()
        ],
    }


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], empty: str) -> None:
    """A plain table on stdout (Rich, loaded here: JSON output never pays for it)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(soft_wrap=True, highlight=False, width=10_000)
    if not rows:
        console.print(printable(empty), markup=False)
        return
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for header in headers:
        table.add_column(header, overflow="fold", no_wrap=True)
    for row in rows:
        table.add_row(*(Text("-" if v is None else printable(str(v))) for v in row))
    console.print(table)


def credential_table(app: str, creds: Iterable[Credential], now: datetime) -> None:
    rows = [
        (c.id, c.usage.value, c.kind.value, c.kid, c.alg or "-", c.effective_status(now).value,
         format_time(c.expires_at) if c.expires_at else "never", c.fingerprint[:23] + "…")
        for c in creds
    ]
    print_table(["ID", "USAGE", "KIND", "KID", "ALG", "STATUS", "EXPIRES", "FINGERPRINT"], rows,
                empty=f"application {app} has no credentials")
