"""The SQLite store: one file, WAL, ``BEGIN IMMEDIATE`` transactions, group commit.

All writes of a process go through one connection owned by a writer thread (see
``writer.py``), so concurrent checkpoints share commits. Several processes may share the
file: ``BEGIN IMMEDIATE`` serializes their transactions and ``busy_timeout`` makes them
wait their turn. Wake-ups: in-process after each commit, and across processes by
watching ``PRAGMA data_version``.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import os
import re
import sqlite3
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from ..errors import InvalidInput, StoreUnavailable, UnstorableInput
from . import ops
from .base import current_deadline
from .queries import load, migrations
from .sqlstore import SqlStore, StatusStaging
from .writer import BatchWriter

BUSY_TIMEOUT_MS = 30_000

log = logging.getLogger("durably.store")


def _packed(q: dict[str, str]) -> dict[str, tuple[str, ...]]:
    """The queries whose rows come back as one JSON value: a ``SELECT json_group_array(...)
    AS packed``, then the statements that write what it read (see ``SqliteTx.all``)."""
    out = {}
    for name, sql in q.items():
        statements = tuple(s.strip() for s in re.split(r";\s*\n", sql) if s.strip())
        if " AS packed" in statements[0]:
            out[name] = statements
    return out


_PACKED = _packed(load("sqlite"))


class SqliteTx(StatusStaging):
    """One transaction on a connection.

    Python's sqlite3 lets go of the GIL around every step of a statement, one per row. In
    the writer thread, each step then waits to take the GIL back from the event loop's
    thread, up to the interpreter's switch interval (5 ms) when that thread is busy: a claim
    reading 60 rows could wait longer than the commit's fsync. The queries the writer runs
    on every batch return their rows as one JSON value (``AS packed``): one step.
    """

    __slots__ = ("conn", "q", "env", "now", "mono", "status_in_store", "woke", "ended", "_status", "handed", "published")

    def __init__(self, conn: "sqlite3.Connection | _Rows", q: dict, env: str, status_in_store: bool,
                 clock: Callable[[], float] = time.time):
        self.conn, self.q, self.env = conn, q, env
        self.mono = time.monotonic()  # read just before ``now``: a clock carried forward from it never lags
        self.now = clock()
        self.status_in_store = status_in_store
        self.woke = False
        self.ended = False  # a run ended: result() waiters are told after the commit
        self._status: dict[tuple[str, str], Callable[[], dict]] | None = None
        self.handed: list | None = None  # runs claimed for idle in-process workers: delivered after commit
        self.published: list[tuple[str, str, dict]] | None = None  # blobs for a sink outside the store, after commit

    def one(self, name: str, /, **params: Any) -> Any:
        if name in _PACKED:
            return next(iter(self.all(name, **params)), None)
        return self.conn.execute(self.q[name], params).fetchone()

    def all(self, name: str, /, **params: Any) -> list[Any]:
        statements = _PACKED.get(name)
        if statements is None:
            return self.conn.execute(self.q[name], params).fetchall()
        rows = json.loads(self.conn.execute(statements[0], params).fetchone()[0])
        for sql in statements[1:]:
            self.conn.execute(sql, params)
        return rows

    def exec(self, name: str, /, **params: Any) -> int:
        if name in _PACKED:
            return len(self.all(name, **params))
        return self.conn.execute(self.q[name], params).rowcount

    def all_many(self, calls: list[tuple[str, dict]]) -> list[list[Any]]:
        """Several statements in order; their rows (one round trip each costs nothing here)."""
        return [self.all(name, **params) for name, params in calls]

    def exec_at_commit(self, name: str, /, **params: Any) -> None:
        """A write whose outcome nobody reads, made just before the commit."""
        self.conn.execute(self.q[name], params)


class _Rows:
    """A caller's connection, answering rows by column name as the store's own connections do
    (its ``row_factory`` left as the caller set it)."""

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        cur = self.conn.cursor()
        cur.row_factory = sqlite3.Row
        return cur.execute(sql, params)


T = TypeVar("T")


def _until_unlocked(attempt: Callable[[], T], pause: float, max_pause: float,
                    deadline: Callable[[float], float]) -> T:
    """``attempt()``, tried again while another connection holds the lock ("database is
    locked" or "busy"), after a pause doubling from ``pause`` to ``max_pause``; it gives up
    at ``deadline(now)``, computed at the first refusal (nothing to compute when none)."""
    end = None
    while True:
        try:
            return attempt()
        except sqlite3.OperationalError as exc:
            if not _retryable(exc):
                raise
            now = time.monotonic()
            if end is None:
                end = deadline(now)
            if now >= end:
                raise
            time.sleep(pause)
            pause = min(pause * 2, max_pause)


def _busy_timeout(now: float) -> float:
    return now + BUSY_TIMEOUT_MS / 1000


def _journal_wal(conn: sqlite3.Connection) -> str:
    """``PRAGMA journal_mode = WAL``, waiting out another connection that is creating or
    migrating the same new file: SQLite answers "database is locked" there at once, without
    its busy handler (two processes, or two apps, opening a fresh store together)."""
    return _until_unlocked(lambda: str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]), 0.001, 0.05,
                           _busy_timeout)


def path_from_url(url: str) -> str:
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
    elif url.startswith("sqlite://"):
        path = url[len("sqlite://"):]
    else:
        raise StoreUnavailable(f"not a SQLite URL: {url!r} (use sqlite:///path/to/file.db)")
    if not path or path == ":memory:":
        raise StoreUnavailable("SQLite needs a file path (an in-memory database cannot be shared between connections)")
    return path


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


def unstorable(exc: BaseException) -> UnstorableInput | None:
    """The input error that ``exc`` means, if the value caused it (never an outage): text that
    is not valid Unicode, an integer beyond 64 bits, a string or blob over SQLite's limit."""
    if isinstance(exc, UnicodeEncodeError):
        return UnstorableInput("the SQLite store cannot hold this input: text that is not valid Unicode "
                               f"({exc.reason}: {exc.object[exc.start:exc.end]!r})")
    if isinstance(exc, OverflowError):
        return UnstorableInput(f"the SQLite store cannot hold this input: a number out of range ({exc})")
    if isinstance(exc, sqlite3.DataError) or (isinstance(exc, sqlite3.Error) and "too big" in str(exc)):
        return UnstorableInput(f"the SQLite store cannot hold this input: {exc}")
    return None


def _translate(exc: BaseException) -> BaseException:
    bad = unstorable(exc)
    if bad is not None:
        return bad
    if isinstance(exc, sqlite3.Error) or isinstance(exc, RuntimeError):
        return StoreUnavailable(f"SQLite store error: {exc}")
    return exc


class SqliteStore(SqlStore):
    dialect = "sqlite"

    def __init__(self, url: str, *, env: str = "dev", synchronous: str = "full", status_in_store: bool = True,
                 create_dirs: bool = True, clock: Callable[[], float] = time.time):
        self.url = url
        self.env = env
        self.path = path_from_url(url)
        self.synchronous = synchronous
        self.status_in_store = status_in_store
        self.status_sink: Any = None  # where blobs go when the store does not keep them (Redis)
        self._init_wakeups()
        self.clock = clock  # the store's clock: this host's, unless a test controls it
        if create_dirs:
            d = os.path.dirname(os.path.abspath(self.path))
            try:
                os.makedirs(d, exist_ok=True)
            except OSError as exc:
                raise StoreUnavailable(f"cannot create the directory of the SQLite store {self.path!r}: {exc}") from None
        self.q = load("sqlite")
        self._local = threading.local()
        self._readers = cf.ThreadPoolExecutor(max_workers=4, thread_name_prefix="durably-sqlite-read")
        self._watch_thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._writer = BatchWriter(
            name="sqlite", connect=self._connect_writer, begin=self._begin,
            commit=lambda c: c.execute("COMMIT"), rollback=lambda c: c.execute("ROLLBACK") if c.in_transaction else None,
            savepoint=lambda c, s: c.execute(s), is_retryable=_retryable, translate=_translate,
            on_commit=self._after_commit, before_commit=self._before_commit,
        )

    # --- connections --------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=BUSY_TIMEOUT_MS / 1000)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = _journal_wal(conn)
            if mode.lower() != "wal":
                raise StoreUnavailable(f"SQLite store {self.path!r}: cannot enable WAL (journal_mode is {mode})")
            conn.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
            conn.execute("PRAGMA foreign_keys = OFF")
            conn.execute("PRAGMA temp_store = MEMORY")
            return conn
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open the SQLite store {self.path!r}: {exc}") from None

    def _connect_writer(self) -> sqlite3.Connection:
        conn = self._connect()
        # Opening took the busy timeout (WAL set-up may wait for another process); from now
        # on ``_begin`` waits for the write lock itself, in short steps.
        conn.execute("PRAGMA busy_timeout = 0")
        return conn

    def _begin(self, conn: sqlite3.Connection) -> SqliteTx:
        # Another process holds the write lock: try again after a short pause. SQLite's own
        # busy handler sleeps 1, 2, 5, 10 ... 100 ms between tries, far longer than a group
        # commit holds the lock, so two worker processes would spend most of their time
        # asleep; here the pause starts at 50 us and grows to 2 ms, up to the busy timeout.
        # The wait ends at the busy timeout, or sooner at the earliest deadline of the
        # operations waiting (a dispatch gives up after DURABLY_DISPATCH_TIMEOUT).
        _until_unlocked(lambda: conn.execute("BEGIN IMMEDIATE"), 0.00005, 0.002, self._begin_deadline)
        return SqliteTx(conn, self.q, self.env, self.status_in_store, self.clock)

    def _begin_deadline(self, now: float) -> float:
        wanted = self._writer.deadline
        return min(_busy_timeout(now), wanted) if wanted is not None else _busy_timeout(now)

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _write(self, fn: Callable[..., Any], *args: Any) -> cf.Future:
        return self._writer.submit(fn, *args, deadline=current_deadline())

    def _read(self, fn: Callable[..., Any], *args: Any) -> cf.Future:
        def run() -> Any:
            conn = self._reader()
            tx = SqliteTx(conn, self.q, self.env, self.status_in_store, self.clock)
            try:
                conn.execute("BEGIN")
                try:
                    return fn(tx, *args)
                finally:
                    conn.execute("COMMIT")
            except (sqlite3.Error, UnicodeEncodeError, OverflowError) as exc:
                raise _translate(exc) from None

        return self._submit_read(run)

    # --- wake-ups -----------------------------------------------------------------------

    def _savepoint(self, tx: SqliteTx, statement: str) -> None:
        tx.conn.execute(statement)

    def _is_retryable(self, exc: BaseException) -> bool:
        return _retryable(exc)

    def _start_wakeups(self) -> None:
        self._watch_thread = threading.Thread(target=self._watch, name="durably-sqlite-watch", daemon=True)
        self._watch_thread.start()

    def _watch(self) -> None:
        # Another process's commit changes data_version on our connection: a cheap way to
        # learn of new work without re-running the claim query.
        conn = self._connect()
        last = conn.execute("PRAGMA data_version").fetchone()[0]
        while not self._closed.wait(0.002):
            try:
                v = conn.execute("PRAGMA data_version").fetchone()[0]
            except sqlite3.Error:
                continue
            if v != last:
                last = v
                self._notify()
                self._notify_ended()
        conn.close()

    # --- the caller's transaction ------------------------------------------------------

    def ingest_in(self, connection: Any, events: list[dict], register: tuple[str, list[dict]] | None = None) -> Any:
        """``ingest`` in the caller's transaction on ``connection``, a ``sqlite3.Connection``
        to this store's file. Another process's workers see the commit through the file's
        change counter, this process's through their watch on it: no signal is needed."""
        if not isinstance(connection, sqlite3.Connection):
            raise InvalidInput(f"connection=: the SQLite store takes a sqlite3.Connection to {self.path!r}, "
                               f"got {type(connection).__name__}")
        rows = connection.execute("PRAGMA database_list").fetchall()
        main = next((r[2] for r in rows if r[1] == "main"), "")
        try:
            same = bool(main) and os.path.samefile(main, self.path)
        except OSError:
            same = False
        if not same:
            raise InvalidInput(f"connection=: that connection is to {main or 'an in-memory database'!r}, not to "
                               f"the store's file {self.path!r}: its transaction cannot hold durably's writes")
        if not connection.in_transaction:
            if connection.isolation_level is None:
                raise InvalidInput("connection=: the connection is in autocommit mode and has no open transaction; "
                                   "BEGIN one (or use sqlite3's default mode) and commit it after the send")
            # What sqlite3's default mode would do at the first write, but IMMEDIATE: ingest reads
            # (the registry, the schemas) before it writes, and a deferred transaction whose
            # read snapshot another writer overtook cannot upgrade (SQLITE_BUSY at once, no wait).
            connection.execute("BEGIN IMMEDIATE")
        tx = SqliteTx(_Rows(connection), self.q, self.env, self.status_in_store, self.clock)
        try:
            if register is not None:  # functions not in the registry yet: in this transaction too
                ops.register(tx, *register)
            result = ops.ingest(tx, events)
            tx.flush_status()  # blobs kept in the store: written in the caller's transaction
        except Exception as exc:  # noqa: BLE001 - as the store's own transactions report it
            raise _translate(exc) from exc
        # Blobs kept in Redis (tx.published) would describe runs that a rollback may undo: a
        # run's blob is written when it starts.
        return result

    async def ingest_in_async(self, connection: Any, events: list[dict], register: tuple[str, list[dict]] | None = None) -> Any:
        raise InvalidInput("send_async(connection=...): the SQLite store takes a sqlite3.Connection, "
                           "with app.send(..., connection=conn)")

    # --- lifecycle ----------------------------------------------------------------------

    def migrate(self) -> cf.Future:
        # Read first: a store that is up to date is opened without taking the write lock, so an
        # app can open it while a caller's transaction on the same file holds that lock
        # (app.send(..., connection=conn) as the app's first use of its store).
        try:
            done = self._read(lambda tx: [r[0] for r in tx.conn.execute("SELECT version FROM durably_migrations")]
                              ).result()
        except Exception:  # noqa: BLE001 - a new file, or an unreadable one: the migration says which
            done = []
        if {v for v, _, _ in migrations("sqlite")} <= set(done):
            fut: cf.Future = cf.Future()
            fut.set_result([])
            return fut
        return self._write(_migrate_txn)

    def ping(self) -> cf.Future:
        return self._read(lambda tx: tx.conn.execute("SELECT 1").fetchone()[0] == 1)

    def initialized(self) -> cf.Future:
        """Whether this file holds a durably store (its migrations table), read without writing."""
        return self._read(lambda tx: tx.conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'durably_migrations'").fetchone()[0] > 0)

    def close(self) -> None:
        self._closed.set()
        self._writer.close()
        self._readers.shutdown(wait=True, cancel_futures=True)
        if self.status_sink is not None:
            self.status_sink.close()

    # --- verbs (each one transaction) ---------------------------------------------------

    def now(self) -> cf.Future:
        fut: cf.Future = cf.Future()
        fut.set_result(self.clock())  # one host: the store's clock is this host's clock
        return fut

def _migrate_txn(tx: SqliteTx) -> list[int]:
    conn = tx.conn
    conn.execute(
        "CREATE TABLE IF NOT EXISTS durably_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
    )
    done = {r[0] for r in conn.execute("SELECT version FROM durably_migrations")}
    applied = []
    for version, name, sql in migrations("sqlite"):
        if version in done:
            continue
        for stmt in _statements(sql):
            conn.execute(stmt)
        conn.execute("INSERT INTO durably_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                     (version, name, time.time()))
        applied.append(version)
    return applied


def _statements(script: str) -> list[str]:
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


if TYPE_CHECKING:  # both stores implement every protocol of ``base`` (checked by mypy)
    from .base import StoreBackend

    _implements: type[StoreBackend] = SqliteStore
