"""Group commit: one thread owns the write connection and runs queued operations in batches.

Operations submitted while a transaction commits wait in the queue and share the next
transaction, so N concurrent checkpoints cost one commit (one fsync), not N. An
operation that fails (a lease lost, a constraint) changes nothing: the transaction is
rolled back and the rest of the batch runs again without it, then commits.

Operations of one kind in a batch run together when their function has a ``many``
variant (``fn.many(tx, [args, ...])``): a batch of 16 finishing runs is one UPDATE of 16
rows, not 16 UPDATEs. ``many`` returns one result per operation, or ``Rejected(exc)`` for
an operation that changed nothing and fails alone (a lease lost). When ``many`` itself
raises, the batch runs again with that kind's operations one by one, so the failure is
isolated as for any other operation.

An operation may carry a deadline (``time.monotonic``; see ``base.give_up_after``): once it
has passed, the operation fails with ``StoreUnavailable`` and is left out of the batch, so
its transaction is never committed after its caller stopped waiting. The deadline is
checked before each attempt and again just before COMMIT; ``deadline`` is the earliest
deadline of the operations of the attempt under way, for a dialect that waits for a lock
(SQLite's busy wait ends there).
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import queue
import threading
import time
from typing import Any, Callable

from ..errors import StoreUnavailable

log = logging.getLogger("durably.store")

_STOP = object()


class Rejected:
    """What ``many`` returns for an operation that changed nothing and fails with ``exc``."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException):
        self.exc = exc


class BatchWriter:
    def __init__(
        self,
        *,
        name: str,
        connect: Callable[[], Any],
        begin: Callable[[Any], Any],
        commit: Callable[[Any], None],
        rollback: Callable[[Any], None],
        savepoint: Callable[[Any, str], None],
        is_retryable: Callable[[BaseException], bool],
        translate: Callable[[BaseException], BaseException],
        on_commit: Callable[[Any], None] | None = None,
        before_commit: Callable[[Any], None] | None = None,
        max_batch: int = 512,
    ):
        self._connect, self._begin = connect, begin
        self._commit, self._rollback, self._savepoint = commit, rollback, savepoint
        self._is_retryable, self._translate = is_retryable, translate
        self._on_commit = on_commit
        self._before_commit = before_commit
        self._max_batch = max_batch
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.deadline: float | None = None  # the earliest deadline of the operations being run
        self._thread = threading.Thread(target=self._run, name=f"durably-{name}-writer", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def submit(self, fn: Callable[..., Any], *args: Any, deadline: float | None = None) -> cf.Future:
        """Queue ``fn(tx, *args)``; with ``deadline`` (time.monotonic), it fails rather than
        commit after that time."""
        fut: cf.Future = cf.Future()
        if not self._thread.is_alive():
            fut.set_exception(self._translate(RuntimeError("the store is closed")))
            return fut
        self._q.put((fut, fn, args, deadline))
        return fut

    def close(self) -> None:
        if self._thread.is_alive():
            self._q.put(_STOP)
            self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:  # noqa: BLE001 - reported to the constructor
            self._error = self._translate(exc)
            self._ready.set()
            return
        self._ready.set()
        stop = False
        while not stop:
            item = self._q.get()
            if item is _STOP:
                break
            batch = [item]
            while len(batch) < self._max_batch:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                batch.append(nxt)
            batch = [b for b in batch if b[0].set_running_or_notify_cancel()]
            if batch:
                conn = self._run_batch(conn, batch)
        try:
            conn.close()
        except Exception:  # noqa: BLE001
            pass

    def _run_batch(self, conn: Any, batch: list) -> Any:
        # No savepoint per operation (two more statements each): an operation that fails
        # rolls the whole transaction back, and the batch runs again without it. Operations
        # are functions of the database state, so the survivors end exactly as if the failed
        # one had been rolled back alone. Failures are rare; the common batch pays nothing.
        failed: dict[int, BaseException] = {}
        singly: set = set()  # functions whose ``many`` failed in this batch: their ops run one by one
        delay = 0.005
        attempt = 0
        last_error: BaseException | None = None  # the last retryable failure: why deadlines passed
        timed = any(b[3] is not None for b in batch)
        while True:
            expired = self._expire(batch, failed, last_error) if timed else False
            live = [i for i in range(len(batch)) if i not in failed]
            deadlines = [batch[i][3] for i in live if batch[i][3] is not None] if timed else None
            self.deadline = min(deadlines) if deadlines else None
            results: dict[int, Any] = {}
            tx = None
            try:
                if live:
                    tx = self._begin(conn)
                    for group in _groups(batch, live, singly):
                        if len(group) > 1:
                            fn = batch[group[0]][1]
                            try:
                                outs = fn.many(tx, [batch[i][2] for i in group])
                            except Exception as exc:  # noqa: BLE001 - isolated by running them one by one
                                if self._is_retryable(exc):
                                    raise
                                singly.add(fn)
                                raise _OpFailed() from None
                            results.update(zip(group, outs))
                            continue
                        i = group[0]
                        _fut, fn, args, _deadline = batch[i]
                        try:
                            results[i] = fn(tx, *args)
                        except Exception as exc:  # noqa: BLE001 - handed to the caller
                            if self._is_retryable(exc):
                                raise
                            failed[i] = exc
                            raise _OpFailed() from None
                    if self._before_commit is not None:
                        self._before_commit(tx)
                    if timed and self._expire(batch, failed, last_error, live):
                        raise _OpFailed()  # not committed for a caller who stopped waiting: again without it
                    self._commit(conn)
            except _OpFailed:
                self._safe_rollback(conn)
                continue
            except Exception as exc:  # noqa: BLE001
                self._safe_rollback(conn)
                if self._is_retryable(exc) and attempt < 59:
                    last_error = exc
                    if not expired:  # an attempt cut short by a deadline is not counted
                        attempt += 1
                    time.sleep(delay)
                    delay = min(delay * 2, 0.25)
                    continue
                err = self._translate(exc)
                for i, (fut, _fn, _args, _dl) in enumerate(batch):
                    value = failed.get(i)
                    if value is None:
                        fut.set_exception(err)
                    else:
                        fut.set_exception(value if not _is_driver_error(value) else self._translate(value))
                log.debug("store transaction failed: %s", err)  # each caller reports it
                return conn
            self.deadline = None
            for i, (fut, _fn, _args, _dl) in enumerate(batch):
                value = failed.get(i)
                if value is None:
                    res = results[i]
                    if isinstance(res, Rejected):
                        fut.set_exception(res.exc)
                    else:
                        fut.set_result(res)
                else:
                    fut.set_exception(value if not _is_driver_error(value) else self._translate(value))
            if self._on_commit is not None and tx is not None:
                try:
                    self._on_commit(tx)
                except Exception:  # noqa: BLE001
                    log.exception("on_commit hook failed")
            return conn

    def _expire(self, batch: list, failed: dict[int, BaseException], last_error: BaseException | None,
                among: list[int] | None = None) -> bool:
        """Fail the operations whose deadline has passed; True if any did just now."""
        now = time.monotonic()
        hit = False
        for i in (range(len(batch)) if among is None else among):
            deadline = batch[i][3]
            if deadline is not None and i not in failed and now >= deadline:
                why = f": {self._translate(last_error)}" if last_error is not None else ""
                failed[i] = StoreUnavailable(f"the store did not answer in time; gave up{why}")
                hit = True
        return hit

    def _safe_rollback(self, conn: Any) -> None:
        try:
            self._rollback(conn)
        except Exception:  # noqa: BLE001
            pass


def _groups(batch: list, live: list[int], singly: set) -> list[list[int]]:
    """The live operations of a batch in order, those of one ``many``-capable function
    gathered at the place of the first of them."""
    out: list[list[int]] = []
    where: dict[Any, list[int]] = {}
    for i in live:
        fn = batch[i][1]
        if getattr(fn, "many", None) is None or fn in singly:
            out.append([i])
            continue
        group = where.get(fn)
        if group is None:
            group = where[fn] = []
            out.append(group)
        group.append(i)
    return out


class _OpFailed(Exception):
    """One operation of a batch failed: roll back and run the others again."""


def _is_driver_error(exc: BaseException) -> bool:
    from ..errors import DurablyError

    if isinstance(exc, (UnicodeEncodeError, OverflowError)):  # a value the driver could not bind
        return True
    return not isinstance(exc, DurablyError) and type(exc).__module__.split(".")[0] in ("sqlite3", "psycopg")
