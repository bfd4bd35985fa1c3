"""Operating a store: functions, status, migrate, health, prune."""

from __future__ import annotations

import json
import sys
import time

import click

from ..errors import InvalidInput, NotFound
from ..core.blobs import iso
from .base import Table, _print_json, _store_options, _text, cli, open_store, out, settings
from .ledger import _status_style


@cli.command()
@_store_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def functions(as_json: bool) -> None:
    """The registry: every function workers have registered, with triggers and last run."""
    from ..core.cron import describe
    from ..core.options import FunctionConfig

    store = open_store()
    try:
        rows = store.list_functions(time.time() - 86400).result()
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
        })
    if as_json:
        _print_json(items)
        return
    table = Table(box=None, header_style="bold")
    for col in ("id", "app", "triggers", "flow control", "last run"):
        table.add_column(col)
    for f in items:
        trig = ", ".join(t["event"] + (" (typed)" if t.get("schema") else "") if "event" in t else f"cron {t['cron']} {t['tz']} ({describe(t['cron'], t['tz'])})"
                         + (f" overlap={t['overlap']}" if t.get("overlap", "allow") != "allow" else "")
                         for t in f["triggers"])
        last = f["last_run"]
        table.add_row(f["id"], f["app_id"], trig, "\n".join(f["flow_control"]),
                      f"{_status_style(last['status'])} {last['created_at']}" if last else "")
    out.print(table if items else "no functions registered yet (start a worker)")


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
    store = open_store()
    try:
        totals = run_prune(store, seconds, batch=batch_size)
    finally:
        store.close()
    if as_json:
        _print_json(totals)
        return
    done = ", ".join(f"{v} {k}" for k, v in totals.items() if v)
    out.print(f"pruned {done}" if done else f"nothing older than {older_than} to prune")
