"""The worker: claims ready runs under a lease, executes them concurrently, heartbeats.

The loop is bounded by ``concurrency``; it wakes when the store says runs may be ready
(in-process commit, another process's commit), when a run of its own ends, when a
sleeping run comes due, or at the poll interval, whichever is first. On stop it lets
in-flight runs finish for ``grace`` seconds, then hands the rest back to the queue.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from ..ids import new_id
from ..jsonutil import dumps
from ..store.base import ClaimedRun, aw
from .executor import Execution
from .scheduler import Scheduler

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger("durably.worker")


class Worker:
    def __init__(self, app: "App", *, concurrency: int = 8, scheduler: bool = True, poll_interval: float = 1.0,
                 grace: float | None = None):
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.app = app
        self.concurrency = concurrency
        self.with_scheduler = scheduler
        self.poll_interval = poll_interval
        self.lease = app.settings.lease_seconds
        self.grace = grace if grace is not None else max(1.0, self.lease * 0.8)
        self.id = f"{socket.gethostname()}:{os.getpid()}:{new_id()[-8:]}"
        self.stopping: asyncio.Event | None = None  # set by run()
        self._inflight: dict[str, asyncio.Task] = {}
        self.started = None  # set once claiming has begun

    def info(self) -> dict:
        return {"id": self.id, "host": socket.gethostname(), "pid": os.getpid(),
                "functions": sorted(self.app.functions), "concurrency": self.concurrency}

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until ``stop`` is set (or the task is cancelled)."""
        app = self.app
        store = app.store
        await app.register_async()
        loop = asyncio.get_running_loop()
        stop = stop or asyncio.Event()
        self.stopping = stop
        wake = asyncio.Event()
        self.started = asyncio.Event()

        def poke() -> None:
            loop.call_soon_threadsafe(wake.set)

        unsubscribe = store.subscribe(poke)
        pool = ThreadPoolExecutor(max_workers=self.concurrency + 2, thread_name_prefix="durably-run")
        functions = dumps(sorted(fid for fid in app.functions))
        side = [asyncio.create_task(self._heartbeat(stop), name="durably-heartbeat")]
        if self.with_scheduler:
            side.append(asyncio.create_task(Scheduler(app).run(stop), name="durably-scheduler"))
        log.info("worker %s started: %d function(s), concurrency %d", self.id, len(app.functions), self.concurrency)
        try:
            await aw(store.heartbeat(self.info(), self.lease))
            self.started.set()
            while not stop.is_set():
                for t in side:
                    if t.done() and t.exception() is not None:
                        raise RuntimeError(f"worker side task {t.get_name()} died") from t.exception()
                timeout = self.poll_interval
                free = self.concurrency - len(self._inflight)
                if free > 0:
                    wake.clear()
                    asked = time.monotonic()
                    runs, next_at, now = await aw(store.claim_runs(self.id, functions, free, self.lease))
                    for run in runs:
                        self._start(run, pool, wake, asked)
                    if len(runs) == free and free > 0:
                        continue  # there may be more; claim again once a slot frees up
                    if next_at is not None:
                        timeout = min(timeout, max(0.0, next_at - now) + 0.001)
                stopper = asyncio.ensure_future(stop.wait())
                waker = asyncio.ensure_future(wake.wait())
                try:
                    await asyncio.wait({stopper, waker}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stopper.cancel()
                    waker.cancel()
        finally:
            unsubscribe()
            await self._drain(pool)
            for t in side:
                t.cancel()
            await asyncio.gather(*side, return_exceptions=True)
            try:
                await aw(store.remove_worker(self.id))
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
            pool.shutdown(wait=False, cancel_futures=True)
            log.info("worker %s stopped", self.id)

    def _start(self, run: ClaimedRun, pool: ThreadPoolExecutor, wake: asyncio.Event, asked: float | None = None) -> None:
        fdef = self.app.functions.get(run.function_id)
        ex = Execution(self.app, fdef, run, pool=pool, lease=self.lease, clock_anchor=asked)  # type: ignore[arg-type]

        async def go() -> None:
            try:
                await ex.execute()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the store was unreachable: the lease will expire
                log.exception("run %s: could not record its outcome; it will be resumed after its lease", run.id)

        task = asyncio.create_task(go(), name=f"durably-run-{run.id}")
        self._inflight[run.id] = task

        def done(_t: asyncio.Task, rid: str = run.id) -> None:
            self._inflight.pop(rid, None)
            wake.set()

        task.add_done_callback(done)

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        interval = max(0.2, self.lease / 3)
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
                return
            except asyncio.TimeoutError:
                pass
            try:
                await aw(self.app.store.heartbeat(self.info(), self.lease))
            except Exception as exc:  # noqa: BLE001 - keep trying; leases outlive short outages
                log.warning("heartbeat failed: %s", exc)

    async def _drain(self, pool: ThreadPoolExecutor) -> None:
        if not self._inflight:
            return
        log.info("worker %s stopping: waiting up to %.1fs for %d run(s)", self.id, self.grace, len(self._inflight))
        tasks = list(self._inflight.values())
        done, pending = await asyncio.wait(tasks, timeout=self.grace)
        if pending:
            ids = [rid for rid, t in self._inflight.items() if t in pending]
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            try:
                n = await aw(self.app.store.release_runs(self.id, ids))
                log.info("worker %s handed %d unfinished run(s) back to the queue", self.id, n)
            except Exception as exc:  # noqa: BLE001
                log.warning("could not release runs (their leases will expire): %s", exc)
