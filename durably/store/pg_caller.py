"""The PostgreSQL store's writes in the caller's open transaction (``app.send(..., connection=)``).

The verb bodies are the store's own (``ops.ingest`` on a ``PgTx``), run on the caller's
connection with durably's schema first on its ``search_path`` for their duration. The NOTIFY
that wakes workers is sent in that transaction, so PostgreSQL delivers it only at the caller's
COMMIT. An async connection is driven from the same synchronous bodies through ``greenlets``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import psycopg

from ..errors import DurablyError, InvalidInput
from . import ops
from .greenlets import run_sync, wait
from .postgres import _PAYLOADS, PgTx, _Conn, _translate

if TYPE_CHECKING:
    from .postgres import PostgresStore

# Which database a connection is on: its name and its server's start time (unique to a server
# instance, whatever host name or socket led there), and whether durably's tables are there.
_IDENTITY_SQL = ("SELECT current_database() AS db, "
                 "CAST(extract(epoch from pg_postmaster_start_time()) AS double precision) AS started, "
                 "to_regclass(%(table)s) IS NOT NULL AS has_store")


class _AsyncCursor:
    """A psycopg async cursor driven from synchronous code inside ``greenlets.run_sync``."""

    def __init__(self, cur: Any):
        self._cur = cur

    def execute(self, sql: Any, params: Any = None) -> "_AsyncCursor":
        wait(self._cur.execute(sql, params))
        return self

    def fetchone(self) -> Any:
        return wait(self._cur.fetchone())

    def fetchall(self) -> Any:
        return wait(self._cur.fetchall())

    def nextset(self) -> Any:
        return self._cur.nextset()

    @property
    def rowcount(self) -> int:
        return int(self._cur.rowcount)


class _AsyncRaw:
    """A ``psycopg.AsyncConnection`` as the little of a ``psycopg.Connection`` that ``_Conn`` uses."""

    def __init__(self, conn: Any):
        self._conn = conn
        self.autocommit = conn.autocommit

    def cursor(self, row_factory: Any = None) -> _AsyncCursor:
        return _AsyncCursor(self._conn.cursor(row_factory=row_factory))

    def pipeline(self) -> Any:
        return contextlib.nullcontext()  # statements go one by one: the same results, more round trips


def ingest_in(store: "PostgresStore", connection: Any, events: list[dict], register: tuple[str, list[dict]] | None = None) -> Any:
    """``ingest`` in the caller's open transaction on ``connection``, a ``psycopg.Connection``
    to this store's database: its statements run on that connection (with the store's
    schema first on its search_path for their duration), and workers are woken by a
    NOTIFY that PostgreSQL delivers only if the caller commits."""
    if isinstance(connection, psycopg.AsyncConnection):
        raise InvalidInput("connection=: a psycopg.AsyncConnection goes to await app.send_async(..., connection=...)")
    if not isinstance(connection, psycopg.Connection):
        raise InvalidInput(f"connection=: the PostgreSQL store takes a psycopg (3) Connection, "
                           f"got {type(connection).__name__}")
    return _ingest_in(store, connection, events, register)

async def ingest_in_async(store: "PostgresStore", connection: Any, events: list[dict], register: tuple[str, list[dict]] | None = None) -> Any:
    if isinstance(connection, psycopg.Connection):
        raise InvalidInput("connection=: a psycopg.Connection goes to app.send(..., connection=...)")
    if not isinstance(connection, psycopg.AsyncConnection):
        raise InvalidInput(f"connection=: the PostgreSQL store takes a psycopg (3) AsyncConnection, "
                           f"got {type(connection).__name__}")
    await asyncio.to_thread(_identity, store)  # read once, off the loop
    return await run_sync(_ingest_in, store, _AsyncRaw(connection), events, register)

def _ingest_in(store: "PostgresStore", raw: Any, events: list[dict], register: tuple[str, list[dict]] | None = None) -> Any:
    if raw.autocommit:
        raise InvalidInput("connection=: the connection is in autocommit mode, so there is no transaction to "
                           "write in; use a connection with autocommit off (psycopg's default) or "
                           "'with conn.transaction():'")
    c = _Conn.wrap(raw)
    try:
        mine = _identity(store)
        theirs = c.cur.execute(_IDENTITY_SQL, {"table": f"{store.schema}.durably_runs"}).fetchone()
        if (theirs["db"], theirs["started"]) != mine[:2] or not theirs["has_store"]:
            raise InvalidInput(f"connection=: that connection is to database {theirs['db']!r} of another server or "
                               f"without durably's tables in schema {store.schema!r}, not to the store "
                               f"{store.url}: its transaction cannot hold durably's writes")
        old = c.cur.execute("SELECT current_setting('search_path') AS path").fetchone()["path"]
        c.cur.execute("SELECT set_config('search_path', %(path)s, true)",
                      {"path": f"{store.schema}, {old}" if old else store.schema})
        try:
            tx = PgTx(c, store.q, store.env, store.status_in_store)
            if register is not None:  # functions not in the registry yet: in this transaction too
                ops.register(tx, *register)
            result = ops.ingest(tx, events)
            tx.flush_status()  # blobs kept in the store: written in the caller's transaction
            for sql, params in c.at_commit:
                c.cur.execute(sql, params)
            if tx.woke or tx.ended:  # delivered at the caller's COMMIT, dropped by a rollback
                c.cur.execute(f"NOTIFY {store.channel}, '{_PAYLOADS[tx.woke, tx.ended]}'")
        finally:
            c.cur.execute("SELECT set_config('search_path', %(path)s, true)", {"path": old})
    except DurablyError:
        raise
    except psycopg.Error as exc:
        raise _translate(exc) from exc
    # Blobs kept in Redis (tx.published) would describe runs that a rollback may undo: a
    # run's blob is written when it starts.
    return result

def _identity(store: "PostgresStore") -> tuple:
    if store._ident is None:
        with store._pool.connection() as conn:
            row = conn.execute(_IDENTITY_SQL, {"table": f"{store.schema}.durably_runs"}).fetchone()
        assert row is not None  # a SELECT without FROM has one row
        store._ident = tuple(row)
    return store._ident
