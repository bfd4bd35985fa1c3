"""Test your durable functions in-process, on a throwaway store, with time you control.

    from durably.testing import TestEnv

    def test_recompute():
        with TestEnv(app) as env:
            run = env.run("inbox-counts-recompute", {"clientId": "c1"})   # sleeps are skipped
            assert run.status == "completed"
            assert run.output == {"recomputed": 3}
            assert run.steps["recompute-counts"]["attempts"] == 1

The engine is the real one (steps, retries, flow control, a worker) on a temporary SQLite
file. Time is the real clock plus an offset that only the test moves:

- ``env.run(function, data)`` runs one run to its end, moving the clock past its sleeps and
  retry backoffs, so a function that sleeps a day finishes in milliseconds. A run that waits
  for an event stops there.
- ``env.send(events)`` returns once the work it started (or woke: a wait it resolved) has run
  as far as it can without the clock moving: to its next sleep, wait or retry backoff, or to
  its end. Only events sent after a wait began are matched.
- ``env.advance(duration)`` moves the clock through every timer due within ``duration``, in
  order (sleeps, backoffs, wait timeouts, debounce and batch windows), running what each one
  wakes before going to the next: a sleep of 10 min followed by a wait with a 1 h timeout,
  advanced by 2 h, has slept, begun waiting and timed out.
- ``env.result(run_id)`` waits for the run to end or to wait for an event (moving the clock
  past sleeps, unless ``auto_advance=False``); ``env.runs()`` reads them all as they stand.
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

    def advance(self, duration: Any, *, timeout: float = 10.0) -> None:
        """Move time forward ("1h", timedelta, seconds) through every timer due on the way, in
        order, running what each one wakes to quiescence before going on to the next."""
        seconds = parse_duration(duration, name="advance")
        if seconds < 0:
            raise InvalidInput("time only moves forward")
        target = self.clock() + seconds
        timers = self._settle(timeout)
        while True:
            due = [t for t in timers if t <= target]
            if not due:
                break
            self.clock.advance(max(min(due) - self.clock(), 0.0) + 0.001)
            self.app.store.wake()
            timers = self._settle(timeout)
        if target > self.clock():
            self.clock.advance(target - self.clock())
            self.app.store.wake()
            self._settle(timeout)

    def send(self, events: Any, *, timeout: float = 10.0) -> SendResult:
        """Send, then return once what the events started or woke has run as far as it can
        without the clock moving (its next sleep, wait or backoff, or its end)."""
        res = self.app.send(events)
        self._settle(timeout)
        return res

    def _settle(self, timeout: float) -> list[float]:
        """Wait until no run is running or due now; the times of the timers left (runs that
        become due later). A due run that stays unclaimed (a concurrency slot held by a run
        that sleeps) does not count once it has waited through a few wake-ups."""
        deadline = time.monotonic() + timeout
        quiet, stuck, stuck_since = 0, None, 0.0
        while True:
            if self._errors:
                raise self._errors[0]
            running, due, timers = self._pending()
            if running:
                quiet, stuck = 0, None
            elif due:
                quiet = 0
                if due != stuck:
                    stuck, stuck_since = due, time.monotonic()
                elif time.monotonic() - stuck_since > 0.5:  # the worker polls every 0.2 s
                    return timers
                self.app.store.wake()
            else:
                quiet += 1
                if quiet >= 2:  # twice in a row: the reads of the statuses are not one snapshot
                    return timers
            if time.monotonic() > deadline:
                raise AssertionError(f"runs still running after {timeout}s: {running or due}")
            time.sleep(0.005)

    def _pending(self) -> tuple[list[str], list[tuple], list[float]]:
        now = self.clock()
        running: list[str] = []
        due: list[tuple] = []
        timers: list[float] = []
        for status in ("queued", "sleeping", "waiting", "running"):
            for r in self.app.store.list_runs(status=status, limit=1000).result():
                if status == "running":
                    running.append(r["id"])
                elif r["available_at"] is not None and r["available_at"] <= now:
                    due.append((r["id"], status, r["available_at"]))
                elif r["available_at"] is not None:
                    timers.append(r["available_at"])
        return running, sorted(due), timers

    def run(self, function: Any, data: dict | None = None, *, timeout: float = 10.0,
            auto_advance: bool = True) -> TestRun:
        """Start ``function`` (id or decorated function) with ``data`` and return its outcome."""
        from .core.eventschema import check_model
        from .core.flow import plan

        fid = function if isinstance(function, str) else getattr(function, "id", None)
        if fid not in self.app.functions:
            raise InvalidInput(f"unknown function {fid!r} in app {self.app.id!r}")
        fdef = self.app.functions[fid]
        adapter = fdef.event_adapter(MANUAL_EVENT)
        if adapter is not None:  # a typed function: the data must fit, as for Run now
            check_model(adapter, next(t.event for t in fdef.event_triggers if t.adapter is adapter), dict(data or {}))
        event = Event(MANUAL_EVENT, dict(data or {})).to_dict()
        planned = plan(fdef.config(), event, None, self.clock(), trigger="manual")
        if not isinstance(planned, NewRun):  # the tenant rule skipped it
            raise InvalidInput(f"function {fid!r} planned no run: skipped ({getattr(planned, 'reason', None)})")
        self.app.store.create_runs([planned]).result()
        return self.result(planned.id, timeout=timeout, auto_advance=auto_advance)

    def result(self, run_id: str, *, timeout: float = 10.0, auto_advance: bool = True) -> TestRun:
        """Wait until the run ends, or waits for an event; skip sleeps and backoffs meanwhile
        (with ``auto_advance=False``, return as soon as it sleeps or backs off instead)."""
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
            if status in ("sleeping", "queued") and row["available_at"] > self.clock():
                if not auto_advance:
                    return TestRun.from_row(row)  # as it stands: only the test moves the clock
                self.clock.advance(row["available_at"] - self.clock() + 0.001)
                self.app.store.wake()
            if time.monotonic() > deadline:
                raise AssertionError(f"run {run_id} is still {status} after {timeout}s")
            time.sleep(0.005)

    def runs(self, function: Any = None) -> list[TestRun]:
        fid = function if isinstance(function, str) or function is None else getattr(function, "id", None)
        rows = self.app.store.list_runs(function_id=fid, limit=1000).result()
        return [TestRun.from_row(self.app.store.get_run(r["id"]).result()) for r in rows]

