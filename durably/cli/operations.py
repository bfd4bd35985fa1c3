"""Operating a store: functions (pause, resume), status, migrate, health, prune, audit, backfill."""

from __future__ import annotations

import asyncio
import json
import sys
import time

import click

from ..errors import InvalidInput, NotFound
from ..core.blobs import iso
from .base import Table, _print_json, _store_options, _text, cli, open_store, out, settings
from .ledger import _status_style


@cli.group(invoke_without_command=True)
@_store_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def functions(ctx: click.Context, as_json: bool) -> None:
    """The registry: every function workers have registered, with triggers, last run and
    whether it is paused; `functions pause ID` and `functions resume ID`."""
    from ..core.cron import describe
    from ..core.options import FunctionConfig

    if ctx.invoked_subcommand is not None:
        return
    store = open_store()
    try:
        rows = store.list_functions(time.time() - 86400).result()
        paused = store.paused_functions().result()
    finally:
        store.close()
    items = []
    for f in rows:
        c = f["config"]
        if c.get("internal"):
            continue
        last = f["last_run"]
        items.append({
            "id": f["id"], "app_id": f["app_id"], "triggers": c["triggers"],
            "flow_control": FunctionConfig.from_json(c).flow_control(), "event_schema": c.get("event_schema"),
            "last_run": {"id": last["id"], "status": last["status"], "created_at": iso(last["created_at"])} if last else None,
            "paused": f["id"] in paused, "paused_mode": paused[f["id"]]["mode"] if f["id"] in paused else None,
        })
    if as_json:
        _print_json(items)
        return
    table = Table(box=None, header_style="bold")
    for col in ("id", "app", "triggers", "flow control", "last run", "paused"):
        table.add_column(col)
    for f in items:
        trig = ", ".join(t["event"] + (" (typed)" if t.get("schema") else "") if "event" in t else f"cron {t['cron']} {t['tz']} ({describe(t['cron'], t['tz'])})"
                         + (f" overlap={t['overlap']}" if t.get("overlap", "allow") != "allow" else "")
                         for t in f["triggers"])
        last = f["last_run"]
        table.add_row(f["id"], f["app_id"], trig, "\n".join(f["flow_control"]),
                      f"{_status_style(last['status'])} {last['created_at']}" if last else "",
                      ("paused (skip)" if f["paused_mode"] == "skip" else "paused") if f["paused"] else "")
    out.print(table if items else "no functions registered yet (start a worker)")


@functions.command("pause")
@_store_options
@click.argument("function_id", metavar="ID", callback=_text)
@click.option("--skip", is_flag=True, help="Record new triggers as skipped (reason paused) instead of queueing "
                                           "their runs.")
def pause(function_id: str, skip: bool) -> None:
    """Pause a function: none of its runs starts until it is resumed (a run executing now goes
    on). New triggers create runs that wait in queued, or with --skip are skipped."""
    from .. import admin

    store = open_store()
    try:
        res = asyncio.run(admin.pause(store, function_id, skip=skip, actor=admin.CLI))
    finally:
        store.close()
    again = " (it was paused already)" if res["was_paused"] else ""
    out.print(f"paused {function_id}: " + ("new triggers are skipped" if skip else "its runs wait") + again)


@functions.command("resume")
@_store_options
@click.argument("function_id", metavar="ID", callback=_text)
def resume(function_id: str) -> None:
    """Resume a paused function: the runs that waited start in their order."""
    from .. import admin

    store = open_store()
    try:
        res = asyncio.run(admin.resume(store, function_id, actor=admin.CLI))
    finally:
        store.close()
    out.print(f"resumed {function_id}" if res["was_paused"] else f"{function_id} was not paused")


@cli.command()
@_store_options
@click.argument("tenant", callback=_text)
@click.argument("function", callback=_text)
def status(tenant: str, function: str) -> None:
    """The status blob of (tenant, function) (from Redis when DURABLY_REDIS_URL is set)."""
    if not tenant:
        raise InvalidInput("TENANT must not be empty (runs without a tenant have the tenant 'global')")
    s = settings()
    if s.redis_url:
        from ..runtime import status_template
        from ..status import read_redis_blob

        # The template the function registered (its workers write with it), else this process's.
        store = open_store()
        try:
            config = store.get_function(function).result()
        finally:
            store.close()
        template = config.get("status_key") if config else None
        if not isinstance(template, str):
            template = status_template(s)
        blob = read_redis_blob(s.redis_url, env=s.env, template=template, tenant=tenant, function_id=function)
    else:
        store = open_store()
        try:
            blob = store.get_status(tenant, function).result()
        finally:
            store.close()
    if blob is None:
        raise NotFound(f"no status for tenant {tenant!r} and function {function!r}")
    _print_json(blob)


@cli.command()
@_store_options
def migrate() -> None:
    """Apply the store's schema migrations."""
    from ..runtime import open_store as _open

    store = _open(settings(), migrate=False)
    try:
        applied = store.migrate().result()
    finally:
        store.close()
    out.print(f"applied migrations: {', '.join(map(str, applied))}" if applied else "schema is up to date")


@cli.command()
@_store_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def health(as_json: bool) -> None:
    """Queue health: store reachable, live workers, backlog, oldest queued age, stale leases."""
    from ..health import collect

    s = settings()
    report = collect(s, missing_store_raises=True)
    if as_json:
        _print_json(report)
    else:
        for k, v in report.items():
            out.print(f"{k}: {json.dumps(v, default=str)}")
    if not report["ok"]:
        sys.exit(1)



@cli.command()
@_store_options
@click.option("--older-than", required=True, help="Retention: delete what finished longer ago than this "
                                                  "(e.g. 30d, 12h). Events are always kept 24 h.")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=1000, show_default=True,
              help="Rows per table per transaction.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def prune(older_than: str, batch_size: int, as_json: bool) -> None:
    """Delete finished runs, their steps, old events and spent keys, in small batches."""
    from ..core.durations import parse_duration
    from ..retention import prune as run_prune

    seconds = parse_duration(older_than, name="--older-than")
    if seconds <= 0:
        raise InvalidInput(f"--older-than must be a positive duration, got {older_than!r}")
    from .. import admin

    store = open_store()
    try:
        audit = admin.CLI.audit("prune", None, older_than=older_than, batch_size=batch_size)
        totals = run_prune(store, seconds, batch=batch_size, audit=audit)
    finally:
        store.close()
    if as_json:
        _print_json(totals)
        return
    done = ", ".join(f"{v} {k}" for k, v in totals.items() if v)
    out.print(f"pruned {done}" if done else f"nothing older than {older_than} to prune")


@cli.command()
@_store_options
@click.option("--limit", "-n", type=click.IntRange(1, 1000), default=50, show_default=True, help="How many (newest first).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def audit(limit: int, as_json: bool) -> None:
    """The audit log of operators' actions, newest first: Run now, sends from the dashboard,
    cancel, bulk cancel, replay, bulk replay, pause, resume, prune (dry runs are not actions
    and are not recorded)."""
    from .. import admin

    store = open_store()
    try:
        page = asyncio.run(admin.audit_log(store, limit=limit))
    finally:
        store.close()
    entries = page["entries"]
    if as_json:
        _print_json(entries)
        return
    table = Table(box=None, header_style="bold")
    for col in ("when", "who", "action", "target", "parameters", "client", "env"):
        table.add_column(col)
    for e in entries:
        table.add_row(e["at"], e["role"], e["action"], e["target"] or "",
                      ", ".join(f"{k}={v}" for k, v in e["params"].items()), e["client"] or "", e["env"])
    out.print(table if entries else "no operator action recorded yet")


@cli.command()
@_store_options
@click.argument("function_id", callback=_text)
@click.option("--from", "from_", required=True, help="Range start (inclusive): ISO-8601, or a duration ago (6h).")
@click.option("--to", "to", required=True, help="Range end (inclusive): ISO-8601, or a duration ago; not in the future.")
@click.option("--dry-run", is_flag=True, help="List the ticks of the range; fire nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def backfill(function_id: str, from_: str, to: str, dry_run: bool, as_json: bool) -> None:
    """Fire each cron tick of FUNCTION_ID in a time range once (ticks already fired are skipped)."""
    from .. import admin

    store = open_store()
    try:
        now = store.now().result()
        res = asyncio.run(admin.backfill(  # POST /api/v1/functions/{id}/backfill too
            store, function_id, admin.parse_time(from_, name="--from", now=now),
            admin.parse_time(to, name="--to", now=now), dry_run=dry_run, actor=admin.CLI))
    finally:
        store.close()
    if as_json:
        _print_json(res)
        return
    table = Table(box=None, header_style="bold")
    for col in ("tick", "schedule", "fired", "run"):
        table.add_column(col)
    for t in res["ticks"]:
        fired = "dry run" if dry_run else ("fired" if t["fired"] else "[yellow]skipped (fired before)[/]")
        table.add_row(t["tick"], f"{t['cron']} {t['tz']}", fired, t["run_id"] or "")
    if res["ticks"]:
        out.print(table)
    if dry_run:
        out.print(f"dry run: {len(res['ticks'])} tick(s) of {function_id} from {res['from']} to {res['to']}")
    else:
        out.print(f"backfilled {function_id}: {res['fired']} tick(s) fired, {res['skipped']} skipped (fired before)")
