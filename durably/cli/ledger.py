"""Events and the ledger: send, runs (show, cancel), replay."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any, Optional

import click

from ..errors import InvalidInput, NotFound
from ..serialize import run_json
from ..core.types import RUN_STATUSES
from .base import Table, _print_json, _store_options, _text, cli, open_store, out, settings


# --- events ------------------------------------------------------------------------------


@cli.command()
@_store_options
@click.argument("name")
@click.option("--data", "-d", default="{}", show_default=True, help="Event data as a JSON object.")
@click.option("--id", "id", help="Event id (a second send with the same id does nothing).")
def send(name: str, data: str, id: Optional[str]) -> None:
    """Send an event: NAME such as inbox.counts.dirty, with --data."""
    from ..app import App
    from ..core.events import Event

    try:
        payload = json.loads(data)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"--data is not valid JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(payload, dict):
        raise InvalidInput("--data must be a JSON object, e.g. '{\"clientId\": \"c1\"}'")
    from ..lifecycle import within_seconds
    from ..runtime import Runtime

    s = settings()
    app = App("cli", settings=s)
    # Sending never creates a store, and gives up after the dispatch deadline, opening included.
    app.bind(within_seconds(lambda: Runtime.open(s, create=False), s.dispatch_timeout))
    try:
        res = app.send(Event(name, payload, id=id))
    finally:
        app.close()
    not_started = [{"function_id": x["function_id"], "reason": _skip_reason(x["reason"])}
                   for x in res.skipped + res.filtered]
    _print_json({"ids": res.ids, "runs": res.runs, "duplicates": res.duplicates, "skipped": not_started})
    # Why no run started, on stderr (stdout stays JSON).
    if res.duplicates:
        sys.stderr.write(f"no run started: event {res.duplicates[0]!r} was sent before (same id within 24 h)\n")
    elif not res.runs and not not_started:
        sys.stderr.write(f"no run started: no function is registered for event {name!r} in env {s.env!r}\n")
    for x in not_started:
        sys.stderr.write(f"no run of {x['function_id']}: {x['reason']}\n")


_SKIP_REASONS = {"rate_limited": "rate limited", "paused": "paused",
                 "invalid_tenant": "its tenant expression gave an invalid tenant (1 to 256 characters, no NUL)"}


def _skip_reason(reason: str) -> str:
    """A skip's reason, as a sentence (the ledger keeps codes for some)."""
    if reason.startswith("duplicate idempotency key"):
        return "idempotent duplicate: " + reason
    return _SKIP_REASONS.get(reason, reason)


# --- the ledger ----------------------------------------------------------------------------


@cli.group(invoke_without_command=True)
@_store_options
@click.option("--status", "-s", callback=_text, help=f"One of: {', '.join(RUN_STATUSES)}.")
@click.option("--function", "-f", callback=_text, help="Function id.")
@click.option("--tenant", "-t", callback=_text, help="Tenant.")
@click.option("--limit", "-n", type=click.IntRange(1, 1000), default=50, show_default=True, help="How many (newest first).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def runs(ctx: click.Context, status: Optional[str], function: Optional[str], tenant: Optional[str], limit: int,
         as_json: bool) -> None:
    """The run ledger: list runs (newest first), show one, cancel one."""
    if ctx.invoked_subcommand is not None:
        return
    if status is not None and status not in RUN_STATUSES:
        raise InvalidInput(f"unknown status {status!r}: use one of {', '.join(RUN_STATUSES)}")
    store = open_store()
    try:
        rows = store.list_runs(status=status, function_id=function, tenant=tenant, limit=limit).result()
    finally:
        store.close()
    items = [run_json(r) for r in rows]
    if as_json:
        _print_json(items)
        return
    table = Table(box=None, header_style="bold")
    for col in ("id", "function", "status", "tenant", "trigger", "created", "duration", "attempts", "reason"):
        table.add_column(col)
    for r in items:
        dur = f"{r['duration_ms']} ms" if r["duration_ms"] is not None else ""
        table.add_row(r["id"], r["function_id"], _status_style(r["status"]), r["tenant"], r["trigger"] or "",
                      r["created_at"] or "", dur, str(r["attempts"]), r["terminal_reason"] or "")
    out.print(table if items else "no runs")


def _status_style(s: str) -> str:
    color = {"completed": "green", "failed": "red", "running": "cyan", "cancelled": "yellow"}.get(s, "white")
    return f"[{color}]{s}[/]"


@runs.command("show")
@_store_options
@click.argument("run_id", callback=_text)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def runs_show(run_id: str, as_json: bool) -> None:
    """One run with its steps, attempts, output and error."""
    store = open_store()
    try:
        r = store.get_run(run_id).result()
    finally:
        store.close()
    if r is None:
        raise NotFound(f"no run {run_id!r} in env {settings().env!r}")
    data = run_json(r, detail=True)
    if as_json:
        _print_json(data)
        return
    out.print(f"[bold]{data['id']}[/]  {data['function_id']}  {_status_style(data['status'])}"
              f"  tenant={data['tenant']}  attempts={data['attempts']}")
    out.print(f"created {data['created_at'] or '-'}  started {data['started_at'] or '-'}"
              f"  finished {data['finished_at'] or '-'}")
    if data["terminal_reason"]:
        out.print(f"reason: {data['terminal_reason']}")
    table = Table(box=None, header_style="bold")
    for col in ("step", "kind", "status", "attempts", "errors"):
        table.add_column(col)
    for s in data["steps"]:
        errs = "; ".join(f"{e.get('name')}: {e.get('message')}" for e in s["errors"])
        table.add_row(s["id"], s["kind"], _status_style(s["status"]), str(s["attempts"]), errs)
    if data["steps"]:
        out.print(table)
    if data["output"] is not None:
        out.print("output: " + json.dumps(data["output"], default=str))
    if data["error"]:
        out.print(f"[red]error: {data['error'].get('name')}: {data['error'].get('message')}[/]")
        if data["error"].get("stack"):
            from rich.markup import escape

            out.print("[dim]" + escape(data["error"]["stack"].rstrip()) + "[/]")


@runs.command("cancel")
@_store_options
@click.argument("run_id", required=False, callback=_text)
@click.option("--function", "-f", "function", callback=_text, help="Cancel the unfinished runs of this function...")
@click.option("--status", type=click.Choice(["queued", "running", "sleeping", "waiting"]),
              help="...in this status (default: all four).")
@click.option("--since", help="...created at or after: ISO-8601, or a duration ago (1h).")
@click.option("--until", help="...created before.")
@click.option("--tenant", "-t", callback=_text, help="...of this tenant.")
@click.option("--if", "if_", callback=_text, help="...whose event matches this CEL expression.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True, help="At most this many.")
@click.option("--dry-run", is_flag=True, help="List what would be cancelled; cancel nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def runs_cancel(run_id: Optional[str], function: Optional[str], status: Optional[str], since: Optional[str],
                until: Optional[str], tenant: Optional[str], if_: Optional[str], limit: int, dry_run: bool,
                as_json: bool) -> None:
    """Cancel a run that has not finished (RUN_ID), or many by filter (--function ...)."""
    import time

    from .. import admin

    if (run_id is None) == (function is None):
        raise click.UsageError("give a RUN_ID, or --function with filters, not both")
    if run_id is not None and (status or since or until or tenant or if_ or dry_run):
        raise click.UsageError("--status, --since, --until, --tenant, --if and --dry-run go with --function")
    store = open_store()
    try:
        if run_id is not None:
            asyncio.run(admin.cancel_run(store, run_id, actor=admin.CLI))  # the API's and the dashboard's cancel too
            out.print(f"cancelled {run_id}")
            return
        now = time.time()
        res = asyncio.run(admin.bulk_cancel(  # POST /api/v1/cancellations too
            store, function_id=function or "", status=status, tenant=tenant, if_=if_, limit=limit, dry_run=dry_run,
            since=admin.parse_time(since, name="--since", now=now), until=admin.parse_time(until, name="--until", now=now),
            actor=admin.CLI))
    finally:
        store.close()
    if as_json:
        _print_json(res)
        return
    verb = "would cancel" if dry_run else "cancelled"
    out.print(f"{verb} {res['count']} run(s) of {res['function_id']}")
    for r in res["runs"]:
        out.print(f"  {r['id']}  {r['status']}  {r['tenant']}  {r['created_at']}")
    if res["already_ended"]:
        out.print(f"{len(res['already_ended'])} ended before they could be cancelled")


@cli.command()
@_store_options
@click.argument("run_id", required=False, callback=_text)
@click.option("--run", "run", callback=_text, help="Replay this one run (or give it as RUN_ID).")
@click.option("--from-step", callback=_text, help="With a run: rerun it from this step (the steps before it are "
                                                  "copied from the original, not run again).")
@click.option("--data", help="With a run: a JSON object that replaces the trigger event's data.")
@click.option("--function", "-f", callback=_text, help="Replay many: the finished runs of this function...")
@click.option("--status", "-s", default="failed", show_default=True,
              help="Runs to replay: failed, completed or cancelled.")
@click.option("--since", help="Created at or after: ISO-8601, or a duration ago (1h).")
@click.option("--until", help="Created before: ISO-8601, or a duration ago.")
@click.option("--limit", "-n", type=click.IntRange(1, 1000), default=100, show_default=True,
              help="At most this many (oldest first).")
@click.option("--concurrency", "-c", type=click.IntRange(min=1),
              help="At most this many replays run at once (on all workers).")
@click.option("--tenant", "-t", callback=_text, help="Only the runs of this tenant.")
@click.option("--dry-run", is_flag=True, help="List what would be replayed; create nothing.")
@click.option("--wait", is_flag=True, help="Follow the replays until they have all finished.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def replay(run_id: Optional[str], run: Optional[str], from_step: Optional[str], data: Optional[str],
           function: Optional[str], status: str, since: Optional[str], until: Optional[str], limit: int,
           concurrency: Optional[int], tenant: Optional[str], dry_run: bool, wait: bool, as_json: bool) -> None:
    """Re-run finished runs as new runs: one (RUN_ID, optionally --from-step STEP [--data JSON]),
    or many of a function (--function ...; runs already replayed are left out)."""
    if run_id is not None and run is not None and run_id != run:
        raise click.UsageError("give the run once: RUN_ID or --run ID")
    one = run_id or run
    if (one is None) == (function is None):
        raise click.UsageError("give a RUN_ID (or --run ID), or --function with filters, not both")
    if one is not None:
        if since or until or tenant or concurrency or dry_run or wait:
            raise click.UsageError("--since, --until, --tenant, --concurrency, --dry-run and --wait go with --function")
        _replay_one(one, from_step, data, as_json)
        return
    if from_step is not None or data is not None:
        raise click.UsageError("--from-step and --data go with a run (RUN_ID or --run ID)")
    assert function is not None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .. import admin

    err = Console(stderr=True, highlight=False)
    store = open_store()
    try:
        now = store.now().result()
        # The bar starts with the first replay created, so bad input stays a one-line error.
        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       console=err)
        tasks: list[Any] = []

        def progress(done: int, total: int) -> None:
            if not tasks:
                bar.start()
                tasks.append(bar.add_task("creating replays", total=total))
            bar.update(tasks[0], completed=done, total=total)

        try:
            res = asyncio.run(admin.bulk_replay(
                store, function_id=function, status=status, since=admin.parse_time(since, name="--since", now=now),
                until=admin.parse_time(until, name="--until", now=now), limit=limit, concurrency=concurrency,
                dry_run=dry_run, progress=progress, tenant=tenant, actor=admin.CLI))
            if wait and tasks and res["count"]:
                _follow_replays(store, res, bar)
        finally:
            if tasks:
                bar.stop()
    finally:
        store.close()
    if as_json:
        _print_json(res)
        return
    if dry_run:
        table = Table(box=None, header_style="bold")
        for col in ("run", "status", "created", "error"):
            table.add_column(col)
        for r in res["runs"]:
            e = r.get("error") or {}
            table.add_row(r["id"], _status_style(r["status"]), r["created_at"] or "",
                          f"{e.get('name')}: {e.get('message')}" if e else "")
        out.print(table if res["runs"] else f"no {status} runs of {function!r} to replay")
        out.print(f"dry run: {res['count']} run(s) would be replayed")
        return
    cap = f", at most {concurrency} at once (concurrency key replay:{res['batch_id']})" if concurrency else ""
    out.print(f"replayed {res['count']} run(s) of {function!r}{cap}")


def _replay_one(run_id: str, from_step: Optional[str], data: Optional[str], as_json: bool) -> None:
    """One run replayed whole, or rerun from a step with optionally new event data."""
    from .. import admin

    payload = None
    if data is not None:
        try:
            payload = json.loads(data)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"--data is not valid JSON: {exc.msg} at position {exc.pos}") from None
        if not isinstance(payload, dict):
            raise InvalidInput("--data must be a JSON object, e.g. '{\"clientId\": \"c1\"}'")
    store = open_store()
    try:
        if from_step is None and payload is None:
            res = asyncio.run(admin.replay_run(store, run_id, actor=admin.CLI))  # the API's and the dashboard's Replay too
        else:
            res = asyncio.run(admin.rerun_from_step(store, run_id, from_step, payload, actor=admin.CLI))
    finally:
        store.close()
    if as_json:
        _print_json(res)
    elif from_step is None:
        out.print(f"replayed {run_id} as {res['id']}" + (" with the new event data" if payload is not None else ""))
    else:
        memo = ", ".join(res["memo"]) or "none"
        out.print(f"rerun of {run_id} from step {from_step}: {res['id']} (steps copied from the original: {memo})")


def _follow_replays(store: Any, res: dict, bar: Any) -> None:
    """Poll the ledger until every replay of a bulk replay has finished (Ctrl-C stops following)."""
    pending = {r["replay_id"] for r in res["runs"] if r["replay_id"]}
    task = bar.add_task("replays finished", total=len(pending))
    outcome: dict[str, int] = {}
    while pending:
        for rid in list(pending):
            r = store.get_run(rid, with_steps=False).result()
            if r is None or r["status"] in ("completed", "failed", "cancelled"):
                pending.discard(rid)
                status = r["status"] if r else "gone"
                outcome[status] = outcome.get(status, 0) + 1
        bar.update(task, completed=len(res["runs"]) - len(pending),
                   description="replays finished " + " ".join(f"{k}={v}" for k, v in sorted(outcome.items())))
        if pending:
            time.sleep(0.5)
    res["outcome"] = outcome
