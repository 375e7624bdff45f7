"""A delivery hook: the command a policy runs after each delivery of its credentials, pure.

The hook is told where the files are, never what they hold: the delivery folder's path is its
last argument and ``ORCHESTRATOR_DELIVERY_DIR``; the app, usage, credential and rotation ids are
in ``ORCHESTRATOR_*`` variables (``hook_environment``). Nothing secret is in its arguments or
its environment. Its output is logged only after ``scrub_output`` took out every private value
it was handed (the delivered private key or secret, should the hook print a file) and any PEM
private key, and cut to ``MAX_OUTPUT`` characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta

__all__ = [
    "DEFAULT_HOOK_TIMEOUT",
    "MAX_OUTPUT",
    "Hook",
    "HookResult",
    "hook_environment",
    "private_values",
    "scrub_output",
    "why_hook_failed",
]

DEFAULT_HOOK_TIMEOUT = timedelta(seconds=30)
MAX_OUTPUT = 2000  # characters of a hook's output kept for the log: its end, where errors are
REDACTED = "[redacted]"
_PRIVATE_PEM = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)", re.DOTALL)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Hook:
    """A policy's delivery hook: ``command`` (argv; the folder's path is appended) and how long
    it may run before it is killed and the delivery step fails."""

    command: tuple[str, ...]
    timeout: timedelta = DEFAULT_HOOK_TIMEOUT

    @property
    def name(self) -> str:
        """The program, as the logs name it (its arguments stay out of the logs)."""
        return self.command[0]


@dataclass(frozen=True, slots=True)
class HookResult:
    """How a hook ended: ``exit_code`` (None: killed at its timeout, or could not start, with
    ``error`` saying why) and its stdout and stderr together, as text."""

    exit_code: int | None
    output: str
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0


def hook_environment(folder: str, app: str, usage: str, credential_id: str | None,
                     rotation_id: str | None) -> dict[str, str]:
    """The variables a hook is given, beside the folder as its last argument."""
    env = {"ORCHESTRATOR_DELIVERY_DIR": folder, "ORCHESTRATOR_APP": app,
           "ORCHESTRATOR_USAGE": usage}
    if credential_id is not None:
        env["ORCHESTRATOR_CREDENTIAL_ID"] = credential_id
    if rotation_id is not None:
        env["ORCHESTRATOR_ROTATION_ID"] = rotation_id
    return env


def scrub_output(output: str, private: Iterable[str] = ()) -> str:
    """``output`` fit for a log line: every ``private`` value (and each of its lines, a PEM's
    body printed in pieces) and any PEM private key replaced by ``[redacted]``, control
    characters dropped, only its last ``MAX_OUTPUT`` characters kept."""
    pieces = {p.strip() for value in private for p in (value, *value.splitlines())}
    for piece in sorted((p for p in pieces if len(p) >= 8), key=len, reverse=True):
        output = output.replace(piece, REDACTED)
    output = _CONTROL.sub("", _PRIVATE_PEM.sub(REDACTED, output)).strip()
    if len(output) > MAX_OUTPUT:
        output = "..." + output[-MAX_OUTPUT:]
    return output


def why_hook_failed(hook: Hook, result: HookResult, app: str, usage: str) -> str | None:
    """The one line a failed delivery step records (never the output: that is in the log),
    None when the hook succeeded."""
    if result.succeeded:
        return None
    code = result.exit_code
    what = (result.error or "did not finish" if code is None
            else f"was killed by signal {-code}" if code < 0 else f"exited with status {code}")
    return (f"{app}: the delivery hook {hook.name} {what} after the {usage} files were delivered; "
            "its output is in the log (hook_failed); fix the hook or the policy's "
            "delivery.hook")


def private_values(files: Mapping[str, bytes], names: Iterable[str]) -> list[str]:
    """The text of the delivered files named ``names`` (the private ones)."""
    return [files[n].decode("utf-8", "replace") for n in names if n in files]
