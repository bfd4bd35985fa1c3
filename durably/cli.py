"""The ``durably`` command line.

Exit codes: 0 ok, 1 error (bad input, unreachable store; one line on stderr), 2 usage.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from typing import Any, Optional

import click
import typer

from .config import Settings
from .errors import DurablyError, InvalidInput, NotFound
from .serialize import run_json
from .status import iso

cli = typer.Typer(add_completion=False, no_args_is_help=True, help="durably: durable background jobs for Python.",
                  pretty_exceptions_enable=False)
runs_cli = typer.Typer(help="The run ledger: list runs, show one, cancel one.", invoke_without_command=True)
cli.add_typer(runs_cli, name="runs")

class _Out:
    """stdout as a rich Console, made on first use: a worker that prints nothing does not
    import rich at start-up."""

    _console: Any = None

    def __getattr__(self, name: str) -> Any:
        if _Out._console is None:
            from rich.console import Console

            _Out._console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
        return getattr(_Out._console, name)


def Table(**kwargs: Any) -> Any:  # noqa: N802 - rich's Table, imported when a table is printed
    from rich.table import Table as _Table

    return _Table(**kwargs)


out = _Out()
_state: dict[str, Any] = {}

RUN_STATUSES = ("queued", "running", "sleeping", "waiting", "completed", "failed", "cancelled")


@cli.callback()
def _main(
    database_url: Optional[str] = typer.Option(None, "--database-url", envvar="DURABLY_DATABASE_URL",
                                               show_envvar=True, help="sqlite:///path or postgresql://..."),
    env: Optional[str] = typer.Option(None, "--env", envvar="DURABLY_ENV", show_envvar=True,
                                      help="Environment name; rows of other envs are never touched."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logs and full tracebacks."),
) -> None:
    _state.update(database_url=database_url, env=env, verbose=verbose)


def settings(**overrides: Any) -> Settings:
    return Settings.load(database_url=_state.get("database_url"), env=_state.get("env"), **overrides)


def open_store(**overrides: Any):
    from .store import open_store as _open

    return _open(settings(**overrides))


def _logging(default: int = logging.INFO) -> None:
    level = logging.DEBUG if _state.get("verbose") else default
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


# --- processes ---------------------------------------------------------------------------


@cli.command()
def dev(
    app: Optional[str] = typer.Argument(None, help="module:attribute (or a .py file) of a durably.App"),
    port: int = typer.Option(None, "--port", envvar="DURABLY_PORT", show_envvar=True, help="HTTP port (default 8288)."),
    host: str = typer.Option("127.0.0.1", "--host", help="HTTP host."),
    concurrency: int = typer.Option(8, "--concurrency", "-c", min=1, help="Runs executed at once."),
) -> None:
    """Everything in one process on embedded SQLite: API, dashboard, scheduler and a worker."""
    _logging()
    from .dev import run_dev

    run_dev(app, host=host, port=port, concurrency=concurrency, settings=settings())
    _exit_past_stuck_steps()


@cli.command()
def worker(
    app: str = typer.Argument(..., help="module:attribute (or a .py file) of a durably.App"),
    concurrency: int = typer.Option(8, "--concurrency", "-c", min=1, help="Runs executed at once per process."),
    processes: int = typer.Option(1, "--processes", "-p", min=1, help="Worker processes to start."),
    no_scheduler: bool = typer.Option(False, "--no-scheduler", help="Leave cron ticks and lease recovery to others."),
) -> None:
    """Execute an app's functions (any number of workers may share one store)."""
    _logging()
    if processes > 1:
        raise typer.Exit(_supervise(app, concurrency, processes, no_scheduler))
    from .loader import load_app

    # Until the event loop takes over SIGTERM, a stop request while starting up (importing
    # the app, opening the store) ends the process cleanly instead of killing it.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    application = load_app(app)
    application.configure(**{k: v for k, v in (("database_url", _state.get("database_url")),
                                               ("env", _state.get("env"))) if v})
    application.store  # noqa: B018 - open (and migrate) now: a bad URL fails here, clearly
    try:
        application.run_worker(concurrency=concurrency, scheduler=not no_scheduler)
    finally:
        application.close()
    _exit_past_stuck_steps()


def _exit_past_stuck_steps() -> None:
    """Exit now if a step is still blocked in a thread after a graceful stop.

    The worker has handed that run back to the queue (its late writes are fenced out), but
    the interpreter would join the step's thread at exit and hang until the step returns.
    """
    import threading

    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(0)


def _exit_on_sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(0)


def _supervise(app: str, concurrency: int, processes: int, no_scheduler: bool) -> int:
    argv = [sys.executable, "-m", "durably", "worker", app, "--concurrency", str(concurrency)]
    if no_scheduler:
        argv.append("--no-scheduler")
    children = [subprocess.Popen(argv) for _ in range(processes)]
    stopping = False

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for c in children:
            if c.poll() is None:
                c.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = 0
    while children:
        for c in list(children):
            rc = c.poll()
            if rc is None:
                continue
            children.remove(c)
            if not stopping and rc != 0:
                code = rc
                forward(signal.SIGTERM, None)
        time.sleep(0.2)
    return code


# --- events ------------------------------------------------------------------------------


@cli.command()
def send(
    name: str = typer.Argument(..., help="Event name, e.g. inbox.counts.dirty"),
    data: str = typer.Option("{}", "--data", "-d", help="Event data as a JSON object."),
    id: Optional[str] = typer.Option(None, "--id", help="Event id (a second send with the same id does nothing)."),
) -> None:
    """Send an event."""
    from .app import App
    from .events import Event

    try:
        payload = json.loads(data)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"--data is not valid JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(payload, dict):
        raise InvalidInput("--data must be a JSON object, e.g. '{\"clientId\": \"c1\"}'")
    app = App("cli", settings=settings())
    try:
        res = app.send(Event(name, payload, id=id))
    finally:
        app.close()
    _print_json({"ids": res.ids, "runs": res.runs, "duplicates": res.duplicates})


# --- the ledger ----------------------------------------------------------------------------


@runs_cli.callback()
def runs(
    ctx: typer.Context,
    status: Optional[str] = typer.Option(None, "--status", "-s", help=f"One of: {', '.join(RUN_STATUSES)}."),
    function: Optional[str] = typer.Option(None, "--function", "-f", help="Function id."),
    tenant: Optional[str] = typer.Option(None, "--tenant", "-t", help="Tenant."),
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=1000, help="How many (newest first)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List runs, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    if status is not None and status not in RUN_STATUSES:
        raise InvalidInput(f"unknown status {status!r}: use one of {', '.join(RUN_STATUSES)}")
    store = open_store()
    try:
        rows = store.read("list_runs", status=status, function_id=function, tenant=tenant, limit=limit).result()
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


@runs_cli.command("show")
def runs_show(run_id: str = typer.Argument(...), as_json: bool = typer.Option(False, "--json")) -> None:
    """One run with its steps, attempts, output and error."""
    store = open_store()
    try:
        r = store.read("get_run", run_id).result()
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
    out.print(f"created {data['created_at']}  started {data['started_at']}  finished {data['finished_at']}")
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


@runs_cli.command("cancel")
def runs_cancel(run_id: str = typer.Argument(...)) -> None:
    """Cancel a run that has not finished."""
    store = open_store()
    try:
        ok = store.cancel_run(run_id, "cancelled by user").result()
        if not ok:
            r = store.read("get_run", run_id, with_steps=False).result()
    finally:
        store.close()
    if not ok:
        if r is None:
            raise NotFound(f"no run {run_id!r} in env {settings().env!r}")
        raise InvalidInput(f"run {run_id} is already {r['status']}; only unfinished runs can be cancelled")
    out.print(f"cancelled {run_id}")


@cli.command()
def functions(as_json: bool = typer.Option(False, "--json")) -> None:
    """The registry: every function workers have registered, with triggers and last run."""
    from .cron import describe

    store = open_store()
    try:
        rows = store.read("list_functions", time.time() - 86400).result()
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
            "last_run": {"id": last["id"], "status": last["status"], "created_at": iso(last["created_at"])} if last else None,
        })
    if as_json:
        _print_json(items)
        return
    table = Table(box=None, header_style="bold")
    for col in ("id", "app", "triggers", "last run"):
        table.add_column(col)
    for f in items:
        trig = ", ".join(t["event"] if "event" in t else f"cron {t['cron']} {t['tz']} ({describe(t['cron'], t['tz'])})"
                         for t in f["triggers"])
        last = f["last_run"]
        table.add_row(f["id"], f["app_id"], trig, f"{_status_style(last['status'])} {last['created_at']}" if last else "")
    out.print(table if items else "no functions registered yet (start a worker)")


@cli.command()
def status(tenant: str = typer.Argument(...), function: str = typer.Argument(...)) -> None:
    """The status blob of (tenant, function) (from Redis when DURABLY_REDIS_URL is set)."""
    s = settings()
    if s.redis_url:
        from .status import read_redis_blob

        blob = read_redis_blob(s.redis_url, env=s.env, template=s.status_key, tenant=tenant, function_id=function)
    else:
        store = open_store()
        try:
            blob = store.read("get_status", tenant, function).result()
        finally:
            store.close()
    if blob is None:
        raise NotFound(f"no status for tenant {tenant!r} and function {function!r}")
    _print_json(blob)


@cli.command()
def migrate() -> None:
    """Apply the store's schema migrations."""
    from .store import open_store as _open

    store = _open(settings(), migrate=False)
    try:
        applied = store.migrate().result()
    finally:
        store.close()
    out.print(f"applied migrations: {', '.join(map(str, applied))}" if applied else "schema is up to date")


@cli.command()
def health(as_json: bool = typer.Option(False, "--json")) -> None:
    """Queue health: store reachable, live workers, backlog, oldest queued age, stale leases."""
    from .health import collect

    s = settings()
    report = collect(s)
    if as_json:
        _print_json(report)
    else:
        for k, v in report.items():
            out.print(f"{k}: {json.dumps(v, default=str)}")
    if not report["ok"]:
        raise typer.Exit(1)



@cli.command()
def server(
    host: str = typer.Option("127.0.0.1", "--host", envvar="DURABLY_HOST", show_envvar=True, help="HTTP host."),
    port: int = typer.Option(None, "--port", envvar="DURABLY_PORT", show_envvar=True, help="HTTP port (default 8288)."),
) -> None:
    """HTTP API and scheduler; needs no user code (functions come from the registry in the store).

    Outside DURABLY_ENV=dev it refuses to start unless DURABLY_EVENT_KEY, DURABLY_ADMIN_TOKEN
    and CRON_SECRET are set.
    """
    _logging(logging.WARNING)
    from .server.run import run_server

    s = settings()
    run_server(s, host=host, port=port or s.port)


@cli.command()
def replay(
    function: str = typer.Option(..., "--function", "-f", help="Function id."),
    status: str = typer.Option("failed", "--status", "-s", help="Runs to replay: failed, completed or cancelled."),
    since: Optional[str] = typer.Option(None, "--since", help="Created at or after: ISO-8601, or a duration ago (1h)."),
    until: Optional[str] = typer.Option(None, "--until", help="Created before: ISO-8601, or a duration ago."),
    limit: int = typer.Option(100, "--limit", "-n", min=1, max=1000, help="At most this many (oldest first)."),
    concurrency: Optional[int] = typer.Option(None, "--concurrency", "-c", min=1,
                                              help="At most this many replays run at once (on all workers)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be replayed; create nothing."),
    wait: bool = typer.Option(False, "--wait", help="Follow the replays until they have all finished."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Re-run finished runs of a function as new runs (runs already replayed are left out)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from . import admin

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
                dry_run=dry_run, progress=progress))
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


def _follow_replays(store: Any, res: dict, bar: Any) -> None:
    """Poll the ledger until every replay of a bulk replay has finished (Ctrl-C stops following)."""
    pending = {r["replay_id"] for r in res["runs"] if r["replay_id"]}
    task = bar.add_task("replays finished", total=len(pending))
    outcome: dict[str, int] = {}
    while pending:
        for rid in list(pending):
            r = store.read("get_run", rid, with_steps=False).result()
            if r is None or r["status"] in ("completed", "failed", "cancelled"):
                pending.discard(rid)
                status = r["status"] if r else "gone"
                outcome[status] = outcome.get(status, 0) + 1
        bar.update(task, completed=len(res["runs"]) - len(pending),
                   description="replays finished " + " ".join(f"{k}={v}" for k, v in sorted(outcome.items())))
        if pending:
            time.sleep(0.5)
    res["outcome"] = outcome


@cli.command()
def prune(
    older_than: str = typer.Option(..., "--older-than", help="Retention: delete what finished longer ago than this "
                                                           "(e.g. 30d, 12h). Events are always kept 24 h."),
    batch_size: int = typer.Option(1000, "--batch-size", min=1, max=100_000, help="Rows per table per transaction."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Delete finished runs, their steps, old events and spent keys, in small batches."""
    from .durations import parse_duration
    from .retention import prune as run_prune

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


def _click_errors() -> tuple[tuple, tuple, tuple]:
    """(aborts, exits, usage errors) of click and of the click that newer typer carries inside."""
    aborts: list = [click.exceptions.Abort, typer.Abort]
    exits: list = [click.exceptions.Exit, typer.Exit]
    errors: list = [click.ClickException]
    try:
        from typer._click import exceptions as inner
    except ImportError:  # a typer that uses click itself
        pass
    else:
        aborts.extend(x for x in (getattr(inner, "Abort", None),) if x is not None)
        exits.extend(x for x in (getattr(inner, "Exit", None),) if x is not None)
        errors.append(inner.ClickException)
    return tuple(aborts), tuple(exits), tuple(errors)


def main() -> None:
    aborts, exits, usage_errors = _click_errors()
    try:
        # Without standalone mode click returns (not raises) the code of a typer.Exit.
        code = cli(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except aborts:
        sys.stderr.write("aborted\n")
        sys.exit(1)
    except exits as exc:
        sys.exit(getattr(exc, "exit_code", 0))
    except usage_errors as exc:
        sys.stderr.write(f"error: {exc.format_message()}\n")
        sys.exit(2)
    except DurablyError as exc:
        if _state.get("verbose"):
            raise
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
