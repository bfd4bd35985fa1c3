"""Processes: dev, worker (and its supervisor), server."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from typing import Any, Optional

import click

from .base import _logging, _state, _store_options, cli, settings


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
    from ..dev import run_dev

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
    from ..loader import load_app

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
    from ..server.run import run_server

    s = settings()
    run_server(s, host=host, port=port or s.port)
