"""PostgreSQL schemas for tests: one fresh, already migrated schema per test.

Creating durably's tables costs PostgreSQL a few hundred milliseconds (one file per table
and index). A background thread keeps a couple of migrated schemas ready and drops the
used ones, so a test only waits when it outruns the thread. Every schema is used by one
test only and named on the store URL (``?schema=``), so an App, a CLI subprocess and a
worker process of the test all land in it.
"""

from __future__ import annotations

import queue
import threading
import uuid

PG_DSN_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"


def new_schema_name() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


def schema_url(dsn: str, schema: str) -> str:
    sep = "&" if "?" in dsn else "?"
    return f"{dsn}{sep}schema={schema}"


def drop_schema(conn, schema: str) -> None:
    # Connections a test left open (their application_name names the schema) would hold
    # locks and make DROP SCHEMA wait: end them first.
    conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                 "WHERE application_name = %s AND pid <> pg_backend_pid()", [f"durably {schema}"])
    conn.execute("SET lock_timeout = '10s'")
    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


class SchemaPool:
    """Migrated schemas made ahead of time; used ones dropped in the background."""

    def __init__(self, dsn: str, ready: int = 2):
        import psycopg

        self.dsn = dsn
        self._ready: queue.Queue = queue.Queue(maxsize=ready)
        self._drop: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        psycopg.connect(dsn, autocommit=True, connect_timeout=3).close()  # unreachable: fail now
        self._error: BaseException | None = None
        self._maker = threading.Thread(target=self._make_loop, name="test-pg-schemas", daemon=True)
        self._dropper = threading.Thread(target=self._drop_loop, name="test-pg-drop", daemon=True)
        self._maker.start()
        self._dropper.start()

    def _make(self) -> str:
        from durably.store.postgres import PostgresStore

        schema = new_schema_name()
        store = PostgresStore(schema_url(self.dsn, schema), env="test")
        try:
            store.migrate().result()
        finally:
            store.close()
        return schema

    def _make_loop(self) -> None:
        while not self._stop.is_set():
            try:
                schema = self._make()
            except BaseException as exc:  # noqa: BLE001 - reported to the next taker
                self._error = exc
                return
            while not self._stop.is_set():
                try:
                    self._ready.put(schema, timeout=0.2)
                    break
                except queue.Full:
                    continue
            else:
                self._drop.put(schema)

    def _drop_loop(self) -> None:
        import psycopg

        conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=3)
        while True:
            schema = self._drop.get()
            if schema is None:
                break
            try:
                drop_schema(conn, schema)
            except Exception:  # noqa: BLE001 - a leftover schema is harmless; go on
                pass
        conn.close()

    def take(self, timeout: float = 30.0) -> str:
        while True:
            try:
                return self._ready.get(timeout=0.5)
            except queue.Empty:
                if self._error is not None:
                    raise RuntimeError(f"could not prepare a PostgreSQL test schema: {self._error}")
                timeout -= 0.5
                if timeout <= 0:
                    raise RuntimeError("timed out waiting for a PostgreSQL test schema") from None

    def give_back(self, schema: str) -> None:
        """The test is over: drop its schema (in the background)."""
        self._drop.put(schema)

    def close(self) -> None:
        self._stop.set()
        self._maker.join(timeout=30)
        while True:
            try:
                self._drop.put(self._ready.get_nowait())
            except queue.Empty:
                break
        self._drop.put(None)
        self._dropper.join(timeout=60)
