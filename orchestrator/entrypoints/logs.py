"""structlog configuration: JSON lines (pretty on a terminal), and redaction of anything secret.

Log events are snake_case, past tense (``rotation_step_completed``), with app, credential and
rotation ids bound; fingerprints, never key material. ``redact`` is the last line of defence:
it replaces the value of any key that names secret material, and any value that carries a PEM
private key, with ``[redacted]``.

Python warnings (``warnings.warn``, a library's DeprecationWarning) are captured into logging
(``logging.captureWarnings``) and leave as ``python_warning`` lines like every other; the last
error (``last_problem``) is remembered for the daemon's heartbeat and ``orchestrator status``.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any


@contextmanager
def _without_rich() -> Iterator[None]:
    """structlog's first import without Rich, when stderr is not a terminal.

    ``import structlog`` loads ``structlog.dev``, which, Rich being installed (the tables of
    ``orchestrator status`` use it), loads Rich's traceback and pretty-printer and Pygments'
    lexers: a third of structlog's import time, for the console renderer's tracebacks only.
    Off a terminal the logs are JSON (``configure``), so structlog is imported as on a machine
    without Rich (structlog supports that: its console renderer then prints plain
    tracebacks). A ``None`` entry in ``sys.modules`` makes ``import rich`` fail; it is removed
    again at once, so Rich itself still loads where a command asks for it. On a terminal, or
    when structlog or Rich is already loaded, nothing changes."""
    if "structlog" in sys.modules or "rich" in sys.modules or sys.stderr.isatty():
        yield
        return
    sys.modules["rich"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if "rich" in sys.modules and sys.modules["rich"] is None:
            del sys.modules["rich"]


with _without_rich():
    import structlog

__all__ = ["configure", "is_configured", "last_problem", "redact"]

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


_PROBLEM_LEVELS = frozenset({"warning", "error", "critical"})
_PROBLEM_FIELDS = ("app", "provider", "rotation_id", "error", "detail", "fix")
_last_problem: dict[str, Any] | None = None


def _remember_problem(_logger: Any, _name: str,
                      event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor (after ``redact``): keep the newest line at error or above, or at
    warning with an ``error`` (a failed step, an unreachable provider; not a summary such as
    ``tick_completed``)."""
    global _last_problem
    level = event_dict.get("level")
    if level in _PROBLEM_LEVELS and (level != "warning" or event_dict.get("error")
                                     or event_dict.get("exception")):
        kept = {"event": event_dict.get("event"), "level": event_dict.get("level"),
                "at": event_dict.get("timestamp")}
        kept.update((k, event_dict[k]) for k in _PROBLEM_FIELDS if event_dict.get(k) is not None)
        if "error" not in kept and event_dict.get("exception"):
            kept["error"] = str(event_dict["exception"]).strip().splitlines()[-1]
        _last_problem = kept
    return event_dict


def last_problem() -> dict[str, Any] | None:
    """The newest log line at error level or above, or at warning with an error, since
    ``configure`` (its event, level, time, and its app, error and fix when it has them), or
    None."""
    return None if _last_problem is None else dict(_last_problem)


def _python_warning(_logger: Any, _name: str,
                    event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A captured Python warning as a snake_case event: ``python_warning``, its text (``file:
    line: Category: message``) in ``warning``."""
    if event_dict.get("logger") == "py.warnings":
        event_dict["warning"] = str(event_dict.get("event", "")).strip()
        event_dict["event"] = "python_warning"
    return event_dict


_configured = False


def is_configured() -> bool:
    """Whether ``configure`` ran in this process."""
    return _configured


def configure(json_logs: bool | None = None, level: int = logging.INFO,
              capture_uncaught: bool = False) -> None:
    """JSON lines on stderr, or a pretty console when stderr is a terminal.

    The standard library's logging (APScheduler, Alembic, SQLAlchemy, any library) goes through
    the same processors by structlog's ``ProcessorFormatter``, so in JSON mode every line on
    stderr is one JSON object, an exception a field of it (``exception``) rather than a loose
    traceback; other libraries speak from WARNING up. ``capture_uncaught`` (the daemon) logs an
    exception nobody caught, in any thread, the same way. Python warnings are captured into
    logging, so they too are lines of this format (``python_warning``)."""
    global _configured, _last_problem
    _configured = True
    _last_problem = None
    if json_logs is None:
        json_logs = not sys.stderr.isatty()
    renderer: Any = (structlog.processors.JSONRenderer(sort_keys=True) if json_logs
                     else structlog.dev.ConsoleRenderer())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,  # before redact: a traceback is text it checks
        redact,
        _remember_problem,
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, _python_warning, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    ))
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(max(level, logging.WARNING))
    logging.captureWarnings(True)  # warnings.warn -> logger "py.warnings" -> the handler above
    if capture_uncaught:
        sys.excepthook = _uncaught
        threading.excepthook = lambda args: _uncaught(args.exc_type, args.exc_value,
                                                      args.exc_traceback)


_HANDLER = "orchestrator.structlog"


def _uncaught(kind: type[BaseException], value: BaseException | None,
              tb: TracebackType | None) -> None:
    if value is None or isinstance(value, KeyboardInterrupt):
        sys.__excepthook__(kind, value or kind(), tb)
        return
    structlog.get_logger("orchestrator").critical("unhandled_exception", error=str(value),
                                                  exc_info=(kind, value, tb))
