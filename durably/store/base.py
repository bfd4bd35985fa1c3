"""The store's protocols and the records that cross them.

Three protocols, one implementation of each per dialect (``sqlite.SqliteStore``,
``postgres.PostgresStore``, both on ``sqlstore.SqlStore``):

* ``Store``: the state-change verbs. The engine talks to a store only through these; each
  is one transaction (several verbs from concurrent runs may share one commit) and none
  calls back into the engine: the store plans runs from the registry (``core.flow``).
* ``Ledger``: the typed reads of the ledger, each returning records of ``core.ledger``.
* ``Wakeups``: being told when runs may have become ready, and the hand-off of freshly
  ready runs to an idle worker of this process inside the committing transaction.

The engine never sees SQL or a driver exception: dialects translate errors into durably
errors (``StoreUnavailable``; ``LeaseLost`` for a write under a lease taken over).

Verbs and reads return ``concurrent.futures.Future``: async code awaits ``aw(f)``, sync code
calls ``f.result()``. One implementation serves both.

A caller that must answer in bounded time (a dispatch: ``DURABLY_DISPATCH_TIMEOUT``) submits
its verbs inside ``give_up_after(seconds)``: each verb carries the deadline, and a store never
starts the commit of a verb past its deadline (it fails with ``StoreUnavailable`` instead), so
a write the caller gave up on is never applied later, when the store answers again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import contextvars
import time
import weakref
from collections import deque
from typing import Any, Callable, Protocol, TypeVar

from ..core.ledger import (AuditRecord, PausedRecord, EventDetail, EventRecord, FinishedBucket, FunctionConfig, FunctionOverview,
                           FunctionRecord, HealthSnapshot, JsonObject, MetricsSnapshot, RunRecord, SkipRecord,
                           SlotRecord, StatusBlob)
from ..core.records import Audit, ClaimedRun, IngestResult, NewRun, Skip, StepWrite, WaitWrite
from ..errors import StoreUnavailable

Future = cf.Future

T = TypeVar("T")

__all__ = ["Store", "Ledger", "Wakeups", "StoreBackend", "StatusSink", "Future", "aw", "ClaimedRun", "IngestResult",
           "NewRun", "Skip", "StepWrite", "WaitWrite", "give_up_after", "current_deadline", "remaining", "within", "aw_within"]


# --- deadlines ---------------------------------------------------------------------------------

_deadline: contextvars.ContextVar[tuple[float, float] | None] = contextvars.ContextVar("durably_store_deadline",
                                                                                      default=None)

# How long past the deadline a caller waits for a COMMIT the store started before it: the
# store starts no commit past the deadline, so an answer that comes back within the grace
# is the true outcome (a failure reported after it would be a lie about a committed write).
COMMIT_GRACE = 0.2


@contextlib.contextmanager
def give_up_after(seconds: float | None) -> Any:
    """Verbs submitted in this block carry a deadline ``seconds`` from now (time.monotonic);
    an earlier deadline already in force is kept. ``None``: no deadline added."""
    outer = _deadline.get()
    if seconds is None:
        yield outer[0] if outer else None
        return
    deadline = time.monotonic() + seconds
    if outer is not None and outer[0] < deadline:
        deadline, seconds = outer
    token = _deadline.set((deadline, seconds))
    try:
        yield deadline
    finally:
        _deadline.reset(token)


def current_deadline() -> float | None:
    """The deadline (time.monotonic) of verbs submitted now, or None."""
    d = _deadline.get()
    return None if d is None else d[0]


def remaining() -> float | None:
    """Seconds left before the current deadline (never negative), or None without one."""
    d = _deadline.get()
    return None if d is None else max(0.0, d[0] - time.monotonic())


def _gave_up() -> StoreUnavailable:
    d = _deadline.get()
    budget = f" within {d[1]:g} s (DURABLY_DISPATCH_TIMEOUT)" if d else ""
    return StoreUnavailable(f"the store did not answer{budget}")


def within(fut: cf.Future[T]) -> T:
    """``fut.result()``, waiting no longer than the current deadline (plus the commit grace);
    then ``StoreUnavailable`` (and ``fut`` is cancelled: a verb not started yet never runs)."""
    left = remaining()
    if left is None:
        return fut.result()
    try:
        return fut.result(timeout=left + COMMIT_GRACE)
    except cf.TimeoutError:
        fut.cancel()
        raise _gave_up() from None


async def aw_within(fut: cf.Future[T]) -> T:
    """``await aw(fut)``, waiting no longer than the current deadline (see ``within``)."""
    left = remaining()
    if left is None:
        return await aw(fut)
    try:
        return await asyncio.wait_for(aw(fut), left + COMMIT_GRACE)
    except asyncio.TimeoutError:
        raise _gave_up() from None


async def aw(fut: cf.Future[T]) -> T:
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
    afut: asyncio.Future[T] = loop.create_future()
    afut.add_done_callback(lambda a: fut.cancel() if a.cancelled() else None)
    fut.add_done_callback(lambda f: bridge.post(afut, f))
    return await afut


class _Bridge:
    """Settles asyncio futures from concurrent ones, one loop wake-up per burst."""

    __slots__ = ("loop", "settled", "scheduled", "__weakref__")

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.settled: deque[tuple[asyncio.Future[Any], cf.Future[Any]]] = deque()
        self.scheduled = False

    def post(self, afut: asyncio.Future[Any], fut: cf.Future[Any]) -> None:  # any thread
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


_bridges: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Bridge] = weakref.WeakKeyDictionary()


class StatusSink(Protocol):
    """Where status blobs go when the store does not keep them (Redis, ``status.RedisStatusSink``)."""

    on_error: Callable[[BaseException], None] | None

    def put(self, tenant: str, function_id: str, value: dict[str, Any], /) -> None: ...
    def close(self) -> None: ...


class Store(Protocol):
    """State-change verbs. Each is one transaction and returns a Future.

    Writes of a claimed run (``checkpoint_step``, ``suspend_run``, ``finish_run``) are fenced
    by its lease generation: under a lease taken over since, they raise ``LeaseLost`` and
    write nothing.
    """

    env: str
    dialect: str  # "sqlite" | "postgres"
    status_sink: StatusSink | None  # set when status blobs live outside the store

    # --- lifecycle ---------------------------------------------------------------------------
    def migrate(self) -> cf.Future[list[int]]:
        """Apply the schema migrations not applied yet; their versions."""
        ...

    def now(self) -> cf.Future[float]:
        """The store's clock (epoch seconds): the clock of leases, timers and cron."""
        ...

    def ping(self) -> cf.Future[bool]: ...

    def initialized(self) -> cf.Future[bool]:
        """Whether the store exists (was migrated once); reads only, creates nothing."""
        ...

    def close(self) -> None: ...

    # --- registry, events, runs ----------------------------------------------------------------
    def register(self, app_id: str, configs: list[FunctionConfig]) -> cf.Future[None]:
        """Upsert the functions of an app (``FunctionDef.config()``) and their triggers."""
        ...

    def ingest(self, events: list[JsonObject], audit: Audit | None = None) -> cf.Future[IngestResult]:
        """Record events (duplicate ids ignored), create the runs they trigger, resolve waits;
        ``audit`` (an operator's send) is recorded in the same transaction."""
        ...

    def create_runs(self, runs: list[NewRun], audit: Audit | None = None) -> cf.Future[list[str | None]]:
        """Create runs; each one's id, or None where flow control created none. ``audit`` is
        recorded in the same transaction when at least one run was created."""
        ...

    def ingest_in(self, connection: Any, events: list[JsonObject],
                  register: tuple[str, list[FunctionConfig]] | None = None) -> IngestResult:
        """``ingest`` inside the caller's open transaction on ``connection`` (a DB-API
        connection to this store's database), on the caller's thread: nothing is visible
        until the caller commits, and a rollback leaves no event and no run. Workers are woken
        at the commit. A connection to another database is InvalidInput. ``register``: an
        app's functions (``register``'s arguments) to write to the registry in that transaction first."""
        ...

    async def ingest_in_async(self, connection: Any, events: list[JsonObject],
                              register: tuple[str, list[FunctionConfig]] | None = None) -> IngestResult:
        """``ingest_in`` on an async connection (PostgreSQL's ``psycopg.AsyncConnection``)."""
        ...

    def dispatch(self, key: str, window: int, event: JsonObject) -> cf.Future[dict[str, Any]]:
        """One ping of a dispatch window: the window's first ping sends ``event``
        (``{"duplicate": False, "runs": [...], ...}``), later ones count themselves."""
        ...

    def record_dispatch(self, key: str, window_start: int, event_id: str) -> cf.Future[bool]:
        """Record the window of ``key`` starting at ``window_start`` as dispatched (its work ran
        inline while the store was unreachable) without sending anything: later pings of it
        are duplicates. False if the window was recorded already."""
        ...

    def fire_cron(self, function_id: str, expr: str, tz: str) -> cf.Future[str | None]:
        """Fire the latest due tick of a schedule at most once; the run created, if any."""
        ...

    def backfill_cron(self, function_id: str, ticks: list[tuple[str, str, float]],
                      audit: Audit | None = None) -> cf.Future[list[dict[str, Any]]]:
        """Fire each tick ``(expr, tz, tick)`` once under its unique key; ticks already fired
        are left alone. Per tick ``{"event_id", "fired", "run_id"}``. ``audit`` is recorded in
        the same transaction when at least one tick was fired."""
        ...

    # --- claimed runs --------------------------------------------------------------------------
    def claim_runs(self, owner: str, functions: str, limit: int,
                   lease: float) -> cf.Future[tuple[list[ClaimedRun], float | None, float]]:
        """Lease up to ``limit`` ready runs of ``functions`` (a JSON list of function ids):
        ``(runs, when the next one becomes ready or None, the store's now)``."""
        ...

    def checkpoint_step(self, run: ClaimedRun, lease: float, step: StepWrite,
                        emit: list[JsonObject] | None = None) -> cf.Future[dict[str, Any] | None]:
        """Commit one step (and the events it sends) and extend the lease; the stored step
        when someone else finished it first, else None."""
        ...

    def suspend_run(self, run: ClaimedRun, *, steps: list[StepWrite], waits: list[WaitWrite],
                    children: list[NewRun], status: str, available_at: float, attempt_inc: int = 0,
                    error: str | None = None, lease: float) -> cf.Future[None]:
        """Park a run (sleep, wait, invoke, retry backoff) until ``available_at``."""
        ...

    def finish_run(self, run: ClaimedRun, *, status: str, output: str | None, error: str | None, reason: str,
                   emit: list[JsonObject] | None = None) -> cf.Future[dict[str, float]]:
        """End a run for good (``{"finished_at": now}``); resolve a parent waiting on it."""
        ...

    def cancel_run(self, run_id: str, reason: str, audit: Audit | None = None) -> cf.Future[bool]:
        """Cancel an unfinished run; False when it had already finished (or does not exist).
        ``audit`` is recorded in the same transaction when the run was cancelled."""
        ...

    def cancel_runs(self, run_ids: list[str], reason: str, audit: Audit | None = None) -> cf.Future[list[bool]]:
        """Cancel runs in one transaction; which ones this cancelled (``audit`` when any was)."""
        ...

    # --- operators' controls -------------------------------------------------------------------
    def pause_function(self, function_id: str, mode: str, audit: Audit | None = None) -> cf.Future[str | None]:
        """Pause a function (``mode`` ``queue`` or ``skip``): none of its runs is claimed until
        it is resumed. The mode it was paused in before (None: it was not)."""
        ...

    def resume_function(self, function_id: str, audit: Audit | None = None) -> cf.Future[bool]:
        """Resume a paused function and wake the workers; False when it was not paused."""
        ...

    def record_audit(self, audit: Audit) -> cf.Future[None]:
        """An audit row on its own (an action that is not a store verb)."""
        ...

    def watch_end(self, run_id: str) -> cf.Future[bool]:
        """Someone waits on ``run_id``: the transaction that ends it wakes ``on_ended``
        listeners in every process (False: no such run). Ending unwatched runs announces nothing."""
        ...

    # --- workers, leases, maintenance ----------------------------------------------------------
    def heartbeat(self, worker: dict[str, Any], lease: float,
                  runs: list[tuple[str, int]] | None = None) -> cf.Future[int]:
        """Record a worker (``{"id", "host", "pid", "functions", "concurrency"}``) and extend
        leases: of ``runs`` (``(id, lease_gen)``: those it executes now) when given, else of
        every run it holds; how many."""
        ...

    def hand_back(self, runs: list[tuple[str, int]]) -> cf.Future[list[str]]:
        """Requeue runs (``(id, lease_gen)``) still running under that lease token: runs whose
        end their worker could not record. The ids requeued."""
        ...

    def release_runs(self, owner: str, run_ids: list[str]) -> cf.Future[int]:
        """Requeue runs this owner holds (claimed ahead, or a stopping worker's); how many."""
        ...

    def remove_worker(self, worker_id: str) -> cf.Future[None]: ...

    def recover_leases(self) -> cf.Future[list[str]]:
        """Requeue runs whose lease expired; their ids."""
        ...

    def expire_runs(self) -> cf.Future[dict[str, list[str]]]:
        """Enforce timeouts: ``{"cancelled": [not started in time], "failed": [not finished]}``."""
        ...

    def acquire_leadership(self, name: str, owner: str, ttl: float) -> cf.Future[bool]: ...
    def release_leadership(self, name: str, owner: str) -> cf.Future[bool]: ...

    def prune(self, older_than: float, limit: int = 1000, audit: Audit | None = None) -> cf.Future[dict[str, int]]:
        """Delete one batch of data past retention; counts by kind (``audit``: recorded with it)."""
        ...

    def delete_env(self) -> cf.Future[dict[str, int]]:
        """Delete every row of the store's env, in one transaction (a throwaway env such as
        ``durably chaos``'s); other envs are untouched. Rows deleted, by table."""
        ...


class Wakeups(Protocol):
    """Being told when runs may have become ready."""

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (from another thread) whenever runs may have become ready;
        returns the unsubscribe call."""
        ...

    def wake(self) -> None:
        """Tell this process's subscribers that runs may be ready."""
        ...

    def on_ended(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (from another thread) whenever a run marked with ``watch_end``
        may have ended, in any process; returns the unsubscribe call."""
        ...

    def handoff(self, owner: str, functions: str, lease: float, want: Callable[[], int],
                deliver: Callable[[list[ClaimedRun]], None]) -> Callable[[], None]:
        """Claim for an idle worker of this process inside the transaction that made runs
        ready: ``want()`` (on the writer thread) says how many, ``deliver(runs)`` receives
        them after the commit. Returns the unregister call."""
        ...


class Ledger(Protocol):
    """Typed reads of the ledger, each on one snapshot, returning ``core.ledger`` records."""

    def get_run(self, run_id: str, with_steps: bool = True) -> cf.Future[RunRecord | None]: ...

    def list_runs(self, *, status: str | None = None, function_id: str | None = None, tenant: str | None = None,
                  since: float | None = None, until: float | None = None, cursor: tuple[float, str] | None = None,
                  limit: int = 50) -> cf.Future[list[RunRecord]]:
        """Newest first; ``cursor`` is the (created_at, id) of the last run of the previous page."""
        ...

    def list_events(self, *, name: str | None = None, cursor: tuple[float, str] | None = None,
                    limit: int = 50) -> cf.Future[list[EventRecord]]:
        """Newest first; ``cursor`` is the (received_at, id) of the last event of the previous page."""
        ...

    def get_event(self, event_id: str) -> cf.Future[EventDetail | None]: ...

    def list_functions(self, since: float) -> cf.Future[list[FunctionRecord]]:
        """Registered functions; ``stats_24h`` counts their runs created since ``since``."""
        ...

    def functions_overview(self, since: float) -> cf.Future[list[FunctionOverview]]:
        """``list_functions`` plus, for cron functions, their newest cron run."""
        ...

    def get_function(self, function_id: str) -> cf.Future[FunctionConfig | None]: ...
    def registry(self) -> cf.Future[dict[str, FunctionConfig]]: ...
    def get_status(self, tenant: str, function_id: str) -> cf.Future[StatusBlob | None]: ...

    def health(self, now: float, worker_window: float) -> cf.Future[HealthSnapshot]:
        """Backlog ready at ``now``, workers heard from within ``worker_window`` seconds."""
        ...

    def list_skips(self, *, function_id: str | None = None, limit: int = 1000) -> cf.Future[list[SkipRecord]]: ...
    def list_slots(self) -> cf.Future[list[SlotRecord]]: ...

    def replay_candidates(self, *, function_id: str, status: str, since: float | None, until: float | None,
                          limit: int, tenant: str | None = None) -> cf.Future[list[RunRecord]]:
        """Finished runs in ``status`` (of ``tenant`` if given) never replayed, oldest first."""
        ...

    def metrics(self, now: float, worker_window: float) -> cf.Future[MetricsSnapshot]: ...

    def finished_per_minute(self, since: float) -> cf.Future[list[FinishedBucket]]: ...

    def paused_functions(self) -> cf.Future[dict[str, PausedRecord]]:
        """The paused functions of the env, by id."""
        ...

    def list_audit(self, *, cursor: tuple[float, str] | None = None, limit: int = 50) -> cf.Future[list[AuditRecord]]:
        """The audit log, newest first, after ``cursor`` (``(at, id)`` of the last row seen)."""
        ...


class StoreBackend(Store, Wakeups, Ledger, Protocol):
    """What a store implementation provides, and what ``runtime.open_store`` returns."""
