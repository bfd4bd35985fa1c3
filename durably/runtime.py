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
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Mapping

from .config import Settings
from .core.durations import parse_duration
from .engine.registry import Registry
from .errors import ConfigError

if TYPE_CHECKING:
    from .engine.scheduler import Scheduler
    from .engine.worker import Worker
    from .functions import FunctionDef

__all__ = ["Runtime", "LazyRuntime", "open_store", "run_inline"]

Clock = Callable[[], float]
SinkErrorHook = Callable[[str, BaseException], None]  # (sink, error): a status sink's write failed


def open_store(settings: Settings, *, migrate: bool = True, clock: Clock | None = None) -> Any:
    """Open the store that ``DURABLY_DATABASE_URL`` names (and apply migrations).

    With ``DURABLY_REDIS_URL`` the store keeps no status blobs: every transaction that
    starts or ends a run hands its blob to the store's Redis sink once committed.
    """
    url = settings.database_url
    status_in_store = not settings.redis_url
    store: Any
    if url.startswith("sqlite:"):
        from .store.sqlite import SqliteStore

        store = SqliteStore(url, env=settings.env, synchronous=settings.sqlite_synchronous,
                            status_in_store=status_in_store, **({"clock": clock} if clock else {}))
    elif url.startswith(("postgresql:", "postgres:")):
        try:
            from .store.postgres import PostgresStore
        except ImportError:
            raise ConfigError("the PostgreSQL store is not available in this build") from None
        store = PostgresStore(url, env=settings.env, schema=settings.schema_, status_in_store=status_in_store)
    else:
        raise ConfigError(f"DURABLY_DATABASE_URL {url!r}: use sqlite:///path or postgresql://...")
    if settings.redis_url:
        from .status import RedisStatusSink

        store.status_sink = RedisStatusSink(settings.redis_url, env=settings.env, template=settings.status_key)
    if migrate:
        store.migrate().result()
    return store


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
             functions: Mapping[str, "FunctionDef"] | None = None, migrate: bool = True,
             on_status_sink_error: SinkErrorHook | None = None) -> "Runtime":
        """Open the store that ``settings`` name (migrated) and the registry of ``functions``
        (an App's, registered under ``app_id``; none for ``durably server``).

        ``clock`` replaces the real clock (tests); ``on_status_sink_error`` hears of every
        failed write of the Redis status sink (the HTTP API's metrics count them).
        """
        store = open_store(settings, migrate=migrate, clock=clock)
        sink = store.status_sink
        if sink is not None and on_status_sink_error is not None:
            hook = on_status_sink_error
            sink.on_error = lambda exc: hook("redis", exc)
        return cls(settings, store, clock or time.time, Registry(store, functions, app_id=app_id))

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

    def ingest(self, events: list[dict]) -> cf.Future:
        """Record ``events`` (dicts, checked) and the runs they start, in one transaction, once
        this process's functions are in the store's registry. A future of an ``IngestResult``."""
        registering = self.registry.register()
        if registering is None:
            return self.store.ingest(events)
        result: cf.Future = cf.Future()

        def then(fut: cf.Future) -> None:
            exc = fut.exception()
            if exc is not None:
                result.set_exception(exc)
                return
            _chain(self.store.ingest(events), result)

        registering.add_done_callback(then)
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
        exc = fut.exception()
        if exc is not None:
            target.set_exception(exc)
        else:
            target.set_result(fut.result())

    source.add_done_callback(settle)


class LazyRuntime:
    """A Runtime opened the first time it is needed (its store opened and migrated then) and
    opened again after ``close()``: an App's, and the one the HTTP API of ``durably server``
    opens. ``bind`` puts a given runtime in its place until ``close()`` (TestEnv)."""

    def __init__(self, open: Callable[[], Runtime]):
        self._open = open
        self._runtime: Runtime | None = None
        self._lock = threading.Lock()

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

    def bind(self, runtime: Runtime) -> None:
        """Use ``runtime`` until ``close()``; only while none is open."""
        with self._lock:
            if self._runtime is not None:
                raise RuntimeError("a runtime is open already: close it before binding another")
            self._runtime = runtime

    def close(self) -> None:
        with self._lock:
            runtime, self._runtime = self._runtime, None
        if runtime is not None:
            runtime.close()
