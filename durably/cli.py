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

from .config import Settings
from .errors import DurablyError, InvalidInput, NotFound
from .serialize import run_json
from .core.blobs import iso
from .core.types import RUN_STATUSES

_HELP = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


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



@click.group(context_settings=_HELP)
@click.option("--database-url", envvar="DURABLY_DATABASE_URL", show_envvar=True, help="sqlite:///path or postgresql://...")
@click.option("--env", envvar="DURABLY_ENV", show_envvar=True, help="Environment name; rows of other envs are never touched.")
@click.option("--verbose", "-v", is_flag=True, help="Debug logs and full tracebacks.")
def cli(database_url: Optional[str], env: Optional[str], verbose: bool) -> None:
    """durably: durable background jobs for Python."""
    _state.update(database_url=database_url, env=env, verbose=verbose)


def _store_options(f: Any) -> Any:
    """--database-url and --env after the subcommand too (``durably runs --database-url ...``);
    given there, they override the ones before it."""

    def remember(name: str) -> Any:
        def callback(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> None:
            if value is not None:
                _state[name] = value

        return callback

    f = click.option("--env", expose_value=False, callback=remember("env"),
                     help="Environment name (as before the command).")(f)
    return click.option("--database-url", expose_value=False, callback=remember("database_url"),
                        help="sqlite:///path or postgresql://... (as before the command).")(f)


def _text(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> Optional[str]:
    """A filter or id the store is asked to find: text it can hold (an argument holding bytes
    that are not UTF-8 arrives with lone surrogates, which no store can hold)."""
    if value is None:
        return None
    from .core.events import id_problem

    what = param.opts[0] if isinstance(param, click.Option) else (param.name or "argument").upper()
    problem = id_problem(value, what=what, limit=1 << 30)
    if problem is not None:
        raise InvalidInput(problem.replace("is not valid Unicode text", "is not valid UTF-8 text"))
    return value


def settings(**overrides: Any) -> Settings:
    return Settings.load(database_url=_state.get("database_url"), env=_state.get("env"), **overrides)


def open_store(**overrides: Any):
    """The store, for a command that only reads or sends: one that does not exist yet is not
    created (StoreMissing); only dev, worker, server and migrate create a store."""
    from .runtime import open_store as _open

    return _open(settings(**overrides), create=False)


def _logging(default: int = logging.INFO, *, traces: bool = False) -> None:
    """Log lines as DURABLY_LOG_FORMAT says; ``traces``: set up OpenTelemetry from OTEL_*."""
    from .telemetry import configure_logging, configure_tracing

    level = logging.DEBUG if _state.get("verbose") else default
    configure_logging(settings().log_format, level)
    if traces:
        configure_tracing()


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


# --- processes ---------------------------------------------------------------------------


@cli.command()
@_store_options
@click.argument("app", required=False)
@click.option("--port", type=int, envvar="DURABLY_PORT", show_envvar=True, help="HTTP port (default 8288).")
@click.option("--host", default="127.0.0.1", show_default=True, help="HTTP host.")
@click.option("--concurrency", "-c", type=click.IntRange(min=1), default=8, show_default=True,
              help="Runs executed at once.")
@click.option("--sdk-url", "-u", "sdk_urls", multiple=True, metavar="URL",
              help="The serve URL of an Inngest SDK app to sync at start (repeatable).")
def dev(app: Optional[str], port: Optional[int], host: str, concurrency: int, sdk_urls: tuple[str, ...]) -> None:
    """Everything in one process on embedded SQLite: API, dashboard, scheduler and a worker.

    APP is module:attribute (or a .py file) of a durably.App. Apps written with the Inngest
    SDKs run here too: point them at this server (INNGEST_DEV=1 and INNGEST_BASE_URL) and
    add them with -u.
    """
    _logging(traces=True)
    from .dev import run_dev

    run_dev(app, host=host, port=port, concurrency=concurrency, settings=settings(), sdk_urls=sdk_urls)
    _exit_past_stuck_steps()


@cli.command()
@_store_options
@click.argument("app")
@click.option("--concurrency", "-c", type=click.IntRange(min=1), default=8, show_default=True,
              help="Runs executed at once per process.")
@click.option("--processes", "-p", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes to start.")
@click.option("--no-scheduler", is_flag=True, help="Leave cron ticks and lease recovery to others.")
def worker(app: str, concurrency: int, processes: int, no_scheduler: bool) -> None:
    """Execute an app's functions (any number of workers may share one store).

    APP is module:attribute (or a .py file) of a durably.App.
    """
    _logging(traces=processes == 1)
    if processes > 1:
        sys.exit(_supervise(app, concurrency, processes, no_scheduler))
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
@_store_options
@click.argument("name")
@click.option("--data", "-d", default="{}", show_default=True, help="Event data as a JSON object.")
@click.option("--id", "id", help="Event id (a second send with the same id does nothing).")
def send(name: str, data: str, id: Optional[str]) -> None:
    """Send an event: NAME such as inbox.counts.dirty, with --data."""
    from .app import App
    from .core.events import Event

    try:
        payload = json.loads(data)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"--data is not valid JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(payload, dict):
        raise InvalidInput("--data must be a JSON object, e.g. '{\"clientId\": \"c1\"}'")
    from .lifecycle import within_seconds
    from .runtime import Runtime

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

    from . import admin

    if (run_id is None) == (function is None):
        raise click.UsageError("give a RUN_ID, or --function with filters, not both")
    if run_id is not None and (status or since or until or tenant or if_ or dry_run):
        raise click.UsageError("--status, --since, --until, --tenant, --if and --dry-run go with --function")
    store = open_store()
    try:
        if run_id is not None:
            asyncio.run(admin.cancel_run(store, run_id))  # the API's and the dashboard's cancel too
            out.print(f"cancelled {run_id}")
            return
        now = time.time()
        res = asyncio.run(admin.bulk_cancel(  # POST /api/v1/cancellations too
            store, function_id=function or "", status=status, tenant=tenant, if_=if_, limit=limit, dry_run=dry_run,
            since=admin.parse_time(since, name="--since", now=now), until=admin.parse_time(until, name="--until", now=now)))
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
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def functions(as_json: bool) -> None:
    """The registry: every function workers have registered, with triggers and last run."""
    from .core.cron import describe
    from .core.options import FunctionConfig

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
            "flow_control": FunctionConfig.from_json(c).flow_control(),
            "last_run": {"id": last["id"], "status": last["status"], "created_at": iso(last["created_at"])} if last else None,
        })
    if as_json:
        _print_json(items)
        return
    table = Table(box=None, header_style="bold")
    for col in ("id", "app", "triggers", "flow control", "last run"):
        table.add_column(col)
    for f in items:
        trig = ", ".join(t["event"] if "event" in t else f"cron {t['cron']} {t['tz']} ({describe(t['cron'], t['tz'])})"
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
        from .runtime import status_template
        from .status import read_redis_blob

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
    from .runtime import open_store as _open

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
    from .health import collect

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
@click.option("--host", default="127.0.0.1", show_default=True, envvar="DURABLY_HOST", show_envvar=True,
              help="HTTP host.")
@click.option("--port", type=int, envvar="DURABLY_PORT", show_envvar=True, help="HTTP port (default 8288).")
def server(host: str, port: Optional[int]) -> None:
    """HTTP API and scheduler; needs no user code (functions come from the registry in the store).

    Outside DURABLY_ENV=dev it refuses to start unless DURABLY_EVENT_KEY, DURABLY_ADMIN_TOKEN
    and CRON_SECRET are set.
    """
    _logging(logging.WARNING, traces=True)
    from .server.run import run_server

    s = settings()
    run_server(s, host=host, port=port or s.port)


@cli.command()
@_store_options
@click.option("--function", "-f", required=True, callback=_text, help="Function id.")
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
def replay(function: str, status: str, since: Optional[str], until: Optional[str], limit: int,
           concurrency: Optional[int], tenant: Optional[str], dry_run: bool, wait: bool, as_json: bool) -> None:
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
                dry_run=dry_run, progress=progress, tenant=tenant))
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


@cli.command()
@_store_options
@click.option("--older-than", required=True, help="Retention: delete what finished longer ago than this "
                                                  "(e.g. 30d, 12h). Events are always kept 24 h.")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=1000, show_default=True,
              help="Rows per table per transaction.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def prune(older_than: str, batch_size: int, as_json: bool) -> None:
    """Delete finished runs, their steps, old events and spent keys, in small batches."""
    from .core.durations import parse_duration
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


_NO_ARGS = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2; before, help and Exit(0)


def main() -> None:
    try:
        # Without standalone mode click returns (not raises) the code of a click Exit.
        code = cli.main(prog_name="durably", standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except click.exceptions.Abort:
        sys.stderr.write("aborted\n")
        sys.exit(1)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except _NO_ARGS as exc:  # ``durably`` alone: its help
        sys.stdout.write(exc.format_message() + "\n")
    except click.ClickException as exc:
        sys.stderr.write(f"error: {exc.format_message()}\n")
        sys.exit(exc.exit_code)
    except DurablyError as exc:
        if _state.get("verbose"):
            raise
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
