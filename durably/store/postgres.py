"""The PostgreSQL store: many processes on many hosts share one database.

The transactional bodies are the same as SQLite's (``ops.py``, ``reads.py``) and so is the
group commit (``writer.py``): one thread per process owns the write connection, and the
operations queued while a transaction commits share the next one. What is PostgreSQL's
own lives here and in ``sql/postgres/``:

* ``tx.now`` is the database server's clock, read inside the transaction: leases, timers
  and cron never depend on a worker's clock.
* Claims lock their candidates with ``FOR UPDATE SKIP LOCKED``; concurrency slots are
  counted under an advisory lock (see ``durably_slot_count``).
* A transaction that made runs ready sends ``NOTIFY`` on a channel of its (schema, env);
  it is delivered on commit to every process listening, which claims at once.
* Control statements (BEGIN, NOTIFY, COMMIT, and savepoints if the writer uses them) are
  buffered and sent with the next statement: BEGIN and reading the clock share one round
  trip, NOTIFY and COMMIT another.
* The tables live in one schema (``DURABLY_SCHEMA``, or ``?schema=`` on the URL), set as
  the ``search_path`` of every connection; migrations are tracked in
  ``<schema>.durably_migrations`` and applied under an advisory lock.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import logging
import math
import re
import threading
import time
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pgerr
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool

from ..errors import ConfigError, DurablyError, StoreUnavailable, UnstorableInput
from .base import current_deadline
from .queries import load, migrations
from .sqlstore import SqlStore, StatusStaging
from .writer import BatchWriter

log = logging.getLogger("durably.store")

_SCHEMA_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_NOW_SQL = "SELECT CAST(extract(epoch from clock_timestamp()) AS double precision)"
_IDLE = pq.TransactionStatus.IDLE


# --- rows ------------------------------------------------------------------------------------


class Row:
    """A result row readable as ``row["col"]``, ``row[0]`` and ``dict(row)`` (like sqlite3.Row)."""

    __slots__ = ("_v", "_k")

    def __init__(self, values: tuple, keys: dict[str, int]):
        self._v, self._k = values, keys

    def __getitem__(self, i: Any) -> Any:
        if type(i) is str:
            return self._v[self._k[i]]
        return self._v[i]

    def keys(self) -> list[str]:
        return list(self._k)

    def get(self, key: str, default: Any = None) -> Any:
        i = self._k.get(key)
        return default if i is None else self._v[i]

    def __iter__(self):
        return iter(self._v)

    def __len__(self) -> int:
        return len(self._v)

    def __eq__(self, other: object) -> bool:
        return tuple(self._v) == (tuple(other) if isinstance(other, (Row, tuple)) else other)

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._k, self._v))!r})"


def row_factory(cursor: Any) -> Callable[[Any], Row]:
    desc = cursor.description
    keys = {d.name: i for i, d in enumerate(desc)} if desc else {}

    def make(values: Any) -> Row:
        return Row(values, keys)

    return make


# --- URLs and errors -------------------------------------------------------------------------


def split_url(url: str, schema: str | None = None) -> tuple[str, str]:
    """``(libpq conninfo, schema)`` of a ``postgresql://`` URL.

    A ``schema`` query parameter on the URL (not a libpq option) is taken out and wins
    over the ``schema`` argument (``DURABLY_SCHEMA``); the default schema is ``durably``.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"not a PostgreSQL URL: {url!r} (use postgresql://user@host:5432/db)")
    query = parse_qsl(parts.query, keep_blank_values=True)
    from_url = [v for k, v in query if k == "schema"]
    rest = [(k, v) for k, v in query if k != "schema"]
    schema = (from_url[-1] if from_url else None) or schema or "durably"
    if not _SCHEMA_RE.match(schema):
        raise ConfigError(f"invalid schema name {schema!r}: use letters, digits and '_' (at most 63), "
                          "not starting with a digit")
    clean = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(rest), parts.fragment))
    return clean, schema


def _conninfo(url: str, schema: str, connect_timeout: float = 2.0) -> str:
    """The libpq conninfo of every connection of the store: the schema as its search_path, a
    connect timeout (``connect_timeout``, whole seconds, at least libpq's minimum of 2; the
    URL's own wins) and TCP keepalives, so a store that stops answering (a host gone, a
    black-holed network) is noticed in seconds, not after the kernel's two hours."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"invalid DURABLY_DATABASE_URL: {exc}") from None
    options = str(params.get("options") or "")
    options = (options + f" -c search_path={schema}").strip()
    extra: dict[str, Any] = {"options": options}
    if "connect_timeout" not in params:
        extra["connect_timeout"] = max(2, math.ceil(connect_timeout))
    if "application_name" not in params:
        extra["application_name"] = f"durably {schema}"  # which schema a server connection serves
    # Keepalives after 5 s idle, every 2 s, 3 unanswered: a dead peer is noticed within about
    # 11 s; data left unacknowledged for 10 s (tcp_user_timeout) also ends the connection.
    for k, v in KEEPALIVES.items():
        params.setdefault(k, v)
        extra[k] = params[k]
    return make_conninfo(url, **extra)


KEEPALIVES = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3,
              "tcp_user_timeout": 10_000}


def _safe_url(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        cred, host = netloc.rsplit("@", 1)
        user = cred.split(":", 1)[0]
        netloc = f"{user}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


_RETRY_STATES = {"40001", "40P01", "55P03", "57P01", "57P02", "57P03"}


def _retryable(exc: BaseException) -> bool:
    """Serialization failures, deadlocks and lost connections: the whole batch is run again."""
    if isinstance(exc, _AmbiguousCommit):
        return False
    if not isinstance(exc, psycopg.Error):
        return False
    state = getattr(exc, "sqlstate", None)
    if state is None:
        # Raised by the client, not the server: the connection is gone.
        return isinstance(exc, psycopg.OperationalError)
    return state in _RETRY_STATES or state.startswith("08")


class _AmbiguousCommit(StoreUnavailable):
    """The connection was lost while COMMIT was in flight: the outcome is unknown, so the
    batch is not run again (it may have been applied)."""


# SQLSTATE classes of errors caused by a value, not by the store: 22 data exception (22021
# a NUL character, 22003 a number out of range, 22P05 \u0000 in JSON, ...) and 54 program
# limit exceeded (54000: a value too large for an index).
_DATA_CLASSES = ("22", "54")


def unstorable(exc: BaseException) -> UnstorableInput | None:
    """The input error that ``exc`` means, if it is one the value caused (never an outage)."""
    if isinstance(exc, UnicodeEncodeError):
        return UnstorableInput("the PostgreSQL store cannot hold this input: text that is not valid Unicode "
                               f"({exc.reason}: {exc.object[exc.start:exc.end]!r})")
    if isinstance(exc, OverflowError):
        return UnstorableInput(f"the PostgreSQL store cannot hold this input: a number out of range ({exc})")
    if not isinstance(exc, psycopg.Error):
        return None
    state = getattr(exc, "sqlstate", None) or ""
    if isinstance(exc, psycopg.DataError) or state[:2] in _DATA_CLASSES:
        text = _first_line(exc)
        if "NUL" in text or state == "22021" or (state == "22P05" and "0000" in text):
            what = "a NUL character"
        elif state == "22003":
            what = "a number out of range"
        elif state[:2] == "54":
            what = "a value too large"
        else:
            what = "a value it cannot store"
        return UnstorableInput(f"the PostgreSQL store cannot hold this input, {what}: {text}")
    return None


def _translate(exc: BaseException) -> BaseException:
    if isinstance(exc, DurablyError):
        return exc
    bad = unstorable(exc)
    if bad is not None:
        return bad
    if isinstance(exc, pgerr.UndefinedTable) or isinstance(exc, pgerr.UndefinedFunction):
        return StoreUnavailable(f"PostgreSQL store: {_first_line(exc)} (is the schema migrated? run `durably migrate`)")
    if isinstance(exc, psycopg.IntegrityError):
        diag = getattr(exc, "diag", None)
        name = getattr(diag, "constraint_name", None) if diag else None
        return StoreUnavailable(f"PostgreSQL store rejected a write ({name or 'constraint'}): {_first_line(exc)}")
    if isinstance(exc, psycopg.Error) or isinstance(exc, RuntimeError):
        return StoreUnavailable(f"PostgreSQL store error: {_first_line(exc)}")
    return exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- connections and transactions ------------------------------------------------------------


class _Conn:
    """A write connection that reconnects, with a buffer of control statements.

    Control statements are queued and sent in one simple-protocol message right before the
    next parameterized statement (or at commit): BEGIN + SAVEPOINT + reading the clock cost
    one round trip, RELEASE of one operation travels with the SAVEPOINT of the next.
    """

    def __init__(self, conninfo: str):
        self.conninfo = conninfo
        self.raw: psycopg.Connection | None = None
        self.cur: Any = None
        self.pending: list[str] = []
        self.at_commit: list[tuple[str, dict]] = []  # parameterized writes sent with the COMMIT
        self.backend_pid: int | None = None
        self.tx: PgTx | None = None
        self.ensure()

    @classmethod
    def wrap(cls, raw: psycopg.Connection) -> "_Conn":
        """A pooled (read) connection with the same statement buffer."""
        c = cls.__new__(cls)
        c.conninfo, c.raw, c.cur, c.pending, c.backend_pid, c.tx = "", raw, raw.cursor(row_factory=row_factory), [], None, None
        c.at_commit = []
        return c

    def ensure(self) -> None:
        raw = self.raw
        if raw is not None and not raw.closed and not raw.broken:
            return
        if raw is not None:
            try:
                raw.close()
            except Exception:  # noqa: BLE001
                pass
        self.raw = None
        raw = psycopg.connect(self.conninfo, autocommit=True)
        self.raw = raw
        self.cur = raw.cursor(row_factory=row_factory)
        self.backend_pid = raw.info.backend_pid
        self.pending = []
        self.at_commit = []

    def flush(self, then: str | None = None) -> Any:
        """Send the queued control statements (and ``then``); returns the cursor."""
        stmts = self.pending
        if then is not None:
            stmts.append(then)
        if not stmts:
            return self.cur
        self.pending = []
        self.cur.execute("; ".join(stmts))
        if then is not None:
            while self.cur.nextset():  # the last result is ``then``'s
                pass
        return self.cur

    def pipeline(self, statements: list[tuple[str, dict | None]]) -> list[Any]:
        """The queued control statements, then ``statements``, in one round trip (pipeline
        mode); a cursor per statement, holding its rows."""
        curs = []
        raw = self.live()
        with raw.pipeline():
            pending, self.pending = self.pending, []
            for stmt in pending:
                self.cur.execute(stmt)
            for sql, params in statements:
                cur = raw.cursor(row_factory=row_factory)
                cur.execute(sql, params)
                curs.append(cur)
        return curs

    def live(self) -> psycopg.Connection:
        """The open connection: a statement runs only after ``ensure`` (or ``wrap``) set it."""
        raw = self.raw
        assert raw is not None, "no connection: ensure() failed or was not called"
        return raw

    def close(self) -> None:
        if self.raw is not None:
            self.raw.close()


# The payload of a commit's NOTIFY, by (runs became ready, runs ended): workers listen for the
# first, result() waiters for the second.
_PAYLOADS = {(True, False): "ready", (False, True): "ended", (True, True): "ready+ended"}

class PgTx(StatusStaging):
    """An open transaction: named statements, the store's clock, the env."""

    __slots__ = ("c", "q", "env", "_now", "_mono", "status_in_store", "woke", "ended", "_status", "handed", "published")

    def __init__(self, c: _Conn, q: dict, env: str, status_in_store: bool, now: float | None = None):
        self.c, self.q, self.env = c, q, env
        self._now = now
        self._mono = time.monotonic() if now is not None else None
        self.status_in_store = status_in_store
        self.woke = False
        self.ended = False  # a run ended: result() waiters are told after the commit
        self._status: dict[tuple[str, str], Callable[[], dict]] | None = None
        self.handed: list | None = None  # runs claimed for idle in-process workers: delivered after commit
        self.published: list[tuple[str, str, dict]] | None = None  # blobs for a sink outside the store, after commit

    def conn(self) -> psycopg.Connection:
        return self.c.live()

    @property
    def now(self) -> float:
        if self._now is None:
            self._mono = time.monotonic()  # read just before the server's clock: see ``mono``
            self._now = float(self.c.flush(_NOW_SQL).fetchone()[0])
        return self._now

    @property
    def mono(self) -> float:
        """This host's monotonic clock just before ``now`` was read: a clock carried forward
        from (now, mono) never runs behind the server's, so no delay computed from it ends early."""
        self.now  # noqa: B018 - reads the clock (and mono) if not done yet
        assert self._mono is not None  # set with _now, by __init__ or by now
        return self._mono

    def _run(self, name: str, params: dict) -> Any:
        c = self.c
        if c.pending:
            c.flush()
        c.cur.execute(self.q[name], params)
        return c.cur

    def one(self, name: str, /, **params: Any) -> Any:
        return self._run(name, params).fetchone()

    def all(self, name: str, /, **params: Any) -> list[Any]:
        return self._run(name, params).fetchall()

    def exec(self, name: str, /, **params: Any) -> int:
        return self._run(name, params).rowcount

    def all_many(self, calls: list[tuple[str, dict]]) -> list[list[Any]]:
        """Several statements in order, sent together (one round trip, pipeline mode) with
        any control statements still queued; their rows. A statement must not depend on the
        rows of an earlier one, only on its effects."""
        return [cur.fetchall() for cur in self.c.pipeline([(self.q[name], params) for name, params in calls])]

    def exec_at_commit(self, name: str, /, **params: Any) -> None:
        """A write whose outcome nobody reads: sent with the COMMIT, in the same round trip."""
        self.c.at_commit.append((self.q[name], params))

    def script(self, sql: str) -> None:
        """Run a parameterless script (several statements) in this transaction."""
        self.c.flush()
        self.c.cur.execute(sql)


# --- the store -------------------------------------------------------------------------------


class PostgresStore(SqlStore):
    dialect = "postgres"

    def __init__(self, url: str, *, env: str = "dev", schema: str | None = None, status_in_store: bool = True,
                 readers: int = 4, connect_timeout: float = 2.0):
        clean, self.schema = split_url(url, schema)
        self.url = _safe_url(clean)
        self.env = env
        self.status_in_store = status_in_store
        self.status_sink: Any = None  # where blobs go when the store does not keep them (Redis)
        self._init_wakeups()
        self.conninfo = _conninfo(clean, self.schema, connect_timeout)
        self.q = load("postgres", "pyformat")
        digest = hashlib.sha1(f"{self.schema}\0{env}".encode()).hexdigest()[:20]
        self.channel = f"durably_{digest}"
        self._closed = threading.Event()
        self._listen_thread: threading.Thread | None = None
        self._listen_conn: psycopg.Connection | None = None
        self._wconn: _Conn | None = None
        self._ident: tuple | None = None  # (database, server start): what ingest_in compares
        self._writer = BatchWriter(
            name="postgres", connect=self._connect, begin=self._begin, commit=self._commit,
            rollback=self._rollback, savepoint=self._savepoint, is_retryable=_retryable, translate=self._translate,
            on_commit=self._after_commit, before_commit=self._before_commit,
        )
        self._pool = ConnectionPool(self.conninfo, min_size=1, max_size=readers, open=False,
                                    kwargs={"autocommit": True}, name="durably-read", timeout=15.0,
                                    reconnect_timeout=30.0)
        try:
            self._pool.open(wait=True, timeout=10.0)
        except Exception as exc:  # noqa: BLE001
            self._writer.close()
            raise StoreUnavailable(f"cannot open the PostgreSQL store {self.url}: {_first_line(exc)}") from None
        self._readers = cf.ThreadPoolExecutor(max_workers=readers, thread_name_prefix="durably-pg-read")

    # --- connections --------------------------------------------------------------------

    def _translate(self, exc: BaseException) -> BaseException:
        if isinstance(exc, psycopg.OperationalError) and getattr(exc, "sqlstate", None) is None:
            return StoreUnavailable(f"cannot reach the PostgreSQL store {self.url}: {_first_line(exc)}")
        return _translate(exc)

    def _connect(self) -> _Conn:
        try:
            c = _Conn(self.conninfo)
        except psycopg.Error as exc:
            raise StoreUnavailable(f"cannot open the PostgreSQL store {self.url}: {_first_line(exc)}") from None
        self._wconn = c
        return c

    def _begin(self, c: _Conn) -> PgTx:
        c.ensure()  # after a lost connection, the retried batch runs on a new one
        c.pending = ["BEGIN"]
        c.at_commit = []
        c.tx = PgTx(c, self.q, self.env, self.status_in_store)
        return c.tx

    def _commit(self, c: _Conn) -> None:
        tx, c.tx = c.tx, None
        writes, c.at_commit = c.at_commit, []
        if c.pending and c.pending[0] == "BEGIN" and not writes:
            c.pending = []  # BEGIN was never sent: no operation ran a statement
            return
        ending = []
        if tx is not None and (tx.woke or tx.ended):  # one NOTIFY: its payload says what happened
            ending.append(f"NOTIFY {self.channel}, '{_PAYLOADS[tx.woke, tx.ended]}'")
        ending.append("COMMIT")
        try:
            if not writes:
                c.pending.extend(ending)
                c.flush()
            else:  # queued control statements, the writes, NOTIFY and COMMIT: one round trip
                c.pipeline(writes + [(stmt, None) for stmt in ending])
        except psycopg.OperationalError as exc:
            state = getattr(exc, "sqlstate", None)
            if state is None or state.startswith("08"):  # the connection, not a statement, failed
                raise _AmbiguousCommit(f"the connection to the PostgreSQL store was lost during COMMIT; the outcome "
                                       f"of the transaction is unknown: {_first_line(exc)}") from None
            raise

    def _rollback(self, c: _Conn) -> None:
        c.pending, c.tx, c.at_commit = [], None, []
        raw = c.raw
        if raw is None or raw.closed or raw.broken:
            return
        if raw.info.transaction_status != _IDLE:
            c.cur.execute("ROLLBACK")

    def _write(self, fn: Callable[..., Any], *args: Any) -> cf.Future:
        return self._writer.submit(fn, *args, deadline=current_deadline())

    def _read(self, fn: Callable[..., Any], *args: Any) -> cf.Future:
        def once() -> Any:
            with self._pool.connection() as raw:
                c = _Conn.wrap(raw)
                # One snapshot for the whole read (a run and its steps agree).
                c.pending = ["BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"]
                tx = PgTx(c, self.q, self.env, self.status_in_store)
                try:
                    return fn(tx, *args)
                finally:
                    if c.pending:
                        c.pending = []
                    elif not raw.broken and raw.info.transaction_status != _IDLE:
                        raw.execute("ROLLBACK")

        def run() -> Any:
            for attempt in (1, 2):
                try:
                    return once()
                except DurablyError:
                    raise
                except Exception as exc:  # noqa: BLE001
                    # A pooled connection the server dropped (restart, idle timeout) fails on
                    # first use; the pool discards it, and the read runs again on a fresh one.
                    if attempt == 1 and isinstance(exc, psycopg.OperationalError) and _retryable(exc):
                        continue
                    if isinstance(exc, (psycopg.Error, UnicodeEncodeError, OverflowError)) \
                            or type(exc).__module__.startswith("psycopg_pool"):
                        raise self._translate(exc) from None
                    raise

        return self._submit_read(run)

    # --- wake-ups -----------------------------------------------------------------------

    def _savepoint(self, tx: PgTx, statement: str) -> None:
        tx.c.pending.append(statement)  # sent with the next statement: no round trip of its own

    def _is_retryable(self, exc: BaseException) -> bool:
        return _retryable(exc)

    def _start_wakeups(self) -> None:
        ready = threading.Event()
        self._listen_thread = threading.Thread(target=self._listen, args=(ready,), name="durably-pg-listen",
                                               daemon=True)
        self._listen_thread.start()
        ready.wait(10)  # LISTEN is in place before the caller claims: no wake-up lost

    def _listen(self, ready: threading.Event) -> None:
        delay = 0.1
        first = True
        while not self._closed.is_set():
            try:
                conn = psycopg.connect(self.conninfo, autocommit=True)
            except psycopg.Error as exc:
                log.warning("LISTEN connection to the PostgreSQL store failed (retrying): %s", _first_line(exc))
                ready.set()
                if self._closed.wait(delay):
                    return
                delay = min(delay * 2, 5.0)
                continue
            self._listen_conn = conn
            try:
                conn.execute(f"LISTEN {self.channel}")
                ready.set()
                delay = 0.1
                if not first:
                    self._notify()  # anything committed while we were not listening
                    self._notify_ended()
                first = False
                while not self._closed.is_set():
                    own = self._wconn.backend_pid if self._wconn is not None else None
                    for n in conn.notifies(timeout=0.5):
                        if n.pid != own:  # our own commits told our listeners already
                            if n.payload != "ended":
                                self._notify()
                            if n.payload != "ready":
                                self._notify_ended()
            except Exception as exc:  # noqa: BLE001
                if self._closed.is_set():
                    break
                log.warning("LISTEN connection to the PostgreSQL store lost (reconnecting): %s", _first_line(exc))
            finally:
                self._listen_conn = None
                try:
                    conn.close()
                except Exception:  # noqa: BLE001
                    pass

    # --- the caller's transaction (pg_caller.py) ------------------------------------

    def ingest_in(self, connection: Any, events: list[dict], register: tuple[str, list[dict]] | None = None) -> Any:
        """``ingest`` in the caller's open transaction on ``connection``, a ``psycopg.Connection``
        to this store's database (see ``pg_caller``)."""
        from . import pg_caller

        return pg_caller.ingest_in(self, connection, events, register)

    async def ingest_in_async(self, connection: Any, events: list[dict], register: tuple[str, list[dict]] | None = None) -> Any:
        from . import pg_caller

        return await pg_caller.ingest_in_async(self, connection, events, register)

    # --- lifecycle ----------------------------------------------------------------------

    def migrate(self) -> cf.Future:
        return self._write(_migrate_txn, self.schema)

    def ping(self) -> cf.Future:
        return self._read(lambda tx: tx.c.flush("SELECT 1").fetchone()[0] == 1)

    def initialized(self) -> cf.Future:
        """Whether the schema holds a durably store (its migrations table), read without writing."""
        literal = self.schema.replace("'", "''")
        sql = (f"SELECT count(*) FROM pg_tables WHERE schemaname = '{literal}' "
               "AND tablename = 'durably_migrations'")
        return self._read(lambda tx: tx.c.flush(sql).fetchone()[0] > 0)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._writer.close()
        self._readers.shutdown(wait=True, cancel_futures=True)
        if self.status_sink is not None:
            self.status_sink.close()
        self._pool.close(timeout=5.0)
        t = self._listen_thread
        if t is not None:
            t.join(timeout=2.0)

    # --- verbs (each one transaction) ---------------------------------------------------

    def now(self) -> cf.Future:
        """The database server's clock (epoch seconds): the clock of leases, timers and cron."""
        return self._read(lambda tx: float(tx.c.flush(_NOW_SQL).fetchone()[0]))



def _migrate_txn(tx: PgTx, schema: str) -> list[int]:
    c = tx.c
    # One migrator at a time per schema (several workers may start together).
    c.flush()
    c.cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"durably-migrate {schema}"])
    c.cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema])
    if c.cur.fetchone() is None:  # checked first: CREATE needs a privilege an existing schema does not
        c.cur.execute(f'CREATE SCHEMA "{schema}"')
    c.cur.execute(
        "CREATE TABLE IF NOT EXISTS durably_migrations (version integer PRIMARY KEY, name text NOT NULL, "
        "applied_at double precision NOT NULL)"
    )
    c.cur.execute("SELECT version FROM durably_migrations")
    done = {r[0] for r in c.cur.fetchall()}
    applied = []
    for version, name, sql in migrations("postgres"):
        if version in done:
            continue
        c.cur.execute(sql)  # a parameterless script: may hold several statements
        c.cur.execute("INSERT INTO durably_migrations (version, name, applied_at) VALUES (%s, %s, %s)",
                      (version, name, tx.now))
        applied.append(version)
    return applied


if TYPE_CHECKING:  # both stores implement every protocol of ``base`` (checked by mypy)
    from .base import StoreBackend

    _implements: type[StoreBackend] = PostgresStore
