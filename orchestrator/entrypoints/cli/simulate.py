"""``orchestrator simulate``: the policies over a virtual fleet, in memory."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from orchestrator.domain.errors import InputError
from orchestrator.entrypoints.cli.output import print_table
from orchestrator.entrypoints.cli.params import TIME

SIMULATION_END = datetime(9990, 1, 1, tzinfo=UTC)  # room for a policy's horizons after the run


@click.command()
@click.option("--days", type=click.IntRange(min=1, max=3660), default=365, show_default=True)
@click.option("--apps", type=click.IntRange(min=1, max=1_000_000), default=100,
              show_default=True)
@click.option("--policies", "policies_dir", type=click.Path(path_type=Path),
              help="Policies folder [env ORCHESTRATOR_POLICIES; default ./policies].")
@click.option("--start", type=TIME, help="Virtual start time (default: now).")
@click.option("--tick", "tick_minutes", type=click.IntRange(min=1, max=525_600), default=60,
              show_default=True, help="Virtual minutes between ticks (at most a year).")
@click.option("--fault-rate", type=click.FloatRange(0, 1), default=0.0,
              help="Share of provider calls that fail.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.pass_context
def simulate(ctx: click.Context, days: int, apps: int, policies_dir: Path | None,
             start: datetime | None, tick_minutes: int, fault_rate: float,
             as_json: bool) -> None:
    """Run the policies over a virtual fleet for DAYS in memory; check every invariant at every
    event instant. Exit 1 when a safety invariant broke (or, without --fault-rate, when a
    rotation did not finish)."""
    import logging

    from orchestrator.app.simulate import simulate as run
    from orchestrator.entrypoints.logs import configure
    from orchestrator.policies.files import load_policies
    from orchestrator.policies.source import to_plan_policy

    configure(json_logs=True, level=logging.ERROR)
    if start is not None and start > SIMULATION_END - timedelta(days=days):
        raise InputError(f"--start {start.isoformat()} with --days {days} runs past "
                         f"{SIMULATION_END.date()}, where time stops here; start earlier")
    directory = policies_dir or ctx.obj["settings"].policies
    loaded = load_policies([directory])
    if loaded.errors:
        raise InputError(str(loaded.errors[0]))
    if not loaded.policies:
        raise InputError(f"no policy files (*.yaml) in {directory}")
    policies = [to_plan_policy(p) for p in loaded.policies]
    from orchestrator.bootstrap import fast_keys, in_memory, utc_now

    provider = f"faulty:{fault_rate}:0" if fault_rate else "local"
    keys = fast_keys()
    result = run(lambda clock: in_memory(clock, lambda: policies, provider=provider,
                                         crypto=keys, actor="simulator"),
                 policies, apps, days, start or utc_now(), timedelta(minutes=tick_minutes),
                 faults=bool(fault_rate))
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2))
    else:
        click.echo(f"simulated {days} days, {apps} applications, {len(policies)} policies: "
                   f"{result.ticks} ticks, {result.events} events in "
                   f"{result.elapsed_seconds:.1f} s")
        kinds = ["rotations", "secret_rotations", "expiries", "deletions", "failures", "parked"]
        print_table(["MONTH", *[k.upper().replace("_", " ") for k in kinds]],
                    [(m, *[c.get(k, 0) for k in kinds]) for m, c in sorted(result.by_month.items())],
                    empty="nothing happened")
        for name, held in result.invariants.items():  # safety: any BROKEN fails the run
            click.echo(f"{'held  ' if held else 'BROKEN'}  {name.replace('_', ' ')}")
        for name, held in result.liveness.items():  # with injected faults, parking is expected
            mark = "held  " if held else "missed" if result.faults else "BROKEN"
            note = "" if held or not result.faults else " (expected with --fault-rate)"
            click.echo(f"{mark}  {name.replace('_', ' ')}{note}")
        for violation in result.violations[:20]:
            click.echo(f"  {violation}")
    if not result.ok:
        raise click.exceptions.Exit(1)
