"""What both SQL stores share (``base.StoreBackend``): the verbs of ``Store`` (each one
transaction through the group-commit writer, bodies in ``ops``), the typed reads of
``Ledger`` (bodies in ``reads``), and ``Wakeups``: in-process wake-ups and the hand-off of
freshly ready runs to an idle worker of this process inside the committing transaction.

A dialect provides the connection, the transaction object (``Tx``), ``_write``/``_read``,
``_savepoint(tx, statement)``, ``_is_retryable(exc)``, ``_start_wakeups()`` (its source of
wake-ups from other processes) and ``now()``.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import threading
from typing import Any, Callable, Protocol, TypeVar

from . import ops, reads
from ..errors import StoreUnavailable
from ..core.jsonutil import dumps
from .base import ClaimedRun, NewRun, StepWrite
from ..core.records import Audit
from ..core.ledger import (AuditRecord, PausedRecord, EventDetail, EventRecord, FinishedBucket, FunctionConfig, FunctionOverview,
                           FunctionRecord, HealthSnapshot, MetricsSnapshot, RunRecord, SkipRecord, SlotRecord,
                           StatusBlob)

log = logging.getLogger("durably.store")

T = TypeVar("T")


class _Staging(Protocol):
    """What ``StatusStaging`` needs of the transaction class it is mixed into."""

    env: str
    status_in_store: bool
    _status: dict[tuple[str, str], Callable[[], dict]] | None
    published: list[tuple[str, str, dict]] | None

    @property
    def now(self) -> float: ...

    def exec_at_commit(self, name: str, /, **params: Any) -> None: ...


class StatusStaging:
    """Status blobs staged during a transaction (``_status``), one per (tenant, function):
    written just before the commit to the store's table, or, when Redis keeps them, handed
    to the status sink after the commit (``published``). The last one staged wins, as it
    would have if each had been written in turn."""

    __slots__ = ()
    _status: dict[tuple[str, str], Callable[[], dict]] | None  # slots of the transaction class
    published: list[tuple[str, str, dict]] | None

    def stage_status(self: "_Staging", tenant: str, function_id: str, make_blob: Callable[[], dict]) -> None:
        if self._status is None:
            self._status = {}
        self._status[(tenant, function_id)] = make_blob

    def flush_status(self: "_Staging") -> None:
        if self._status:
            staged, self._status = self._status, None
            if not self.status_in_store:  # Redis keeps them: handed to the sink once committed
                self.published = [(t, f, make_blob()) for (t, f), make_blob in staged.items()]
                return
            for (tenant, function_id), make_blob in staged.items():
                self.exec_at_commit("upsert_status", env=self.env, tenant=tenant, function_id=function_id,
                                    blob=dumps(make_blob()), now=self.now)


class SqlStore:
    status_sink: Any = None  # where blobs go when the store does not keep them (Redis)
    _readers: cf.ThreadPoolExecutor  # the dialect's pool for reads, made in its __init__
    # For tests: ``{verb: hook}``; ``hook()`` before each call of ``verb`` (``finish_run``,
    # ``suspend_run``, ``checkpoint_step``) returns None (go on), "lost" (nothing written, the
    # store unreachable) or "unknown" (written and committed, but the answer lost: a COMMIT
    # whose outcome the caller cannot know). Both fail with ``StoreUnavailable``.
    faults: dict[str, Callable[[], str | None]] | None = None

    def _faulty(self, verb: str, write: Callable[[], cf.Future]) -> cf.Future:
        hook = self.faults.get(verb) if self.faults else None
        mode = hook() if hook is not None else None
        if mode is None:
            return write()
        out: cf.Future = cf.Future()
        err = StoreUnavailable(f"{verb}: fault injected ({mode})")
        if mode == "lost":
            out.set_exception(err)
            return out
        if mode != "unknown":
            raise ValueError(f"unknown fault mode {mode!r}")
        write().add_done_callback(lambda _f: out.set_exception(err))
        return out

    def _init_wakeups(self) -> None:
        self._listeners: list[Callable[[], None]] = []
        self._ended_listeners: list[Callable[[], None]] = []
        self._handoffs: list[tuple] = []
        self._listeners_lock = threading.Lock()
        self._wakeups_started = False

    # --- dialect hooks -------------------------------------------------------------------------

    def _write(self, fn: Callable[..., Any], *args: Any) -> cf.Future:
        raise NotImplementedError

    def _read(self, fn: Callable[..., T], *args: Any) -> cf.Future[T]:
        raise NotImplementedError

    def _submit_read(self, run: Callable[[], Any]) -> cf.Future:
        """Run a read on the reader pool; once the store is closed, a failed future."""
        try:
            return self._readers.submit(run)
        except RuntimeError as exc:  # the pool is shut down
            fut: cf.Future = cf.Future()
            fut.set_exception(StoreUnavailable(f"the store is closed: {exc}"))
            return fut

    def _savepoint(self, tx: Any, statement: str) -> None:
        raise NotImplementedError

    def _is_retryable(self, exc: BaseException) -> bool:
        raise NotImplementedError

    def _start_wakeups(self) -> None:
        raise NotImplementedError

    # --- wake-ups --------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (from another thread) whenever runs may have become ready."""
        return self._add_listener(self._listeners, callback)

    def wake(self) -> None:
        """Tell this process's workers that runs may be ready (e.g. after a clock change)."""
        self._notify()

    def on_ended(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (from another thread) whenever runs may have ended, in this
        process or another; returns the unsubscribe call."""
        return self._add_listener(self._ended_listeners, callback)

    def _add_listener(self, listeners: list[Callable[[], None]], callback: Callable[[], None]) -> Callable[[], None]:
        """Add ``callback`` to ``listeners`` (starting the wake-ups once); returns its removal."""
        with self._listeners_lock:
            listeners.append(callback)
            if not self._wakeups_started:
                self._wakeups_started = True
                self._start_wakeups()

        def unsubscribe() -> None:
            with self._listeners_lock:
                if callback in listeners:
                    listeners.remove(callback)

        return unsubscribe

    def _notify(self) -> None:
        self._call(self._listeners)

    def _notify_ended(self) -> None:
        self._call(self._ended_listeners)

    def _call(self, listeners: list[Callable[[], None]]) -> None:
        with self._listeners_lock:
            callbacks = list(listeners)
        for cb in callbacks:
            try:
                cb()
            except Exception:  # noqa: BLE001 - a listener's failure is its own
                pass

    def handoff(self, owner: str, functions: str, lease: float, want: Callable[[], int],
                deliver: Callable[[list[ClaimedRun]], None]) -> Callable[[], None]:
        """Claim for an idle worker of this process inside the transaction that made runs
        ready (a send, a finished run waking another): the run starts after one commit,
        not two. ``want()`` (called on the writer thread) says how many runs to claim;
        ``deliver(runs)`` receives them after the commit. Returns the unregister call."""
        entry = (owner, functions, lease, want, deliver)
        with self._listeners_lock:
            self._handoffs.append(entry)

        def remove() -> None:
            with self._listeners_lock:
                if entry in self._handoffs:
                    self._handoffs.remove(entry)

        return remove

    def _before_commit(self, tx: Any) -> None:
        if tx.woke and self._handoffs:
            with self._listeners_lock:
                handoffs = list(self._handoffs)
            for owner, functions, lease, want, deliver in handoffs:
                n = want()
                if n <= 0:
                    continue
                self._savepoint(tx, "SAVEPOINT handoff")
                try:
                    runs = ops.claim(tx, owner, functions, n, lease)[0]
                except Exception as exc:  # noqa: BLE001 - a claim of convenience: the worker claims itself
                    self._savepoint(tx, "ROLLBACK TO handoff")
                    self._savepoint(tx, "RELEASE handoff")
                    if self._is_retryable(exc):
                        raise
                    log.warning("claim for an idle worker failed: %s", exc)
                    continue
                self._savepoint(tx, "RELEASE handoff")
                if runs:
                    tx.handed = (tx.handed or []) + [(deliver, runs)]
        tx.flush_status()

    def _after_commit(self, tx: Any) -> None:
        for deliver, runs in tx.handed or ():
            try:
                deliver(runs)
            except Exception:  # noqa: BLE001 - their leases expire and they run elsewhere
                log.exception("could not hand claimed runs to the worker")
        if tx.published and self.status_sink is not None:
            for tenant, function_id, blob in tx.published:
                self.status_sink.put(tenant, function_id, blob)  # never blocks: the sink writes from its thread
        if tx.woke:
            self._notify()  # this process's own workers: no need to wait for another process's signal
        if tx.ended:
            self._notify_ended()

    # --- verbs (each one transaction) ---------------------------------------------------

    def register(self, app_id: str, configs: list[dict]) -> cf.Future:
        return self._write(ops.register, app_id, configs)

    def ingest(self, events: list[dict], audit: Audit | None = None) -> cf.Future:
        return self._write(ops.audited(ops.ingest, audit, lambda _res: True), events)

    def create_runs(self, runs: list[NewRun], audit: Audit | None = None) -> cf.Future:
        return self._write(ops.audited(ops.create_runs, audit, lambda ids: any(i is not None for i in ids)), runs)

    def claim_runs(self, owner: str, functions_json: str, limit: int, lease: float) -> cf.Future:
        # Claims commit durably like everything else: a claim lost in a crash could give its
        # fencing token to a second worker, and two workers would hold one lease.
        return self._write(ops.claim, owner, functions_json, limit, lease)

    def checkpoint_step(self, run: ClaimedRun, lease: float, step: StepWrite,
                        emit: list[dict] | None = None) -> cf.Future:
        return self._faulty("checkpoint_step", lambda: self._write(ops.checkpoint, run, lease, step, emit))

    def suspend_run(self, run: ClaimedRun, *, steps, waits, children, status: str, available_at: float,
                    attempt_inc: int = 0, error: str | None = None, lease: float) -> cf.Future:
        return self._faulty("suspend_run", lambda: self._write(ops.suspend, run, steps, waits, children, status,
                                                               available_at, attempt_inc, error, lease))

    def finish_run(self, run: ClaimedRun, *, status: str, output: str | None, error: str | None, reason: str,
                   emit: list[dict] | None = None) -> cf.Future:
        return self._faulty("finish_run", lambda: self._write(ops.finish, run, status, output, error, reason, emit))

    def cancel_run(self, run_id: str, reason: str, audit: Audit | None = None) -> cf.Future:
        return self._write(ops.audited(ops.cancel, audit), run_id, reason)

    def cancel_runs(self, run_ids: list[str], reason: str, audit: Audit | None = None) -> cf.Future:
        return self._write(ops.cancel_many, run_ids, reason, audit)

    def pause_function(self, function_id: str, mode: str, audit: Audit | None = None) -> cf.Future:
        return self._write(ops.pause, function_id, mode, audit)

    def resume_function(self, function_id: str, audit: Audit | None = None) -> cf.Future:
        return self._write(ops.resume, function_id, audit)

    def record_audit(self, audit: Audit) -> cf.Future:
        """An audit row on its own, for an action that is not a store verb."""
        return self._write(ops.record, audit)

    def watch_end(self, run_id: str) -> cf.Future:
        return self._write(ops.watch_end, run_id)

    def heartbeat(self, worker: dict, lease: float, runs: list[tuple[str, int]] | None = None) -> cf.Future:
        return self._write(ops.heartbeat, worker, lease, runs)

    def hand_back(self, runs: list[tuple[str, int]]) -> cf.Future:
        return self._write(ops.hand_back, runs)

    def remove_worker(self, worker_id: str) -> cf.Future:
        return self._write(ops.remove_worker, worker_id)

    def release_runs(self, owner: str, run_ids: list[str]) -> cf.Future:
        return self._write(ops.release, owner, run_ids)

    def recover_leases(self) -> cf.Future:
        return self._write(ops.recover)

    def expire_runs(self) -> cf.Future:
        return self._write(ops.expire)

    def acquire_leadership(self, name: str, owner: str, ttl: float) -> cf.Future:
        return self._write(ops.acquire_leadership, name, owner, ttl)

    def release_leadership(self, name: str, owner: str) -> cf.Future:
        return self._write(ops.release_leadership, name, owner)

    def prune(self, older_than: float, limit: int = 1000, audit: Audit | None = None) -> cf.Future:
        return self._write(ops.audited(ops.prune, audit, lambda _counts: True), older_than, limit)

    def delete_env(self) -> cf.Future:
        return self._write(ops.delete_env)

    def fire_cron(self, function_id: str, expr: str, tz: str) -> cf.Future:
        return self._write(ops.fire_cron, function_id, expr, tz)

    def backfill_cron(self, function_id: str, ticks: list[tuple[str, str, float]],
                      audit: Audit | None = None) -> cf.Future:
        return self._write(ops.audited(ops.backfill_cron, audit, lambda done: any(t["fired"] for t in done)),
                           function_id, ticks)

    def dispatch(self, key: str, window: int, event: dict) -> cf.Future:
        return self._write(ops.dispatch, key, window, event)

    def record_dispatch(self, key: str, window_start: int, event_id: str) -> cf.Future:
        return self._write(ops.record_dispatch, key, window_start, event_id)

    # --- reads (the Ledger protocol: bodies in ``reads``, on a reader connection) ---------------

    def get_run(self, run_id: str, with_steps: bool = True) -> cf.Future[RunRecord | None]:
        return self._read(reads.get_run, run_id, with_steps)

    def list_runs(self, *, status: str | None = None, function_id: str | None = None, tenant: str | None = None,
                  since: float | None = None, until: float | None = None, cursor: tuple[float, str] | None = None,
                  limit: int = 50) -> cf.Future[list[RunRecord]]:
        return self._read(lambda tx: reads.list_runs(tx, status=status, function_id=function_id, tenant=tenant,
                                                     since=since, until=until, cursor=cursor, limit=limit))

    def list_events(self, *, name: str | None = None, cursor: tuple[float, str] | None = None,
                    limit: int = 50) -> cf.Future[list[EventRecord]]:
        return self._read(lambda tx: reads.list_events(tx, name=name, cursor=cursor, limit=limit))

    def get_event(self, event_id: str) -> cf.Future[EventDetail | None]:
        return self._read(reads.get_event, event_id)

    def list_functions(self, since: float) -> cf.Future[list[FunctionRecord]]:
        return self._read(reads.list_functions, since)

    def functions_overview(self, since: float) -> cf.Future[list[FunctionOverview]]:
        return self._read(reads.functions_overview, since)

    def get_function(self, function_id: str) -> cf.Future[FunctionConfig | None]:
        return self._read(reads.get_function, function_id)

    def registry(self) -> cf.Future[dict[str, FunctionConfig]]:
        return self._read(reads.registry)

    def get_status(self, tenant: str, function_id: str) -> cf.Future[StatusBlob | None]:
        return self._read(reads.get_status, tenant, function_id)

    def health(self, now: float, worker_window: float) -> cf.Future[HealthSnapshot]:
        return self._read(reads.health, now, worker_window)

    def list_skips(self, *, function_id: str | None = None, limit: int = 1000) -> cf.Future[list[SkipRecord]]:
        return self._read(lambda tx: reads.list_skips(tx, function_id=function_id, limit=limit))

    def list_slots(self) -> cf.Future[list[SlotRecord]]:
        return self._read(reads.list_slots)

    def replay_candidates(self, *, function_id: str, status: str, since: float | None, until: float | None,
                          limit: int, tenant: str | None = None) -> cf.Future[list[RunRecord]]:
        return self._read(lambda tx: reads.replay_candidates(tx, function_id=function_id, status=status, since=since,
                                                             until=until, limit=limit, tenant=tenant))

    def metrics(self, now: float, worker_window: float) -> cf.Future[MetricsSnapshot]:
        return self._read(reads.metrics, now, worker_window)

    def finished_per_minute(self, since: float) -> cf.Future[list[FinishedBucket]]:
        return self._read(reads.finished_per_minute, since)

    def paused_functions(self) -> cf.Future[dict[str, PausedRecord]]:
        return self._read(reads.paused_functions)

    def list_audit(self, *, cursor: tuple[float, str] | None = None, limit: int = 50) -> cf.Future[list[AuditRecord]]:
        return self._read(lambda tx: reads.list_audit(tx, cursor=cursor, limit=limit))
