"""The explorer's oracle: its own small fold of the log (types and JSON payloads, nothing of the
product's ``evolve``) and the invariants, judged on the log, the model provider and what the
application holds.

Each check has a name (``INVARIANTS``); a broken one is a ``Violation`` that names it, says what
happened, and carries the path that led there, so that it can be replayed as a regression test.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from events.store import Recorded

__all__ = ["INVARIANTS", "Cred", "LogFold", "Rot", "Violation"]

# name -> what it says (the README's table is this one)
INVARIANTS: dict[str, str] = {
    "at_most_two_live":
        "never more than 2 live credentials per usage: in the log (not deleted), at the provider "
        "(records of the usage, and attached to its slot)",
    "keeps_a_usable_credential":
        "no effect of the orchestrator (a provider call, a delivery) takes away the last "
        "credential the application holds that the provider accepts",
    "old_retired_after_successor":
        "the old credential is disabled (in the log, or detached at the provider) only after "
        "the new one passed the provider's test and the application holds it",
    "delivered_key_belongs":
        "what is delivered is one credential: the private key is the certificate's and the "
        "registered public key's (same kid), the provider accepted it in a test and accepts it "
        "now; a delivered secret is the provider's current one",
    "provider_knows_only_the_log":
        "every record at the provider is a credential the log has and has not deleted; at rest "
        "(no rotation running) the provider accepts nothing the log calls disabled or deleted, "
        "and after completion what the provider accepts for the usage is exactly what the log "
        "calls active and unexpired",
    "keystore_knows_only_the_log":
        "after completion the keystore holds private parts of credentials the log has and has "
        "not deleted, and the current and previous client secret only",
    "ends_completed_or_parked_intact":
        "every path ends with the rotation completed (the app holding the new credential, "
        "usable), or parked with the old credential intact (held, usable) and the untested new "
        "one disabled in the log and detached at the provider",
    "stranded_is_retried":
        "a parked rotation whose old credential expired is retried by the daemon until it "
        "completes (no path stops there, none runs past the depth bound)",
    "log_is_consistent":
        "in the log: a step only once and in order (generated, registered, tested, delivered), "
        "a rotation completes once and only after its new credential was tested and delivered, "
        "and the hash chain verifies",
}


@dataclass(frozen=True)
class Violation:
    invariant: str
    message: str
    path: tuple[str, ...] = ()

    def __str__(self) -> str:
        trail = "\n    ".join(self.path)
        return f"[{self.invariant}] {self.message}\n  path:\n    {trail}"


@dataclass
class Cred:
    id: str
    usage: str
    kind: str
    status: str = "added"
    expires_at: datetime | None = None
    provider_id: str | None = None
    subject_dn: str | None = None


@dataclass
class Rot:
    id: str
    usage: str
    old: str | None
    new: str
    status: str = "running"
    steps: tuple[str, ...] = ()


ORDER = ("generated", "registered", "tested", "delivered")


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@dataclass
class LogFold:
    """The log as this oracle reads it: credentials, rotations and the secret's version."""

    creds: dict[str, Cred] = field(default_factory=dict)
    rotations: dict[str, Rot] = field(default_factory=dict)
    secret_version: int = 0
    position: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)  # (invariant, message)

    def fork(self) -> LogFold:
        return LogFold({k: Cred(**vars(c)) for k, c in self.creds.items()},
                       {k: Rot(**vars(r)) for k, r in self.rotations.items()},
                       self.secret_version, self.position, [])

    def feed(self, records: Iterable[Recorded]) -> None:
        for rec in records:
            if rec.position <= self.position:
                continue
            self.position = rec.position
            self._apply(rec.type, json.loads(rec.payload_json), rec.correlation_id)

    def _problem(self, invariant: str, message: str) -> None:
        self.problems.append((invariant, message))

    def live(self, usage: str) -> list[Cred]:
        return [c for c in self.creds.values() if c.usage == usage and c.status != "deleted"]

    def in_flight(self, usage: str) -> Rot | None:
        return next((r for r in self.rotations.values()
                     if r.usage == usage and r.status in ("running", "parked")), None)

    def _apply(self, kind: str, p: dict[str, Any], rid: str | None) -> None:
        cid = str(p.get("credential_id"))
        match kind:
            case "credential.added":
                self.creds[cid] = Cred(cid, p["usage"], p["kind"],
                                       expires_at=_time(p.get("expires_at")),
                                       subject_dn=p.get("subject_dn"))
                if len(self.live(p["usage"])) > 2:
                    self._problem("at_most_two_live",
                                  f"the log holds {len(self.live(p['usage']))} live "
                                  f"{p['usage']} credentials")
            case "credential.registered":
                self.creds[cid].provider_id = p["provider_credential_id"]
            case "credential.activated":
                self.creds[cid].status = "active"
            case "credential.disabled" | "credential.deleted":
                self.creds[cid].status = kind.split(".")[1]
                rot = self.rotations.get(rid or "")
                if rot is not None and cid == rot.old and not (
                        "tested" in rot.steps and "delivered" in rot.steps):
                    self._problem("old_retired_after_successor",
                                  f"the log {self.creds[cid].status} the old credential {cid} "
                                  f"before rotation {rot.id} tested and delivered {rot.new} "
                                  f"(steps so far: {', '.join(rot.steps) or 'none'})")
            case "credential.expired":
                self.creds[cid].status = "expired"
            case "credential.expiry_changed":
                self.creds[cid].expires_at = _time(p.get("expires_at"))
            case "secret.rotated":
                self.secret_version = p["version"]
                rot = self.rotations.get(rid or "")
                if rot is not None and "tested" not in rot.steps:
                    self._problem("log_is_consistent",
                                  f"secret v{p['version']} recorded before its test")
            case "rotation.started":
                self.rotations[p["rotation_id"]] = Rot(p["rotation_id"], p["usage"],
                                                       p.get("old_credential_id"),
                                                       p["new_credential_id"])
            case "rotation.step_recorded":
                rot = self.rotations[p["rotation_id"]]
                step = p["step"]
                if step in rot.steps:
                    self._problem("log_is_consistent", f"step {step} of {rot.id} recorded twice")
                elif step in ORDER and any(s not in rot.steps for s in ORDER[:ORDER.index(step)]):
                    self._problem("log_is_consistent",
                                  f"step {step} of {rot.id} recorded after only "
                                  f"{', '.join(rot.steps)}")
                rot.steps = (*rot.steps, step)
            case "rotation.parked":
                self.rotations[p["rotation_id"]].status = "parked"
            case "rotation.retried":
                self.rotations[p["rotation_id"]].status = "running"
            case "rotation.abandoned":
                self.rotations[p["rotation_id"]].status = "abandoned"
            case "rotation.completed":
                rot = self.rotations[p["rotation_id"]]
                if rot.status == "completed":
                    self._problem("log_is_consistent", f"rotation {rot.id} completed twice")
                if not ("tested" in rot.steps and "delivered" in rot.steps):
                    self._problem("log_is_consistent",
                                  f"rotation {rot.id} completed after only {', '.join(rot.steps)}")
                rot.status = "completed"
            case _:
                pass
