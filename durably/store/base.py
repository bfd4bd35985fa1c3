"""The Store protocol and the records that cross it.

The engine talks to a store only through these state-change verbs; each is one
transaction (several verbs from concurrent runs may share one commit). The engine never
sees SQL or a driver exception: dialects translate errors into durably errors.

Verbs return ``concurrent.futures.Future``: async code awaits ``asyncio.wrap_future(f)``
(``durably.store.aw``), sync code calls ``f.result()``. One implementation serves both.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import weakref
from collections import deque
from typing import Any, Callable, Protocol

Future = cf.Future

from ..core.records import ClaimedRun, IngestResult, NewRun, Skip, StepWrite, WaitWrite
from ..core.types import PENDING, TERMINAL


async def aw(fut: cf.Future) -> Any:
    """Await a store Future from async code.

    Like ``asyncio.wrap_future``, but the results of one group commit reach the event loop
    in one wake-up: each loop has one queue of settled futures and one pending hand-off.
    """
    loop = asyncio.get_running_loop()
    try:
        bridge = _bridges[loop]
    except KeyError:
        bridge = _bridges[loop] = _Bridge(loop)
    except TypeError:  # a loop that cannot be weakly referenced
        return await asyncio.wrap_future(fut)
    afut = loop.create_future()
    afut.add_done_callback(lambda a: fut.cancel() if a.cancelled() else None)
    fut.add_done_callback(lambda f: bridge.post(afut, f))
    return await afut


class _Bridge:
    """Settles asyncio futures from concurrent ones, one loop wake-up per burst."""

    __slots__ = ("loop", "settled", "scheduled", "__weakref__")

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.settled: deque = deque()
        self.scheduled = False

    def post(self, afut: asyncio.Future, fut: cf.Future) -> None:  # any thread
        self.settled.append((afut, fut))
        if not self.scheduled:
            self.scheduled = True
            try:
                self.loop.call_soon_threadsafe(self.drain)
            except RuntimeError:  # the loop is closed: nobody awaits any more
                pass

    def drain(self) -> None:  # the loop's thread
        self.scheduled = False
        settled = self.settled
        while settled:
            afut, fut = settled.popleft()
            if afut.done():
                continue
            if fut.cancelled():
                afut.cancel()
                continue
            exc = fut.exception()
            if exc is None:
                afut.set_result(fut.result())
            else:
                afut.set_exception(exc)


_bridges: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Bridge]" = weakref.WeakKeyDictionary()




class Store(Protocol):
    """State-change verbs. Each is one transaction and returns a Future."""

    env: str
    dialect: str

    def migrate(self) -> Future: ...
    def now(self) -> Future: ...
    def register(self, app_id: str, configs: list[dict]) -> Future: ...
    def ingest(self, events: list[dict]) -> Future: ...
    def create_runs(self, runs: list[NewRun]) -> Future: ...
    def claim_runs(self, owner: str, functions: list[str], limit: int, lease: float) -> Future: ...
    def checkpoint_step(self, run: ClaimedRun, lease: float, step: StepWrite,
                        emit: list[dict] | None = None) -> Future: ...
    def suspend_run(self, run: ClaimedRun, *, steps: list[StepWrite], waits: list[WaitWrite],
                    children: list[NewRun], status: str, available_at: float,
                    attempt_inc: int = 0, error: str | None = None) -> Future: ...
    def finish_run(self, run: ClaimedRun, *, status: str, output: str | None, error: str | None,
                   reason: str, emit: list[dict] | None = None) -> Future: ...
    def cancel_run(self, run_id: str, reason: str) -> Future: ...
    def heartbeat(self, worker: dict, lease: float) -> Future: ...
    def release_runs(self, owner: str, run_ids: list[str]) -> Future: ...
    def remove_worker(self, worker_id: str) -> Future: ...
    def recover_leases(self) -> Future: ...
    def fire_cron(self, function_id: str, expr: str, tz: str) -> Future: ...
    def expire_runs(self) -> Future: ...
    def dispatch(self, key: str, window: int, event: dict) -> Future: ...
    def close(self) -> None: ...
