"""The Runtime: what a durably process runs on, built the same way by everyone who runs one.

``Runtime(settings, store, clock, registry)`` holds the settings, the open store, the
store's clock as this process reads it (a test may move it) and the registry of the
functions this process knows. An ``App`` opens one when it first needs its store;
``durably server`` opens one with no user code; ``durably.testing.TestEnv`` binds an App
to one on a throwaway store with a clock it controls. The engine's classes (``Worker``,
``Scheduler``) are built from a Runtime and take only the parts they use.

This is the only module that picks a store implementation (``open_store``).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextvars
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Mapping

from .config import Settings, masked_url
from .core.durations import parse_duration
from .engine.registry import Registry
from .errors import ConfigError, InvalidInput, StoreMissing
from .store.base import aw

if TYPE_CHECKING:
    from .engine.scheduler import Scheduler
    from .engine.worker import Worker
    from .functions import FunctionDef

__all__ = ["Runtime", "LazyRuntime", "open_store", "run_inline", "status_template"]

Clock = Callable[[], float]
SinkErrorHook = Callable[[str, BaseException], None]  # (sink, error): a status sink's write failed


def open_store(settings: Settings, *, migrate: bool = True, clock: Clock | None = None, create: bool = True) -> Any:
    """Open the store that ``DURABLY_DATABASE_URL`` names (and apply migrations).

    With ``create=False`` (the commands that only read or send) a store that does not exist
    yet is not created: ``StoreMissing``, with nothing written (no file, no directory, no
    schema). With ``DURABLY_REDIS_URL`` the store keeps no status blobs: every transaction
    that starts or ends a run hands its blob to the store's Redis sink once committed.
    """
    url = settings.database_url
    status_in_store = not settings.redis_url
    store: Any
    if url.startswith("sqlite:"):
        from .store.sqlite import SqliteStore, path_from_url

        if not create:
            path = path_from_url(url)
            if not os.path.isfile(path):
                raise StoreMissing(_missing(f"no store at {os.path.abspath(path)}"))
        store = SqliteStore(url, env=settings.env, synchronous=settings.sqlite_synchronous,
                            status_in_store=status_in_store, create_dirs=create, clock=clock or time.time)
    elif url.startswith(("postgresql:", "postgres:")):
        try:
            from .store.postgres import PostgresStore
        except ImportError:
            raise ConfigError("the PostgreSQL store is not available in this build") from None
        store = PostgresStore(url, env=settings.env, schema=settings.schema_, status_in_store=status_in_store,
                              connect_timeout=settings.dispatch_timeout)
    else:
        raise ConfigError(f"DURABLY_DATABASE_URL {url!r}: use sqlite:///path or postgresql://...")
    if not create:
        try:
            exists = store.initialized().result()
        except BaseException:
            store.close()
            raise
        if not exists:
            store.close()
            where = store.path if store.dialect == "sqlite" else f"{masked_url(url)} (schema {store.schema!r})"
            raise StoreMissing(_missing(f"no store at {where}"))
    if settings.redis_url:
        from .status import RedisStatusSink

        store.status_sink = RedisStatusSink(settings.redis_url, env=settings.env, template=status_template(settings))
    if migrate:
        store.migrate().result()
    return store


def _missing(what: str) -> str:
    return f"{what}: run `durably dev` or `durably migrate` to create it, or pass --database-url"


def status_template(settings: Settings) -> str:
    """The status-key template this process writes with: ``DURABLY_STATUS_KEY``, prefixed with
    ``{env}:`` outside ``DURABLY_PRODUCTION_ENV`` when it has no ``{env}`` (DESIGN §5)."""
    from .core.blobs import env_template

    return env_template(settings.status_key, settings.env, settings.production_env)


class Runtime:
    """Settings, the open store, the store's clock and the functions this process knows."""

    def __init__(self, settings: Settings, store: Any, clock: Clock, registry: Registry):
        self.settings = settings
        self.store = store
        self.clock = clock
        self.registry = registry
        self.inngest_hooks: list[Callable[[], None]] = []  # called after an SDK app synced here

    @classmethod
    def open(cls, settings: Settings, *, clock: Clock | None = None, app_id: str | None = None,
             functions: Mapping[str, "FunctionDef"] | None = None, migrate: bool = True, create: bool = True,
             on_status_sink_error: SinkErrorHook | None = None) -> "Runtime":
        """Open the store that ``settings`` name (migrated) and the registry of ``functions``
        (an App's, registered under ``app_id``; none for ``durably server``).

        ``clock`` replaces the real clock (tests); ``on_status_sink_error`` hears of every
        failed write of the Redis status sink (the HTTP API's metrics count them);
        ``create=False`` refuses a store that does not exist yet (``StoreMissing``).
        """
        store = open_store(settings, migrate=migrate, clock=clock, create=create)
        sink = store.status_sink
        if sink is not None and on_status_sink_error is not None:
            hook = on_status_sink_error
            sink.on_error = lambda exc: hook("redis", exc)
        return cls(settings, store, clock or time.time,
                   Registry(store, functions, app_id=app_id, status_key=status_template(settings)))

    # --- what the engine is built from -------------------------------------------------------

    @property
    def lease(self) -> float:
        """The lease period of a claimed run, in seconds (``DURABLY_LEASE_SECONDS``)."""
        return self.settings.lease_seconds

    @property
    def prune_after(self) -> float | None:
        """The retention in seconds (``DURABLY_PRUNE_AFTER``), or None: the scheduler does not prune."""
        after = self.settings.prune_after
        return parse_duration(after, name="DURABLY_PRUNE_AFTER") if after else None

    def scheduler(self, *, owner: str | None = None) -> "Scheduler":
        """A scheduler (cron ticks, timeouts, lease recovery, retention) on this runtime's store."""
        from .engine.scheduler import Scheduler

        return Scheduler(self.store, self.clock, self.lease, self.registry, prune_after=self.prune_after, owner=owner)

    def worker(self, *, concurrency: int = 8, scheduler: bool = True, **kwargs: Any) -> "Worker":
        """A worker for the functions of this runtime's registry (and, unless ``scheduler=False``,
        a scheduler beside it)."""
        from .engine.worker import Worker

        return Worker(self.store, self.registry, lease=self.lease, clock=self.clock, prune_after=self.prune_after,
                      concurrency=concurrency, scheduler=scheduler, **kwargs)

    def inngest_driver(self, *, concurrency: int = 8) -> tuple[Any, "Worker"]:
        """The driver of SDK functions (``durably.inngest.driver``) and the worker that claims
        their runs (no scheduler of its own: the process runs one already). Run it with
        ``driver.run(worker, stop)``."""
        from .engine.worker import Worker
        from .inngest.driver import Driver, SdkExecution

        key = self.settings.inngest_signing_key
        driver = Driver(self.store, signing_key=key.get_secret_value() if key is not None else None)
        self.inngest_hooks.append(driver.poke)
        worker = Worker(self.store, driver.registry, lease=self.lease, clock=self.clock, concurrency=concurrency,
                        scheduler=False, execution=SdkExecution)
        return driver, worker

    # --- sending -------------------------------------------------------------------------------

    def ingest(self, events: list[dict], audit: Any = None) -> cf.Future:
        """Record ``events`` (dicts, checked) and the runs they start, in one transaction, once
        this process's functions are in the store's registry. A future of an ``IngestResult``.
        ``audit``: an operator's send (``core.records.Audit``), recorded in that transaction."""
        registering = self.registry.register()
        send = (lambda: self.store.ingest(events, audit)) if audit is not None else (lambda: self.store.ingest(events))
        if registering is None:
            return send()
        result: cf.Future = cf.Future()
        context = contextvars.copy_context()  # the caller's deadline (give_up_after) holds for the ingest too

        def then(fut: cf.Future) -> None:
            exc = fut.exception()
            if exc is not None:
                result.set_exception(exc)
                return
            if result.cancelled():  # the caller gave up while registering
                return
            _chain(context.run(send), result)

        registering.add_done_callback(then)
        return result

    def ingest_in(self, connection: Any, events: list[dict]) -> Any:
        """``ingest`` in the caller's open transaction on ``connection`` (see ``unwrap``), once
        this process's functions are in the registry (registered in a transaction of their own)."""
        conn = unwrap(connection)
        # Functions not in the registry yet are written in the caller's transaction as well:
        # waiting for a transaction of the store's own could wait for the caller's lock (SQLite).
        pending = self.registry.pending()
        result = self.store.ingest_in(conn, events, register=pending)
        if pending is not None:
            self.registry.register()  # in the store's own transaction too, not waited for
        return result

    async def ingest_in_async(self, connection: Any, events: list[dict]) -> Any:
        conn = await _unwrap_async(connection)
        pending = self.registry.pending()
        result = await self.store.ingest_in_async(conn, events, register=pending)
        if pending is not None:
            self.registry.register()  # in the store's own transaction too, not waited for
        return result

    def close(self) -> None:
        self.store.close()

    def __repr__(self) -> str:
        return f"<durably.Runtime env={self.settings.env!r} functions={len(self.registry.local)}>"


async def run_inline(functions: Mapping[str, "FunctionDef"], send: Callable[[list[dict]], Any],
                     event: dict) -> list[dict]:
    """Run the loaded ``functions`` that ``event`` triggers, in this request, without a store:
    the cron endpoint's emergency fallback (``DURABLY_INLINE_FALLBACK``; see ``engine.inline``)."""
    from .engine.inline import run_inline as run

    return await run(functions, send, event)


def _chain(source: cf.Future, target: cf.Future) -> None:
    """Settle ``target`` as ``source`` settles."""

    def settle(fut: cf.Future) -> None:
        if target.cancelled():
            return
        exc = fut.exception()
        try:
            if exc is not None:
                target.set_exception(exc)
            else:
                target.set_result(fut.result())
        except cf.InvalidStateError:  # cancelled meanwhile by the caller
            pass

    source.add_done_callback(settle)


class LazyRuntime:
    """A Runtime opened the first time it is needed (its store opened and migrated then) and
    opened again after ``close()``: an App's, and the one the HTTP API of ``durably server``
    opens. ``bind`` puts a given runtime in its place until ``close()`` (TestEnv)."""

    def __init__(self, open: Callable[[], Runtime]):
        self._open = open
        self._runtime: Runtime | None = None
        self._lock = threading.Lock()
        self._opening: cf.Future | None = None  # an open under way in a thread of its own
        self._opening_lock = threading.Lock()  # never held while opening: ``opening()`` never blocks

    @property
    def current(self) -> Runtime | None:
        """The open runtime, or None (nothing opened yet, or closed since)."""
        return self._runtime

    def get(self) -> Runtime:
        """The open runtime, opened now if need be (may block: it opens and migrates the store)."""
        runtime = self._runtime
        if runtime is None:
            with self._lock:
                runtime = self._runtime
                if runtime is None:
                    runtime = self._runtime = self._open()
        return runtime

    def opening(self) -> cf.Future:
        """A future of the open runtime, for a caller that must not wait longer than it
        chooses (a dispatch): the store is opened in a thread of its own, which goes on if
        the caller stops waiting, and every caller meanwhile waits on the same open. A
        failed open is tried again by the next caller."""
        runtime = self._runtime
        if runtime is not None:
            done: cf.Future = cf.Future()
            done.set_result(runtime)
            return done
        with self._opening_lock:
            fut = self._opening
            if fut is None:
                fut = self._opening = cf.Future()
                start = True
            else:
                start = False
            mine: cf.Future = cf.Future()  # the caller's own: cancelling it leaves the open alone
            _chain(fut, mine)
            if not start:
                return mine

        def open_now() -> None:
            try:
                runtime = self.get()
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting callers
                with self._opening_lock:
                    self._opening = None
                fut.set_exception(exc)
                return
            with self._opening_lock:
                self._opening = None
            fut.set_result(runtime)

        threading.Thread(target=open_now, name="durably-open", daemon=True).start()
        return mine

    def bind(self, runtime: Runtime) -> None:
        """Use ``runtime`` until ``close()``; only while none is open."""
        with self._lock:
            if self._runtime is not None:
                raise RuntimeError("a runtime is open already: close it before binding another")
            self._runtime = runtime

    def close(self) -> None:
        with self._opening_lock:
            pending = self._opening
        if pending is not None and not pending.done():
            # An open under way in its thread (a caller gave up waiting for it): not waited
            # for here; what it opens is closed when it is done.
            pending.add_done_callback(lambda fut: self.close() if fut.exception() is None else None)
            return
        with self._lock:
            runtime, self._runtime = self._runtime, None
        if runtime is not None:
            runtime.close()


def unwrap(connection: Any) -> Any:
    """The DB-API connection under an SQLAlchemy ``Connection`` or ``Session`` (whose current
    transaction it is); any other object as it is, for the store to check."""
    if connection is None:
        raise InvalidInput("connection=: pass the open connection whose transaction should hold the events")
    if type(connection).__module__.startswith("sqlalchemy"):
        if callable(getattr(connection, "get_bind", None)) and callable(getattr(connection, "connection", None)):
            connection = connection.connection()  # a Session: its Connection, in its transaction
        pooled = getattr(connection, "connection", None)  # Connection -> the pool's proxy
        driver = getattr(pooled, "driver_connection", None)
        if driver is None:
            raise InvalidInput(f"connection=: cannot find the driver connection under {type(connection).__name__}")
        return driver
    return connection


async def _unwrap_async(connection: Any) -> Any:
    """``unwrap`` for SQLAlchemy's ``AsyncConnection`` and ``AsyncSession`` too."""
    if type(connection).__module__.startswith("sqlalchemy"):
        if callable(getattr(connection, "get_bind", None)) and callable(getattr(connection, "connection", None)):
            connection = await connection.connection()  # an AsyncSession
        get_raw = getattr(connection, "get_raw_connection", None)
        if get_raw is not None:  # an AsyncConnection
            pooled = await get_raw()
            driver = getattr(pooled, "driver_connection", None)
            if driver is None:
                raise InvalidInput(f"connection=: cannot find the driver connection under {type(connection).__name__}")
            return driver
    return unwrap(connection)
