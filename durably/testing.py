"""Test your durable functions in-process, on a throwaway store, with time you control.

    from durably.testing import TestEnv

    def test_recompute():
        with TestEnv(app) as env:
            run = env.run("inbox-counts-recompute", {"clientId": "c1"})   # sleeps are skipped
            assert run.status == "completed"
            assert run.output == {"recomputed": 3}
            assert run.steps["recompute-counts"]["attempts"] == 1

The engine is the real one (steps, retries, flow control, a worker) on a temporary SQLite
file. Time is the real clock plus an offset that ``advance()`` moves forward; by default
``run``/``result`` advance it past sleeps and retry backoffs, so a function that sleeps a day
finishes in milliseconds. A run waiting for an event stops there: send the event with
``env.send(...)`` (or ``env.advance(...)`` past its timeout) and call ``env.result(run.id)``.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .app import App, SendResult
from .config import Settings
from .runtime import Runtime
from .core.durations import parse_duration
from .errors import InvalidInput
from .core.events import MANUAL_EVENT, Event
from .serialize import run_json
from .core.records import NewRun

__all__ = ["TestEnv", "TestRun", "TestClock"]

from .core.types import TERMINAL
LEASE = 10 * 365 * 86400.0  # clock jumps must never expire a lease in a test


class TestClock:
    """The real clock plus an offset that tests move forward."""

    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise InvalidInput("time only moves forward")
        self.offset += seconds


@dataclass
class TestRun:
    """What a test sees of a run."""

    __test__ = False

    id: str
    function_id: str
    status: str
    output: Any
    error: dict | None
    terminal_reason: str | None
    attempts: int
    steps: dict[str, dict] = field(default_factory=dict)
    raw: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_row(cls, row: dict) -> "TestRun":
        j = run_json(row, detail=True)
        return cls(id=j["id"], function_id=j["function_id"], status=j["status"], output=j["output"],
                   error=j["error"], terminal_reason=j["terminal_reason"], attempts=j["attempts"],
                   steps={s["id"]: s for s in j["steps"]}, raw=row)


class TestEnv:
    """An app running on a temporary store with a worker thread and a controllable clock."""

    __test__ = False

    def __init__(self, app: App, *, concurrency: int = 8, env: str = "test"):
        self.app = app
        self.concurrency = concurrency
        self.clock = TestClock()
        self._env = env
        self._dir: tempfile.TemporaryDirectory | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._errors: list[BaseException] = []

    # --- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> "TestEnv":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        app = self.app
        self._dir = tempfile.TemporaryDirectory(prefix="durably-test-")
        settings = Settings.load({"DURABLY_DATABASE_URL": f"sqlite:///{self._dir.name}/test.db",
                                  "DURABLY_ENV": self._env, "DURABLY_LEASE_SECONDS": str(LEASE),
                                  "DURABLY_SQLITE_SYNCHRONOUS": "normal"})
        runtime = Runtime.open(settings, clock=self.clock, app_id=app.id, functions=app.functions)
        try:
            app.bind(runtime)  # the app runs on this throwaway store until stop()
        except RuntimeError:
            runtime.close()
            self._dir.cleanup()
            raise InvalidInput("TestEnv needs an app whose store is not open yet (create the TestEnv first)") from None
        app.register()
        loop = self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        worker = app.worker(concurrency=self.concurrency, poll_interval=0.2)
        started = threading.Event()

        def target() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._run_worker(worker, started))
            except BaseException as exc:  # noqa: BLE001 - surfaced by stop()/result()
                self._errors.append(exc)
                started.set()

        self._thread = threading.Thread(target=target, name="durably-testenv", daemon=True)
        self._thread.start()
        started.wait(30)

    async def _run_worker(self, worker: Any, started: threading.Event) -> None:
        task = asyncio.create_task(worker.run(self._stop))
        while worker.started is None or not worker.started.is_set():
            if task.done():
                break
            await asyncio.sleep(0.005)
        started.set()
        await task

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)
            self._loop.close()
        self.app.close()  # closes the bound runtime: the app opens its own again when next used
        if self._dir is not None:
            self._dir.cleanup()
        self._thread = self._loop = self._stop = None
        if self._errors:
            raise self._errors[0]

    # --- driving -----------------------------------------------------------------------------

    def now(self) -> float:
        return self.clock()

    def advance(self, duration: Any) -> None:
        """Move time forward ("1h", timedelta, seconds): due sleeps, backoffs and timeouts fire."""
        self.clock.advance(parse_duration(duration, name="advance"))
        self.app.store.wake()

    def send(self, events: Any) -> SendResult:
        return self.app.send(events)

    def run(self, function: Any, data: dict | None = None, *, timeout: float = 10.0,
            auto_advance: bool = True) -> TestRun:
        """Start ``function`` (id or decorated function) with ``data`` and return its outcome."""
        from .core.flow import plan

        fid = function if isinstance(function, str) else getattr(function, "id", None)
        if fid not in self.app.functions:
            raise InvalidInput(f"unknown function {fid!r} in app {self.app.id!r}")
        event = Event(MANUAL_EVENT, dict(data or {})).to_dict()
        planned = plan(self.app.functions[fid].config(), event, None, self.clock(), trigger="manual")
        if not isinstance(planned, NewRun):  # the tenant rule skipped it
            raise InvalidInput(f"function {fid!r} planned no run: skipped ({getattr(planned, 'reason', None)})")
        self.app.store.create_runs([planned]).result()
        return self.result(planned.id, timeout=timeout, auto_advance=auto_advance)

    def result(self, run_id: str, *, timeout: float = 10.0, auto_advance: bool = True) -> TestRun:
        """Wait until the run ends, or waits for an event; skip sleeps and backoffs meanwhile."""
        deadline = time.monotonic() + timeout
        while True:
            if self._errors:
                raise self._errors[0]
            row = self.app.store.get_run(run_id).result()
            if row is None:
                raise InvalidInput(f"no run {run_id!r}")
            status = row["status"]
            if status in TERMINAL:
                return TestRun.from_row(row)
            if status == "waiting" and row["available_at"] > self.clock():
                return TestRun.from_row(row)  # waits for an event: the test sends it, or advances time
            if auto_advance and status in ("sleeping", "queued") and row["available_at"] > self.clock():
                self.advance(row["available_at"] - self.clock() + 0.001)
            if time.monotonic() > deadline:
                raise AssertionError(f"run {run_id} is still {status} after {timeout}s")
            time.sleep(0.005)

    def runs(self, function: Any = None) -> list[TestRun]:
        fid = function if isinstance(function, str) or function is None else getattr(function, "id", None)
        rows = self.app.store.list_runs(function_id=fid, limit=1000).result()
        return [TestRun.from_row(self.app.store.get_run(r["id"]).result()) for r in rows]

