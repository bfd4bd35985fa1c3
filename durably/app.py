"""``durably.App``: declaring functions, sending events, running workers; an App builds a
``Runtime`` (``durably.runtime``) the first time it needs its store, and everything below
runs on that Runtime, never on the App."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from .config import Settings
from .errors import DuplicateFunction, EventSchemaConflict, InvalidInput, NotFound
from .core import eventschema
from .core.types import TERMINAL
from .core.blobs import check_function_id
from .core.events import FUNCTION_FAILED, Event, coerce_events
from .functions import (Batch, CancelOn, Concurrency, CronTrigger, Debounce, EventTrigger, Fairness, FunctionDef, Priority,
                        RateLimit, Retry, Singleton, Throttle, Timeouts, coerce_retry, _cel)
from .core.records import IngestResult
from .runtime import LazyRuntime, Runtime
from . import telemetry
from .store.base import aw, aw_within, give_up_after, within

log = logging.getLogger("durably")


class SendResult(list):
    """The ids of the events sent (a list), with ``runs`` created and ``duplicates`` ignored."""

    def __init__(self, res: IngestResult):
        super().__init__(res.ids)
        self.ids = res.ids
        self.runs = res.runs
        self.duplicates = res.duplicates
        self.skipped = res.skipped
        self.filtered = res.filtered


@dataclass(frozen=True)
class RunResult:
    """How a run ended (``app.result``): ``status`` completed, failed or cancelled; ``output``
    (what the function returned, as JSON gives it back) or ``error`` (``{name, message, ...}``);
    ``terminal_reason`` (completed, retries_exhausted, non_retriable, cancelled, timeout, ...)."""

    run_id: str
    function_id: str
    status: str
    output: Any
    error: dict | None
    terminal_reason: str | None

    @property
    def ok(self) -> bool:
        return self.status == "completed"


# A waiter re-reads its run at least this often even if no wake-up came (a safety net: wake-ups
# arrive within milliseconds of the commit that ended the run).
RESULT_RECHECK_SECONDS = 5.0


class Function:
    """A declared durable function; calling it calls the plain Python function."""

    def __init__(self, fdef: FunctionDef):
        self.fdef = fdef
        self.id = fdef.id
        self.__wrapped__ = fdef.fn
        self.__doc__ = fdef.fn.__doc__
        self.__name__ = getattr(fdef.fn, "__name__", fdef.id)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fdef.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<durably.Function {self.id!r}>"


class App:
    """A durably app: ``App("my-app")``; store, env and keys come from the environment."""

    def __init__(self, id: str, *, settings: Settings | None = None, database_url: str | None = None,
                 env: str | None = None, redis_url: str | None = None):
        if not isinstance(id, str) or not id.strip():
            raise InvalidInput("App id must be a non-empty string")
        self.id = id
        self._settings = settings
        self._overrides = {"database_url": database_url, "env": env, "redis_url": redis_url}
        self.functions: dict[str, FunctionDef] = {}
        self.observers: list[Any] = []  # told of failed status-sink writes (the HTTP API's metrics)
        self._runtime = LazyRuntime(self._open_runtime)

    # --- configuration -------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        current = self._runtime.current
        if current is not None:
            return current.settings
        if self._settings is None:
            self._settings = Settings.load(None, **self._overrides)
        return self._settings

    def configure(self, **overrides: Any) -> "App":
        """Replace settings (before the store is opened): ``app.configure(database_url=...)``."""
        if self.opened:
            raise InvalidInput(f"app {self.id!r} cannot be configured any more: it is already connected to its "
                               "store (app.send, app.store or a worker used it); call configure() before that")
        self._settings = self.settings.replace(**overrides)
        return self

    @property
    def opened(self) -> bool:
        """Whether the app has opened its store (from then on its settings are fixed)."""
        return self._runtime.current is not None

    def _open_runtime(self) -> Runtime:
        return Runtime.open(self.settings, app_id=self.id, functions=self.functions,
                            on_status_sink_error=self._status_sink_failed)

    @property
    def runtime(self) -> Runtime:
        """What this app runs on (opened, and its store migrated, on first use)."""
        return self._runtime.get()

    def bind(self, runtime: Runtime) -> None:
        """Run on ``runtime`` until ``close()`` instead of opening one (``durably.testing``)."""
        self._runtime.bind(runtime)

    @property
    def store(self) -> Any:
        return self.runtime.store

    def close(self) -> None:
        self._runtime.close()

    # --- declaring functions -------------------------------------------------------------

    def function(
        self,
        *,
        id: str | None = None,
        trigger: EventTrigger | CronTrigger | Sequence[EventTrigger | CronTrigger],
        retries: int | Retry | None = None,
        concurrency: Concurrency | int | Sequence[Concurrency] | None = None,
        throttle: Throttle | None = None,
        rate_limit: RateLimit | None = None,
        debounce: Debounce | None = None,
        batch: Batch | None = None,
        priority: Priority | None = None,
        idempotency: str | None = None,
        singleton: Singleton | None = None,
        cancel_on: Sequence[CancelOn] | CancelOn | None = None,
        timeouts: Timeouts | None = None,
        tenant: str | None = None,
        fairness: Fairness | None = None,
        on_failure: Callable[..., Any] | None = None,
        name: str | None = None,
    ) -> Callable[[Callable[..., Any]], Function]:
        """Declare a durable function. Every option is validated here, at import time."""

        def decorate(fn: Callable[..., Any]) -> Function:
            fid = id or getattr(fn, "__name__", None)
            if not isinstance(fid, str) or not fid:
                raise InvalidInput("a function needs an id")
            check_function_id(fid)
            given: list[Any] = list(trigger) if isinstance(trigger, (list, tuple)) else [trigger]
            triggers = [t for t in given if isinstance(t, (EventTrigger, CronTrigger))]
            if not triggers or len(triggers) != len(given):
                raise InvalidInput(f"function {fid!r}: trigger must be durably.on_event(...) or durably.on_cron(...)"
                                   " (or a list of them)")
            conc: list[Any]
            if isinstance(concurrency, int) and not isinstance(concurrency, bool):
                conc = [Concurrency(limit=concurrency)]
            elif isinstance(concurrency, Concurrency):
                conc = [concurrency]
            elif isinstance(concurrency, (list, tuple)) or not concurrency:
                conc = list(concurrency or [])
            else:
                conc = [concurrency]  # refused just below
            if not all(isinstance(c, Concurrency) for c in conc):
                raise InvalidInput(f"function {fid!r}: concurrency takes durably.Concurrency(...) values")
            cancels = [cancel_on] if isinstance(cancel_on, CancelOn) else list(cancel_on or [])
            if fairness is not None and not isinstance(fairness, Fairness):
                raise InvalidInput(f"function {fid!r}: fairness takes durably.Fairness(key=...)")
            fdef = FunctionDef(
                id=fid, fn=fn, triggers=triggers, retry=coerce_retry(retries), concurrency=conc,
                throttle=throttle, rate_limit=rate_limit, debounce=debounce, batch=batch, priority=priority,
                idempotency=_cel(idempotency, f"function {fid!r} idempotency"), singleton=singleton,
                cancel_on=cancels, timeouts=timeouts, tenant=_cel(tenant, f"function {fid!r} tenant"),
                fairness=fairness, on_failure=on_failure, name=name,
            )
            self._add(fdef)
            if on_failure is not None:
                self._add(FunctionDef(
                    id=f"{fid}-failure", fn=on_failure, internal=True, retry=fdef.retry,
                    triggers=[EventTrigger(FUNCTION_FAILED, f"event.data.function_id == {_quote(fid)}")],
                ))
            return Function(fdef)

        return decorate

    def _add(self, fdef: FunctionDef) -> None:
        if fdef.id in self.functions:
            raise DuplicateFunction(f"duplicate function id {fdef.id!r} in app {self.id!r}")
        for t in fdef.event_triggers:
            if t.json_schema is None:
                continue
            for other in [*self.functions.values(), fdef]:
                for o in other.event_triggers:
                    if o is not t and o.event == t.event and o.json_schema is not None \
                            and not eventschema.same_schema(o.json_schema, t.json_schema):
                        raise EventSchemaConflict(
                            f"event {t.event!r} has two different schemas in app {self.id!r}: function "
                            f"{other.id!r} declares {_title(o.json_schema)} and function {fdef.id!r} declares "
                            f"{_title(t.json_schema)}; functions that name one event must give it the same schema")
        self.functions[fdef.id] = fdef

    def _adapters(self) -> dict[str, Any]:
        """Event name -> the pydantic adapter of its data, for the typed events of this app."""
        out: dict[str, Any] = {}
        for f in self.functions.values():
            for t in f.event_triggers:
                if t.adapter is not None:
                    out.setdefault(t.event, t.adapter)
        return out

    # --- registry in the store -----------------------------------------------------------

    def register(self) -> None:
        """Write this app's functions to the store's registry (done on first use)."""
        written = self.runtime.registry.register()
        if written is not None:
            written.result()

    async def register_async(self) -> None:
        written = self.runtime.registry.register()
        if written is not None:
            await aw(written)

    # --- sending ---------------------------------------------------------------------------

    def _prepare(self, events: Any) -> list[dict]:
        evs = coerce_events(events)
        adapters = self._adapters()
        if adapters:  # typed events: refused here, before anything is stored (the store checks too)
            for i, e in enumerate(evs):
                adapter = adapters.get(e.name)
                if adapter is not None:
                    eventschema.check_model(adapter, e.name, e.data, f"events[{i}]: " if len(evs) > 1 else "")
        context = telemetry.carrier()  # None unless tracing is on: the runs join the sender's trace
        for e in evs:
            if context is not None and e.trace is None:
                e.trace = context
            e.encode()  # serializable, and under 1 MiB: checked before anything is written
        return [e.to_dict() for e in evs]

    def send(self, events: Event | dict | Iterable[Event | dict], *, connection: Any = None) -> SendResult:
        """Send one event or a list (one transaction); returns the ids, with ``.runs``.

        Gives up after ``DURABLY_DISPATCH_TIMEOUT`` seconds (opening the store included) with
        ``durably.StoreUnavailable``; then nothing of the events is written, later either.

        ``connection``: write them, and the runs they start, in the caller's open transaction
        on that connection to the store's database instead (a ``psycopg.Connection``, a
        ``sqlite3.Connection`` to the store's file, or an SQLAlchemy ``Connection``/``Session``
        on either): nothing starts before the caller commits, and a rollback leaves nothing.
        The caller's transaction is the caller's to bound.
        """
        dicts = self._prepare(events)
        if connection is not None:
            with give_up_after(self.settings.dispatch_timeout):
                runtime = within(self._runtime.opening())
            return SendResult(runtime.ingest_in(connection, dicts))
        with give_up_after(self.settings.dispatch_timeout):
            runtime = within(self._runtime.opening())
            return SendResult(within(runtime.ingest(dicts)))

    async def send_async(self, events: Event | dict | Iterable[Event | dict], *,
                         connection: Any = None) -> SendResult:
        """``send`` for async code (the same deadline); ``connection`` a ``psycopg.AsyncConnection``
        (or an SQLAlchemy ``AsyncConnection``/``AsyncSession`` on one), in whose open transaction
        they are written."""
        dicts = self._prepare(events)
        if connection is not None:
            with give_up_after(self.settings.dispatch_timeout):
                runtime = await aw_within(self._runtime.opening())
            return SendResult(await runtime.ingest_in_async(connection, dicts))
        with give_up_after(self.settings.dispatch_timeout):
            runtime = await aw_within(self._runtime.opening())
            return SendResult(await aw_within(runtime.ingest(dicts)))

    async def dispatch_async(self, name: str, *, window: int = 60, data: dict | None = None) -> dict[str, Any]:
        """One ping of the dispatch window of event ``name`` (DESIGN §4), through the same
        window ledger as ``POST /api/v1/cron/{name}?window=...``: so a web app's own cron route
        and durably's agree on a window. The window's first ping sends ``name`` with id
        ``cron:{name}:{window_start}`` (``data`` plus ``dispatch_key``, ``window_start``,
        ``window``); later pings of it, from either route, are duplicates. Returns
        ``{"dispatchKey", "eventId", "duplicate", "windowStart", "pings", "runs"}``; gives up
        after ``DURABLY_DISPATCH_TIMEOUT`` with ``durably.StoreUnavailable`` (nothing sent)."""
        if not isinstance(window, int) or isinstance(window, bool) or not 1 <= window <= 86400:
            raise InvalidInput(f"window: an integer number of seconds from 1 to 86400, got {window!r}")
        event = Event(name, dict(data or {})).to_dict()  # the name checked as any event's
        with give_up_after(self.settings.dispatch_timeout):
            runtime = await aw_within(self._runtime.opening())
            registering = runtime.registry.register()
            if registering is not None:
                await aw_within(registering)
            d = await aw_within(runtime.store.dispatch(name, window, {"name": name, "data": event["data"]}))
        return {"dispatchKey": f"{name}:{d['window_start']}", "eventId": d["event_id"], "duplicate": d["duplicate"],
                "windowStart": d["window_start"], "pings": d["pings"], "runs": d["runs"]}

    async def record_dispatch_async(self, name: str, window_start: int) -> bool:
        """Record the window of ``name`` that starts at ``window_start`` as dispatched without
        sending anything (its work ran inline while the store was unreachable), so that no
        later ping of that window, from any route or process, dispatches it again. False if
        the window was recorded already; ``StoreUnavailable`` after the dispatch deadline."""
        with give_up_after(self.settings.dispatch_timeout):
            runtime = await aw_within(self._runtime.opening())
            return bool(await aw_within(runtime.store.record_dispatch(name, window_start,
                                                                      f"cron:{name}:{window_start}")))

    # --- results ---------------------------------------------------------------------------

    def result(self, run_id: str, timeout: float | None = None) -> RunResult:
        """Wait until run ``run_id`` has ended and return how (``TimeoutError`` after ``timeout``
        seconds; ``durably.errors.NotFound`` if there is no such run). Waits on the store's
        wake-ups (NOTIFY on PostgreSQL, the file's change counter on SQLite), not by polling."""
        _check_timeout(timeout)
        store = self.runtime.store
        changed = threading.Event()
        unsubscribe = store.on_ended(changed.set)  # before the first read: no end is missed
        try:
            store.watch_end(run_id).result()
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                changed.clear()
                done = _ended(run_id, store.get_run(run_id, with_steps=False).result(), self.runtime.settings.env)
                if done is not None:
                    return done
                wait = _remaining(run_id, deadline, timeout)
                changed.wait(wait)
        finally:
            unsubscribe()

    async def result_async(self, run_id: str, timeout: float | None = None) -> RunResult:
        """``result`` for async code: the event loop is never blocked."""
        _check_timeout(timeout)
        store = self.runtime.store
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        def woken() -> None:  # from the store's thread
            try:
                loop.call_soon_threadsafe(changed.set)
            except RuntimeError:  # the loop has closed
                pass

        unsubscribe = store.on_ended(woken)
        try:
            await aw(store.watch_end(run_id))
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                changed.clear()
                done = _ended(run_id, await aw(store.get_run(run_id, with_steps=False)), self.runtime.settings.env)
                if done is not None:
                    return done
                wait = _remaining(run_id, deadline, timeout)
                try:
                    await asyncio.wait_for(changed.wait(), wait)
                except asyncio.TimeoutError:
                    pass
        finally:
            unsubscribe()

    # --- running -------------------------------------------------------------------------

    def worker(self, *, concurrency: int = 8, scheduler: bool = True, **kwargs: Any):
        """A worker for this app's functions on its runtime (``await worker.run(stop)``)."""
        return self.runtime.worker(concurrency=concurrency, scheduler=scheduler, **kwargs)

    def run_worker(self, *, concurrency: int = 8, scheduler: bool = True) -> None:
        """Run a worker in this thread until SIGINT/SIGTERM."""
        from .lifecycle import run, stop_on_signals

        async def main() -> None:
            await self.worker(concurrency=concurrency, scheduler=scheduler).run(stop_on_signals())

        run(main(), self.settings.event_loop)

    # --- status blobs outside the store (Redis) -----------------------------------------------
    # With DURABLY_REDIS_URL the store keeps no status blobs: every transaction that starts or
    # ends a run hands its blob to the store's Redis sink once committed, whichever process
    # commits it (worker, API server, CLI). The sink never blocks nor fails a run.

    @property
    def status_sink(self) -> Any:
        """The Redis status sink, or None when blobs live in the store."""
        return self.store.status_sink if self.settings.redis_url else None

    def _status_sink_failed(self, sink: str, exc: BaseException) -> None:
        """A status sink outside the store (Redis) failed a write: counted in metrics."""
        for observer in list(self.observers):
            observer.status_sink_failed(sink, exc)

    # --- web apps --------------------------------------------------------------------------

    def asgi(self):
        """The HTTP API as an ASGI app, to mount in FastAPI or Starlette (``mount("/durably", app.asgi())``).

        Its cron endpoint can fall back to running this app's functions inline when the store
        is unreachable (``DURABLY_INLINE_FALLBACK=true``). Raises ConfigError outside ``dev``
        when a key is missing.
        """
        from .server.api import create_app

        return create_app(self.settings, runtime=self._runtime, functions=self.functions, observers=self.observers)

    def __repr__(self) -> str:
        return f"<durably.App {self.id!r} functions={len(self.functions)}>"


def _title(schema: dict) -> str:
    title = schema.get("title")
    return repr(title) if isinstance(title, str) else "a schema"


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0
                                or timeout != timeout):
        raise InvalidInput(f"result(): timeout must be a number of seconds >= 0 or None, got {timeout!r}")


def _ended(run_id: str, row: Any, env: str) -> RunResult | None:
    if row is None:
        raise NotFound(f"no run {run_id!r} in env {env!r}")
    if row["status"] not in TERMINAL:
        return None
    return RunResult(run_id=row["id"], function_id=row["function_id"], status=row["status"],
                     output=row.get("output"), error=row.get("error"), terminal_reason=row.get("terminal_reason"))


def _remaining(run_id: str, deadline: float | None, timeout: float | None) -> float:
    if deadline is None:
        return RESULT_RECHECK_SECONDS
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError(f"run {run_id} had not ended after {timeout:g}s")
    return min(left, RESULT_RECHECK_SECONDS)
