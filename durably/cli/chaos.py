"""``durably chaos``: the reliability battery against the configured store (DESIGN §12)."""

from __future__ import annotations

import signal
import sys
from typing import Any

import click

from ..errors import InvalidInput
from .base import Table, _print_json, _store_options, cli, out, settings


def _scenarios(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    from ..chaos.battery import SCENARIOS

    names = tuple(dict.fromkeys(s.strip() for s in value.split(",") if s.strip()))
    unknown = [s for s in names if s not in SCENARIOS]
    if not names or unknown:
        raise InvalidInput(f"--scenarios: unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)}"
                           if unknown else f"--scenarios: name at least one of {', '.join(SCENARIOS)}")
    return names


@cli.command()
@_store_options
@click.option("--scenarios", default="kill9,concurrency,duplicates,store-outage", show_default=True,
              callback=_scenarios, help="Comma-separated: kill9, concurrency, duplicates, store-outage.")
@click.option("--runs", type=click.IntRange(min=1, max=100_000), default=100, show_default=True,
              help="Runs per scenario (kill9, concurrency, store-outage).")
@click.option("--workers", type=click.IntRange(min=1, max=32), default=3, show_default=True,
              help="Worker processes started for each scenario.")
@click.option("--outage", type=click.FloatRange(min=0.5, max=600), default=8.0, show_default=True,
              help="Seconds the store is unreachable in store-outage.")
@click.option("--pings", type=click.IntRange(min=2, max=5000), default=200, show_default=True,
              help="Concurrent duplicate cron pings, and concurrent sends of one event id (duplicates).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def chaos(scenarios: tuple[str, ...], runs: int, workers: int, outage: float, pings: int, as_json: bool) -> None:
    """Prove the configured store survives crashes, duplicates and outages (exit 1 if not).

    Runs in a throwaway env chaos-<id> (its rows are deleted at the end; no other env is
    touched): worker processes are killed with -9 while 3-step runs execute, a per-key
    concurrency limit is checked under kills, duplicate cron pings and event ids go through
    a `durably server`, and the workers' store is cut for a while. Effects are recorded
    outside the engine and checked: nothing lost, nothing applied twice, no overlap.
    """
    from ..chaos.battery import Battery, Options

    battery = Battery(settings(), Options(scenarios=scenarios, runs=runs, workers=workers, outage=outage,
                                          pings=pings),
                      say=_say)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        sys.stderr.write(f"chaos: env {battery.env} on {_where(battery)}\n")
        rows = battery.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if as_json:
        _print_json([r.to_json() for r in rows])
    else:
        _table(rows)
    if not all(r.ok for r in rows):
        sys.exit(1)


def _say(message: str) -> None:
    sys.stderr.write(f"chaos: {message}\n")


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt  # the battery's clean-up runs, as on Ctrl-C


def _where(battery: Any) -> str:
    from ..chaos.effects import pg_target

    s = battery.settings
    return f"PostgreSQL (schema {pg_target(s.database_url, s.schema_)[1]})" if battery.pg else f"SQLite {s.database_url}"


def _table(rows: list) -> None:
    t = Table(title="durably chaos")
    for name in ("scenario", "runs", "kills", "re-executions", "lost", "double-applied", "overlaps", "duration",
                 "result"):
        t.add_column(name, justify="left" if name in ("scenario", "result") else "right")
    for r in rows:
        t.add_row(r.scenario, str(r.runs), str(r.kills), str(r.re_executions), str(r.lost), str(r.double_applied),
                  str(r.overlaps), f"{r.duration:.1f}s", "ok" if r.ok else "FAILED")
    out.print(t)
    for r in rows:
        for p in r.problems:
            out.print(f"{r.scenario}: {p}")
