"""structlog configuration: JSON lines (pretty on a terminal), and redaction of anything secret.

Log events are snake_case, past tense (``rotation_step_completed``), with app, credential and
rotation ids bound; fingerprints, never key material. ``redact`` is the last line of defence:
it replaces the value of any key that names secret material, and any value that carries a PEM
private key, with ``[redacted]``.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

__all__ = ["configure", "is_configured", "redact"]

REDACTED = "[redacted]"
_SECRET_KEYS = re.compile(r"(secret|private|password|passphrase|token|assertion|master_key)",
                          re.IGNORECASE)
_PRIVATE_PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")


def _clean(value: Any) -> Any:
    if isinstance(value, str) and _PRIVATE_PEM.search(value):
        return REDACTED
    if isinstance(value, (bytes, bytearray)):
        return REDACTED
    if isinstance(value, dict):
        return {k: REDACTED if _SECRET_KEYS.search(str(k)) else _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def redact(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: no secret material leaves through the logs."""
    for key in list(event_dict):
        if key != "event" and _SECRET_KEYS.search(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _clean(event_dict[key])
    return event_dict


_configured = False


def is_configured() -> bool:
    """Whether ``configure`` ran in this process."""
    return _configured


def configure(json_logs: bool | None = None, level: int = logging.INFO) -> None:
    """JSON lines on stderr, or a pretty console when stderr is a terminal."""
    global _configured
    _configured = True
    if json_logs is None:
        json_logs = not sys.stderr.isatty()
    renderer: Any = (structlog.processors.JSONRenderer(sort_keys=True) if json_logs
                     else structlog.dev.ConsoleRenderer())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
