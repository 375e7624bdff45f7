"""The invariants of a world between moves (``judge_rest``), and where the clock may jump
(``old_end``): what the explorer and ``replay`` judge in every state."""

from __future__ import annotations

from datetime import datetime

from events.chain import Verified, verify
from orchestrator.domain.vocabulary import SECRET_USAGE
from tests.explore.judge import Violation
from tests.explore.model import held_end, usable_held
from tests.explore.world import Scenario, Snapshot

__all__ = ["judge_rest", "old_end"]


def judge_rest(s: Snapshot, sc: Scenario, status: str, path: tuple[str, ...]) -> list[Violation]:
    """The invariants of a world between moves. ``status``: the rotation of the usage:
    ``running``, ``parked``, ``completed``, ``abandoned`` or ``none``."""
    out: list[Violation] = []
    usage, log, p = sc.usage, s.log, s.provider

    def violate(invariant: str, message: str) -> None:
        out.append(Violation(invariant, message, path))

    if len(log.live(usage)) > 2:
        violate("at_most_two_live", f"the log holds {len(log.live(usage))} live {usage} credentials")
    for rid, rec in p.records.items():
        known = [log.creds[n] for n in rec.names if n in log.creds]
        if not any(c.status != "deleted" for c in known):
            violate("provider_knows_only_the_log",
                    f"the provider holds {rid} ({', '.join(rec.names)}), which the log "
                    + ("deleted" if known else "does not know"))
    held = dict(s.held).get(usage)
    usable = usable_held(p, usage, held, s.now, sc.ca)
    rot = log.in_flight(usage)
    if rot is None and usage != SECRET_USAGE:  # at rest: the log and the provider agree
        for rid in p.attached(usage):
            rec = p.records[rid]
            states = {log.creds[n].status for n in rec.names if n in log.creds}
            if rec.alive(s.now) and not states & {"active", "expired"}:
                violate("provider_knows_only_the_log",
                        f"the provider accepts {rid} ({', '.join(rec.names)}), which the log "
                        f"calls {', '.join(sorted(states))}")
    if status == "completed":
        last = [r for r in log.rotations.values() if r.usage == usage][-1]
        if usage == SECRET_USAGE:
            if p.secret is None or p.secret[0] != log.secret_version:
                violate("provider_knows_only_the_log",
                        f"completed: the log's secret is v{log.secret_version}, the provider's "
                        f"v{p.secret[0] if p.secret else None}")
            holds_new = held is not None and held.get("version") == str(log.secret_version).encode()
        else:
            usable_in_log = {c.provider_id for c in log.creds.values() if c.usage == usage
                             and c.status == "active" and (c.expires_at is None
                                                           or s.now < c.expires_at)}
            accepting = {rid for rid in p.attached(usage) if p.records[rid].alive(s.now)}
            if usable_in_log != accepting:
                violate("provider_knows_only_the_log",
                        f"completed: the log's usable {usage} credentials are at the provider "
                        f"{sorted(str(a) for a in usable_in_log)}, the provider accepts "
                        f"{sorted(accepting)}")
            holds_new = held is not None and held.get("credential_id") == last.new.encode()
        for item, _ in s.keystore:
            if item.startswith("secret/"):
                version = int(item.rsplit("/v", 1)[1])
                stale = version < log.secret_version - 1 or version > log.secret_version
            else:
                cred = log.creds.get(item.split("/")[0])
                stale = cred is None or cred.status == "deleted"
            if stale:
                violate("keystore_knows_only_the_log",
                        f"completed: the keystore still holds {item}")
        if not holds_new or not usable:
            violate("ends_completed_or_parked_intact",
                    f"rotation {last.id} completed but the application "
                    + ("does not hold its new credential" if not holds_new
                       else "cannot authenticate with it"))
        if not isinstance(verify(s.records), Verified):
            violate("log_is_consistent", "the hash chain does not verify")
    if status == "parked" and rot is not None:
        if not usable and not s.stranded and s.had:
            violate("ends_completed_or_parked_intact",
                    f"rotation {rot.id} parked and the application holds no usable credential")
        new = log.creds.get(rot.new)
        if new is not None and "tested" not in rot.steps:
            found = p.by_name(new.id)
            if new.status == "active":
                violate("ends_completed_or_parked_intact",
                        f"rotation {rot.id} parked with its untested {new.id} active in the log")
            if found is not None and found[0] in p.attached(usage) and (
                    len(found[1].names) == 1):
                violate("ends_completed_or_parked_intact",
                        f"rotation {rot.id} parked with its untested {new.id} attached at the "
                        "provider")
    return out


def old_end(s: Snapshot, sc: Scenario) -> datetime | None:
    """When the credential the application held at the root stops working at the provider, if
    it still holds it (the clock may jump there)."""
    held = dict(s.held).get(sc.usage)
    if held is None or sc.root_held is None:
        return None
    which = held.get("version") if sc.usage == SECRET_USAGE else held.get("credential_id")
    if which is None or which.decode() != sc.root_held:
        return None
    end = held_end(s.provider, sc.usage, held, s.now, sc.ca)
    return None if end is None or end.year == datetime.max.year else end  # the end of time: none
