"""The exploration: every reachable world of one rotation, depth first, each world once.

From a world (``Snapshot``) the moves are:

* ``tick``: a fresh daemon process (nothing in memory survives the last move) runs one tick of
  the real ticker until one rotation step is recorded, under every sequence of answers the hand
  can give to its effects (``Hand``): each provider call ok or one of five faults, each delivery
  ok or failed, a crash after any effect; within the path's budget of faults and crashes;
* when the tick has nothing to do: the clock moves to the next instant something is due
  (``planner.next_due``: a backoff, the overlap, a parked rotation's retry, an expiry);
* at any world, once per path: the clock jumps to the instant the credential the application
  held at the start stops working at the provider (the old key's or certificate's expiry, the
  previous client secret's end).

Worlds are told apart by ``world.fingerprint`` (the log's state, the keystore's items, the
provider's and the application's state, the time, the budgets left): a world reached again is
not explored again, so the worlds form a graph, and ``paths`` counts the paths through it from
the root to an end (every sequence of moves and answers, without enumerating them one by one).
An end is a world where the rotation is completed and nothing is due, or parked and holding
the old credential intact (the daemon's retries that follow are explored too).
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from events.state import AppState
from orchestrator.domain.checks import PlanPolicy
from orchestrator.domain.planner import next_due
from orchestrator.domain.rotation import Params
from orchestrator.domain.vocabulary import SECRET_USAGE
from tests.explore.hand import Hand, Pause, ReplayHand
from tests.explore.judge import LogFold, Violation
from tests.explore.model import ProviderState, usable_held
from tests.explore.rest import judge_rest, old_end
from tests.explore.world import (
    APP,
    Budget,
    KeyPool,
    Scenario,
    Snapshot,
    World,
    fingerprint,
)

__all__ = ["Bounds", "Explorer", "Result", "jump_move", "next_due_move", "policy", "replay", "root",
           "scenarios", "status_of"]

T0 = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
DAY, HOUR, MINUTE = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)


@dataclass(frozen=True)
class Bounds:
    faults: int = 2  # provider faults and failed deliveries per path
    crashes: int = 1
    jumps: int = 1  # jumps to the old credential's end per path
    depth: int = 200  # moves per path; a path longer than this is a violation (no progress)


def policy(usage: str, ca: tuple[bytes, bytes] | None = None, attempts: int = 2) -> PlanPolicy:
    """The policy every scenario runs under: rotate every 20 days, 5 days before expiry, a
    1-hour overlap, keys for 60 days, retired ones kept 30 days (so a third rotation finds the
    first credential still there: at capacity); ``attempts`` failures park a rotation."""
    params = Params(
        usage=usage, algorithm="PS256" if usage == "jar" else (
            None if usage in ("mtls", SECRET_USAGE) else "RS256"),
        overlap=HOUR, lifetime=None if usage == SECRET_USAGE else 60 * DAY,
        subject="CN={app}.clients.example" if usage == "mtls" else None,
        issuer_cert=ca[0] if ca else None, issuer_key=ca[1] if ca else None,
        attempts=attempts, backoff=MINUTE, max_backoff=HOUR)
    return PlanPolicy(name=f"{usage}-policy", params=params, every=20 * DAY,
                      before_expiry=5 * DAY, retention=30 * DAY, apps=(APP,))


def status_of(log: LogFold, usage: str, before: frozenset[str] = frozenset()) -> str:
    """The rotation of ``usage`` (not one of ``before``, those that ran before the root):
    running, parked, completed, abandoned or none."""
    rotations = [r for r in log.rotations.values() if r.usage == usage and r.id not in before]
    in_flight = log.in_flight(usage)
    if in_flight is not None:
        return in_flight.status
    return rotations[-1].status if rotations else "none"


def _settle(sc: Scenario, snap: Snapshot, pool: KeyPool, done: Callable[[Snapshot], bool],
            broken: list[Violation], limit: int = 200) -> Snapshot:
    """Run the daemon without faults (ticks, and the clock to each next due instant) until
    ``done``; what it breaks on the way goes to ``broken``."""
    for _ in range(limit):
        if done(snap):
            return snap
        world = World(sc, snap, Hand((), 0, 0), pool)
        world.tick()
        after = world.snapshot()
        broken.extend(Violation(v.invariant, v.message, ("(set-up)",)) for v in world.violations)
        if fingerprint(after, sc.t0) == fingerprint(snap, sc.t0):
            due = next_due(snap.state, (sc.policy,), snap.now)
            assert due is not None, "the set-up stalled"
            after = snap.at(due, sc.ca, sc.usage)
        snap = after
    raise AssertionError("the set-up did not settle")


def root(sc: Scenario, pool: KeyPool, bounds: Bounds,
         broken: list[Violation] | None = None) -> Snapshot:
    """The world the exploration starts from. *fresh*: the application is registered and has
    no credential of the usage; the next tick provisions one. *capacity*: two rotations ran
    (the first credential is retired but kept, the second is active and held: two live), and
    the clock is at the instant the third is due. The set-up runs the same product, judged the
    same way: what it breaks goes to ``broken`` (by default, it must break nothing)."""
    checked: list[Violation] = [] if broken is None else broken
    empty = Snapshot(records=(), claims=(), state=AppState(app=APP), keystore=(),
                     provider=ProviderState(), held=(), log=LogFold(), now=sc.t0,
                     budget=Budget(0, 0, 0), had=False, stranded=False)
    world = World(sc, empty, Hand((), 0, 0), pool)
    world.do(lambda core: core.service.register_app(APP, {}))
    snap = world.snapshot()
    if sc.name == "capacity":
        snap = _settle(sc, snap, pool, lambda s: sum(
            r.status == "completed" for r in s.log.rotations.values()) >= 2 and status_of(
                s.log, sc.usage) == "completed", checked)
        assert broken is not None or not checked, checked
        due = next_due(snap.state, (sc.policy,), snap.now)
        assert due is not None
        snap = snap.at(due, sc.ca, sc.usage)
        held = dict(snap.held)[sc.usage]
        which = held.get("version") if sc.usage == SECRET_USAGE else held.get("credential_id")
        sc.root_held = (which or b"").decode()
        sc.root_rotations = frozenset(snap.log.rotations)
        assert (snap.log.secret_version == 2 if sc.usage == SECRET_USAGE
                else len(snap.log.live(sc.usage)) == 2)
    return replace(snap, budget=Budget(bounds.faults, bounds.crashes, bounds.jumps))


Key = tuple[tuple[Any, ...], Budget]  # a world and the budgets left to explore it with


def _covers(big: Budget, small: Budget) -> bool:
    return big.faults >= small.faults and big.crashes >= small.crashes and big.jumps >= small.jumps


def _minus(a: Budget, b: Budget) -> Budget:
    return Budget(a.faults - b.faults, a.crashes - b.crashes, a.jumps - b.jumps)


@dataclass
class Node:
    children: list[Key] = field(default_factory=list)
    end: str | None = None
    covered_by: Key | None = None  # explored already with at least this node's budgets


@dataclass
class Result:
    usage: str
    scenario: str
    states: int  # distinct worlds
    visits: int  # (world, budgets left) reached, covered ones included
    transitions: int
    executions: int  # runs of the product's code (one tick each)
    paths: int
    ends_completed: int
    ends_parked: int
    depth: int
    seconds: float
    violations: list[Violation]
    seen: dict[str, int] = field(default_factory=dict)


class Explorer:
    """Depth first over the worlds of one scenario. A world reached again with budgets that
    one exploration of it already covered (no more faults, crashes or jumps left than it had)
    is not explored again: every path from it is a path from the one explored (the product
    never reads the budgets). ``paths`` still counts each path once, with its own budgets: a
    covered node counts the paths of the node covering it that stay within its budgets."""

    def __init__(self, sc: Scenario, pool: KeyPool, bounds: Bounds = Bounds()) -> None:
        self.sc = sc
        self.pool = pool
        self.bounds = bounds
        self.nodes: dict[Key, Node] = {}
        self.explored: dict[tuple[Any, ...], list[Budget]] = {}
        self.stack: set[Key] = set()
        self.executions = 0
        self.depth = 0
        self.found: dict[tuple[str, str], Violation] = {}
        self.seen: Counter[str] = Counter()

    def run(self) -> Result:
        began = time.process_time()
        setup: list[Violation] = []
        start = root(self.sc, self.pool, self.bounds, setup)
        self._note(setup, ())
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, 20 * self.bounds.depth + 1000))
        try:
            first = self.visit(start, ())
            paths = self._paths(first, first[1], {})
        finally:
            sys.setrecursionlimit(limit)
        explored = [n for n in self.nodes.values() if n.covered_by is None]
        ends = [n.end for n in explored]
        return Result(
            usage=self.sc.label or self.sc.usage, scenario=self.sc.name,
            states=len({world for world, _ in self.nodes}), visits=len(self.nodes),
            transitions=sum(len(n.children) for n in explored), executions=self.executions,
            paths=paths, ends_completed=ends.count("completed"), ends_parked=ends.count("parked"),
            depth=self.depth, seconds=time.process_time() - began,
            violations=list(self.found.values()), seen=dict(self.seen))

    def _tally(self, snap: Snapshot) -> None:
        """What kinds of worlds were reached (so that a test can tell a check was exercised)."""
        status = status_of(snap.log, self.sc.usage, self.sc.root_rotations)
        jumped = snap.budget.jumps < self.bounds.jumps
        for kind, reached in (
                ("parked", status == "parked"),
                ("abandoned", any(r.status == "abandoned" for r in snap.log.rotations.values())),
                ("stranded", snap.stranded),
                ("parked while stranded", status == "parked" and snap.stranded),
                ("crashed", snap.budget.crashes < self.bounds.crashes),
                ("after the old credential's end", jumped),
                ("completed after the old credential's end", jumped and status == "completed")):
            if reached:
                self.seen[kind] += 1

    def _note(self, violations: list[Violation], path: tuple[str, ...]) -> None:
        for v in violations:
            key = (v.invariant, v.message)
            if key not in self.found:
                self.found[key] = Violation(v.invariant, v.message, (*path, *v.path))

    def _ticks(self, snap: Snapshot) -> list[tuple[str, Snapshot]]:
        """Every world one tick can lead to, under every sequence of the hand's answers."""
        out = []
        forced: list[int] | None = []
        while forced is not None:
            hand = Hand(forced, snap.budget.faults, snap.budget.crashes)
            world = World(self.sc, snap, hand, self.pool)
            world.tick()
            child = world.snapshot()
            self.executions += 1
            stopped = f" => {hand.stopped}" if isinstance(hand.stopped, Pause) else ""
            label = "tick" + (f": {'; '.join(hand.labels)}" if hand.labels else "") + stopped
            self._note(world.violations, (f"(in) {label}",))
            out.append((label, child))
            forced = hand.siblings()
        return out

    def visit(self, snap: Snapshot, path: tuple[str, ...]) -> Key:
        sc, bounds = self.sc, self.bounds
        world = fingerprint(snap, sc.t0)
        key = (world, snap.budget)
        if key in self.nodes:
            if key in self.stack:
                self._note([Violation("stranded_is_retried", "a cycle of worlds")], path)
            return key
        for budget in self.explored.get(world, ()):
            if _covers(budget, snap.budget) and (world, budget) not in self.stack:
                self.nodes[key] = Node(covered_by=(world, budget))
                return key
        node = self.nodes[key] = Node()
        self.explored.setdefault(world, []).append(snap.budget)
        self._tally(snap)
        self.depth = max(self.depth, len(path))
        if len(path) > bounds.depth:
            self._note([Violation("stranded_is_retried",
                                  f"no end after {bounds.depth} moves")], path)
            return key
        self.stack.add(key)
        for label, child in self._moves(snap, world, node, path):
            node.children.append(self.visit(child, (*path, label)))
        self.stack.discard(key)
        return key

    def _moves(self, snap: Snapshot, world: tuple[Any, ...], node: Node,
               path: tuple[str, ...]) -> list[tuple[str, Snapshot]]:
        """The moves from ``snap`` (after judging it); marks ``node`` an end where it is one."""
        sc = self.sc
        status = status_of(snap.log, sc.usage, sc.root_rotations)
        self._note(judge_rest(snap, sc, status, ()), path)
        if status == "completed":
            node.end = "completed"
            return []
        moves: list[tuple[str, Snapshot]] = []
        ticks = self._ticks(snap)
        if len(ticks) > 1 or fingerprint(ticks[0][1], sc.t0) != world:
            moves.extend(ticks)
        else:  # nothing to do now
            usable = usable_held(snap.provider, sc.usage, dict(snap.held).get(sc.usage),
                                 snap.now, sc.ca)
            if status == "parked" and (usable or not snap.had):
                node.end = "parked"
            due = next_due_move(snap, sc)
            if due is not None:
                moves.append(due)
            elif node.end is None:
                self._note([Violation(
                    "stranded_is_retried" if status == "parked" else
                    "ends_completed_or_parked_intact",
                    f"nothing more is ever due, and the rotation is {status}"
                    + ("" if usable else " with no usable credential held"))], path)
        jump = jump_move(snap, sc)
        if jump is not None:
            moves.append(jump)
        return moves

    def _paths(self, key: Key, cap: Budget, memo: dict[tuple[Key, Budget], int]) -> int:
        """Paths from ``key`` to an end that spend at most ``cap`` (a cycle, which is reported,
        counts nothing)."""
        node = self.nodes[key]
        if node.covered_by is not None:
            return self._paths(node.covered_by, cap, memo)
        if (key, cap) in memo:
            return memo[(key, cap)]
        memo[(key, cap)] = 0
        total = 1 if node.end else 0
        for child in node.children:
            spent = _minus(key[1], child[1])
            if _covers(cap, spent):
                total += self._paths(child, _minus(cap, spent), memo)
        memo[(key, cap)] = total
        return total


def next_due_move(snap: Snapshot, sc: Scenario) -> tuple[str, Snapshot] | None:
    """The clock to the next instant something is due (the daemon wakes then)."""
    due = next_due(snap.state, (sc.policy,), snap.now)
    if due is None:
        return None
    return f"clock: next due (+{_human(due - sc.t0)})", snap.at(due, sc.ca, sc.usage)


def jump_move(snap: Snapshot, sc: Scenario) -> tuple[str, Snapshot] | None:
    """The clock to the end of the credential the application held at the root, if the path
    may still jump and the application still holds it."""
    end = old_end(snap, sc)
    if end is None or end <= snap.now or snap.budget.jumps <= 0:
        return None
    b = snap.budget
    return (f"clock: old credential's end (+{_human(end - sc.t0)})",
            snap.at(end, sc.ca, sc.usage, Budget(b.faults, b.crashes, b.jumps - 1)))


def replay(sc: Scenario, moves: Sequence[str], pool: KeyPool,
           bounds: Bounds = Bounds()) -> tuple[Snapshot, list[Violation]]:
    """Walk one path the explorer printed (its move labels), judging every world on the way
    as the exploration does; the world at the end and what was broken."""
    snap = root(sc, pool, bounds)
    broken: list[Violation] = []
    for i, move in enumerate(moves):
        path = tuple(moves[: i + 1])
        if move.startswith("tick"):
            head = move.split(" => ")[0]
            choices = head.removeprefix("tick: ").split("; ") if head != "tick" else []
            hand = ReplayHand(choices)
            world = World(sc, snap, hand, pool)
            world.tick()
            assert not hand.choices, f"{move}: these answers were never asked for: {hand.choices}"
            broken += [Violation(v.invariant, v.message, path) for v in world.violations]
            snap = world.snapshot()
        else:
            clock = (next_due_move if move.startswith("clock: next due") else jump_move)(snap, sc)
            assert clock is not None and clock[0] == move, f"{move}: not a move from here ({clock})"
            snap = clock[1]
        broken += judge_rest(snap, sc, status_of(snap.log, sc.usage, sc.root_rotations), path)
    return snap, broken


def _human(delta: timedelta) -> str:
    days, seconds = delta.days, delta.seconds
    return f"{days}d{seconds // 3600:02d}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


def scenarios(ca: tuple[bytes, bytes]) -> list[Scenario]:
    """Every usage (mtls twice: self-signed, and CA-issued by subject DN), fresh and at
    capacity."""
    out = []
    for usage, label, issuer in (("private_key_jwt", "private_key_jwt", None), ("jar", "jar", None),
                                 ("mtls", "mtls (self-signed)", None),
                                 ("mtls", "mtls (CA-issued)", ca),
                                 (SECRET_USAGE, SECRET_USAGE, None)):
        for name in ("fresh", "capacity"):
            out.append(Scenario(usage, name, policy(usage, issuer), issuer[0] if issuer else None,
                                t0=T0, label=label))
    return out
