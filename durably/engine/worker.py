"""The worker: claims ready runs under a lease, executes them concurrently, heartbeats.

``concurrency`` bounds the function bodies executing at once. A slot frees as soon as a
run's body has ended and its final write (finish or suspend) is on its way to the store:
the next run starts while that write commits, and the claim that refills the slot joins
the same group commit. When runs are short, the worker also claims runs ahead
(``prefetch``, by default 32 times ``concurrency``), so that a slot never waits for a claim
and one group commit carries many finished runs. The next claim goes out when half of the
runs ahead are left, and a claim may wait behind a batch of finishes before its own commit
(20 ms is common on a loaded PostgreSQL): that half must outlast it. How far ahead shrinks
as runs get longer, so that every run claimed ahead starts well within ``hold`` seconds.
A run claimed ahead that has not started within ``hold`` goes back to the queue, so long
runs never keep work away from other workers.

The loop wakes when the store says runs may be ready (in-process commit, another
process's commit), when a slot frees, when a sleeping run comes due, or at the poll
interval, whichever is first. On stop it hands runs claimed ahead back at once, lets
in-flight runs finish for ``grace`` seconds, then hands the rest back to the queue.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable

from ..errors import DurablyError, LeaseLost
from ..core.ids import new_id
from ..core.jsonutil import dumps
from ..core.records import ClaimedRun
from ..store.base import aw
from . import heartbeat
from .executor import Execution
from .outage import Outage
from .scheduler import Scheduler

if TYPE_CHECKING:
    from .registry import Registry

log = logging.getLogger("durably.worker")

SHORT_RUN = 0.05  # claim ahead only while runs take less than this (seconds, moving average)


class Worker:
    """Executes the functions of ``registry`` that are ready in ``store``.

    ``lease`` is the lease period (seconds), ``clock`` the store's clock as this process reads
    it; with ``scheduler`` a scheduler runs beside the worker (``prune_after``: its retention).
    Built by ``Runtime.worker()``.
    """

    def __init__(self, store: Any, registry: "Registry", *, lease: float, clock: Callable[[], float] = time.time,
                 prune_after: float | None = None, concurrency: int = 8, scheduler: bool = True,
                 poll_interval: float = 1.0, grace: float | None = None, prefetch: int | None = None,
                 hold: float = 0.5, execution: type[Execution] = Execution):
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.store = store
        self.registry = registry
        self.clock = clock
        self.prune_after = prune_after
        self.concurrency = concurrency
        self.with_scheduler = scheduler
        self.poll_interval = poll_interval
        self.lease = lease
        self.grace = grace if grace is not None else max(1.0, self.lease * 0.8)
        self.prefetch = 32 * concurrency if prefetch is None else max(0, prefetch)
        self.hold = hold
        self.execution = execution  # what executes one attempt (the Inngest driver's subclass, for SDK runs)
        self.id = f"{socket.gethostname()}:{os.getpid()}:{new_id()[-8:]}"
        self.stopping: asyncio.Event | None = None  # set by run()
        self._inflight: dict[str, asyncio.Task] = {}
        self._busy = 0  # bodies executing (slots taken)
        self._ahead: deque[tuple[ClaimedRun, float]] = deque()  # claimed ahead: (run, monotonic at claim)
        self._avg_run = 1.0  # moving average of body durations (seconds); pessimistic until measured
        self._idle = False  # nothing running or claimed ahead: the store may claim for us on commit
        self.outage = Outage(self.id)
        # Runs this worker executes now, by id: their lease token. Only these (and the runs
        # claimed ahead) are renewed by the heartbeat.
        self._held: dict[str, int] = {}
        # Runs whose end (finish, suspend, hand-back) could not be recorded: no longer renewed,
        # handed back (fenced by the token) as soon as the store answers.
        self._let_go: dict[str, int] = {}
        self.started: asyncio.Event | None = None  # set once claiming has begun

    def info(self) -> dict:
        return {"id": self.id, "host": socket.gethostname(), "pid": os.getpid(),
                "functions": self.registry.ids(), "concurrency": self.concurrency}

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until ``stop`` is set (or the task is cancelled)."""
        store = self.store
        registering = self.registry.register()
        if registering is not None:
            await aw(registering)
        loop = asyncio.get_running_loop()
        stop = stop or asyncio.Event()
        self.stopping = stop
        wake = asyncio.Event()
        self._wake = wake
        started = self.started = asyncio.Event()
        poked = [False]  # a wake-up is already on its way to the loop: do not queue another

        def on_poke() -> None:
            poked[0] = False
            wake.set()

        def poke() -> None:  # from the store's threads, after each commit that made runs ready
            if not poked[0]:
                poked[0] = True
                loop.call_soon_threadsafe(on_poke)

        unsubscribe = store.subscribe(poke)
        functions = dumps(self.registry.ids())
        version = self.registry.version

        def want() -> int:  # the store's writer thread, inside a transaction that made runs ready
            if not self._idle:
                return 0
            self._idle = False
            return self.concurrency

        def accept(runs: list[ClaimedRun]) -> None:
            at = time.monotonic()
            self._ahead.extend((run, at if run.mono is None else run.mono) for run in runs)
            self._fill()
            wake.set()

        wants = want  # (the loop below reuses the name ``want`` for a count)
        no_handoff = store.handoff(self.id, functions, self.lease, wants,
                                   lambda runs: loop.call_soon_threadsafe(accept, runs))
        pool = ThreadPoolExecutor(max_workers=self.concurrency + 2, thread_name_prefix="durably-run")
        self._pool = pool
        side = [asyncio.create_task(self._heartbeat(stop), name="durably-heartbeat")]
        if self.with_scheduler:
            side.append(asyncio.create_task(Scheduler(store, self.clock, self.lease, self.registry,
                                                                prune_after=self.prune_after).run(stop), name="durably-scheduler"))
        # One waiting point for the claim loop: stopping, a side task dying, a slot freeing,
        # the store's wake-ups and the poll timer all set ``wake``.
        stop_waiter = asyncio.create_task(stop.wait(), name="durably-stop")
        for t in (stop_waiter, *side):
            t.add_done_callback(lambda _t: wake.set())
        log.info("worker %s started: %d function(s), concurrency %d", self.id, len(self.registry.ids()), self.concurrency)
        try:
            await aw(store.heartbeat(self.info(), self.lease, []))
            started.set()
            while not stop.is_set():
                if self.registry.version != version:  # functions came or went (an SDK app synced)
                    version = self.registry.version
                    functions = dumps(self.registry.ids())
                    no_handoff()
                    no_handoff = store.handoff(self.id, functions, self.lease, wants,
                                               lambda runs: loop.call_soon_threadsafe(accept, runs))
                for t in side:
                    if t.done() and t.exception() is not None:
                        raise RuntimeError(f"worker side task {t.get_name()} died") from t.exception()
                timeout = self.poll_interval
                if self._ahead:
                    timeout = await self._hand_back_stale(timeout)
                ahead = 0
                if self._avg_run < SHORT_RUN:  # as many as start within half the hold time
                    ahead = min(self.prefetch, int(self.concurrency * self.hold / 2 / max(self._avg_run, 1e-4)))
                free = self.concurrency - self._busy
                wanted = free + ahead - len(self._ahead)
                # Claim when a slot has nothing to start next, or when the runs claimed ahead
                # have run low: one claim per refill, not one per freed slot.
                if wanted > 0 and (free > len(self._ahead) or wanted >= max(1, ahead // 2)):
                    wake.clear()
                    # Taken before the claim, so a run's clock (read by the store during the
                    # claim) carried forward from here never runs behind the store's.
                    at = time.monotonic()
                    try:
                        runs, next_at, now = await aw(store.claim_runs(self.id, functions, wanted, self.lease))
                    except DurablyError as exc:  # the store is unreachable: keep trying, never exit
                        outage = self.outage.failed(exc)
                        timer = loop.call_later(outage, wake.set)
                        await wake.wait()
                        timer.cancel()
                        wake.clear()
                        continue
                    self.outage.answered()
                    if self._let_go:
                        await self._hand_back_let_go()
                    for run in runs:
                        self._ahead.append((run, at))
                    self._fill()
                    if len(runs) == wanted:
                        continue  # there may be more; claim again once a slot frees up
                    if next_at is not None:
                        timeout = min(timeout, max(0.0, next_at - now) + 0.001)
                if not wake.is_set():
                    self._idle = self._busy == 0 and not self._ahead
                    timer = loop.call_later(timeout, wake.set)
                    await wake.wait()
                    timer.cancel()
                    self._idle = False
                wake.clear()
        finally:
            stop_waiter.cancel()
            self._idle = False
            no_handoff()
            unsubscribe()
            await self._hand_back(list(self._ahead))
            await self._hand_back(list(self._ahead))  # any handed to us by a commit in flight meanwhile
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

    def wake(self) -> None:
        """Look at the registry and the store again now (the loop's own thread)."""
        wake = getattr(self, "_wake", None)
        if wake is not None:
            wake.set()

    def _fill(self) -> None:
        """Start runs claimed ahead while slots are free."""
        stopping = self.stopping
        assert stopping is not None, "_fill runs inside run(), which sets stopping"
        while self._busy < self.concurrency and self._ahead and not stopping.is_set():
            run, claimed_at = self._ahead.popleft()
            # The run's clock was read at claim: carry it forward to now, so durations
            # computed from it (sleeps, timeouts) never start in the past.
            run.now += time.monotonic() - claimed_at
            self._start(run)

    async def _hand_back_stale(self, timeout: float) -> float:
        """Give runs claimed ahead that waited longer than ``hold`` back to the queue."""
        now = time.monotonic()
        stale = []
        while self._ahead and now - self._ahead[0][1] >= self.hold:
            stale.append(self._ahead.popleft())
        if stale:
            await self._hand_back(stale)
        if self._ahead:
            timeout = min(timeout, max(0.0, self._ahead[0][1] + self.hold - now) + 0.001)
        return timeout

    async def _hand_back(self, claimed: list[tuple[ClaimedRun, float]]) -> None:
        if not claimed:
            return
        for run, _at in claimed:
            try:
                self._ahead.remove((run, _at))
            except ValueError:
                pass
        try:
            await aw(self.store.release_runs(self.id, [run.id for run, _at in claimed]))
        except Exception as exc:  # noqa: BLE001 - handed back when the store answers again
            for run, _at in claimed:
                self._let_go[run.id] = run.lease_gen
            log.warning("could not hand back %d run(s) claimed ahead (%s); no longer renewed, they are handed "
                        "back when the store answers, or requeued when their lease expires", len(claimed), exc)

    def _leases(self) -> list[tuple[str, int]]:
        """The runs whose leases the heartbeat renews: executing now, or claimed ahead."""
        out = list(self._held.items())
        out.extend((run.id, run.lease_gen) for run, _at in self._ahead)
        return out

    def _release_lease(self, run: ClaimedRun, exc: BaseException | None) -> None:
        """The attempt of ``run`` is over: its end recorded (``exc`` None, or a lease lost), or
        not (``exc``: the store did not answer, or a COMMIT's outcome is unknown)."""
        if self._held.get(run.id) == run.lease_gen:
            del self._held[run.id]
        if exc is not None and not isinstance(exc, LeaseLost):
            self._let_go[run.id] = run.lease_gen
            log.error("run %s: could not record the end of its attempt (%s); its lease is no longer renewed, "
                      "and it is handed back to the queue when the store answers", run.id, exc)

    async def _hand_back_let_go(self) -> None:
        """Requeue the runs let go (fenced by their lease token: one finished after all, or
        taken over since, is left alone)."""
        runs = list(self._let_go.items())
        try:
            requeued = await aw(self.store.hand_back(runs))
        except Exception as exc:  # noqa: BLE001 - tried again at the next heartbeat or claim
            self.outage.failed(exc)
            return
        for rid, gen in runs:
            if self._let_go.get(rid) == gen:
                del self._let_go[rid]
        if requeued:
            log.info("worker %s handed %d run(s) back to the queue whose end it could not record: %s",
                     self.id, len(requeued), ", ".join(requeued))

    def _start(self, run: ClaimedRun) -> None:
        fdef = self.registry.get(run.function_id)
        if fdef is None:  # unregistered since it was claimed (an SDK app's function went away)
            asyncio.ensure_future(self._hand_back([(run, time.monotonic())]))
            return
        self._busy += 1
        started = time.monotonic()
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            self._busy -= 1
            self._avg_run += (time.monotonic() - started - self._avg_run) * 0.2
            self._fill()
            self._wake.set()

        self._held[run.id] = run.lease_gen
        ex = self.execution(self.store, self.registry, fdef, run, pool=self._pool, lease=self.lease,
                            on_final=release, outage=self.outage)
        loop = asyncio.get_running_loop()

        async def go() -> None:
            try:
                await ex.execute()
            except asyncio.CancelledError:
                self._release_lease(run, None)  # handed back by _drain
                raise
            except Exception as exc:  # noqa: BLE001 - the store did not record the attempt's end
                self._release_lease(run, exc)
                return
            final = ex.final_write
            if final is None:
                self._release_lease(run, None)
                return

            def recorded(fut: Any) -> None:  # the store's thread
                exc = fut.exception()
                loop.call_soon_threadsafe(self._release_lease, run, exc)

            final.add_done_callback(recorded)

        task = asyncio.create_task(go(), name=f"durably-run-{run.id}")
        self._inflight[run.id] = task

        def done(_t: asyncio.Task, rid: str = run.id) -> None:
            self._inflight.pop(rid, None)
            release()

        task.add_done_callback(done)

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        async def after() -> None:
            if self._let_go:
                await self._hand_back_let_go()

        await heartbeat.heartbeat(self.store, self.info, self.lease, stop, runs=self._leases,
                                  outage=self.outage, after=after)

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
                n = await aw(self.store.release_runs(self.id, ids))
                log.info("worker %s handed %d unfinished run(s) back to the queue", self.id, n)
            except Exception as exc:  # noqa: BLE001
                log.warning("could not release runs (their leases will expire): %s", exc)
