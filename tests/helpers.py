"""Test helpers: run a worker in a background thread, wait on conditions with a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Iterator

import httpx

import durably
from durably.config import Settings


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.02, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def make_app(url: str, name: str = "test", env: str = "test", **settings: Any) -> durably.App:
    s = Settings.load({"DURABLY_DATABASE_URL": url, "DURABLY_ENV": env,
                       **{f"DURABLY_{k.upper()}": str(v) for k, v in settings.items()}})
    return durably.App(name, settings=s)


@contextlib.contextmanager
def running_worker(app: durably.App, concurrency: int = 8, scheduler: bool = True, **kw: Any) -> Iterator[Any]:
    """Run ``app``'s worker in a thread with its own event loop for the duration of the block."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    worker = app.worker(concurrency=concurrency, scheduler=scheduler, **kw)
    errors: list[BaseException] = []

    def target() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(worker.run(stop))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    wait_for(lambda: (worker.started is not None and worker.started.is_set()) or errors, 20, what="worker start")
    if errors:
        raise errors[0]
    try:
        yield worker
    finally:
        loop.call_soon_threadsafe(stop.set)
        t.join(30)
        loop.close()
    if errors:
        raise errors[0]


def get_run(app: durably.App, run_id: str) -> dict | None:
    return app.store.get_run(run_id).result()


def runs_of(app: durably.App, **filters: Any) -> list[dict]:
    return app.store.list_runs(limit=1000, **filters).result()


def wait_run(app: durably.App, run_id: str, statuses=("completed", "failed", "cancelled"), timeout: float = 20.0) -> dict:
    return wait_for(lambda: (lambda r: r if r and r["status"] in statuses else None)(get_run(app, run_id)),
                    timeout, what=f"run {run_id} to reach {statuses}")


def cli_env(url: str, env: str = "test", **extra: str) -> dict[str, str]:
    e = dict(os.environ)
    e.update({"DURABLY_DATABASE_URL": url, "DURABLY_ENV": env, "PYTHONUNBUFFERED": "1"})
    e.update(extra)
    return e


def durably_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "durably", *args]


def run_cli(args: list[str], env: dict[str, str], cwd: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(durably_cmd(*args), env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def asgi_client(asgi: Any, prefix: str = "") -> httpx.AsyncClient:
    """An httpx client on an ASGI app in this process (``prefix``: where it is mounted)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://testserver" + prefix)
