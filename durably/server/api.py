"""The HTTP API (DESIGN §4): events, the dispatch-only cron endpoint, the run ledger, "Run
now", replay, the registry, status blobs, health and metrics.

``create_app(settings, runtime=None, functions=None)`` returns a Starlette ASGI app.
``durably server`` serves it on a runtime of its own without user code (functions come from
the registry in the store); ``durably dev`` and ``app.asgi()`` pass the App's runtime and
functions, whose code then also backs the cron endpoint's emergency inline fallback.

Every request goes through the same steps, in this order: the ``X-Durably-Env`` and
``X-Content-Type-Options: nosniff`` response headers and the body size limit (ASGI middleware), then per route: the env guard (409),
the credential (401), query and body validation (400/413), the handler. Every error is
``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping, TypeVar
from urllib.parse import unquote_to_bytes

import orjson
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import admin
from .._version import __version__
from ..config import Settings
from ..inngest import api as inngest_api
from ..core.cron import describe, next_tick
from ..errors import ConfigError, DurablyError, InvalidInput, NotFound, PayloadTooLarge, StoreUnavailable
from ..core.events import EVENT_ID_MAX, Event, check_trace
from ..core.jsonutil import EVENT_MAX_BYTES
from ..serialize import event_json, run_json
from ..core.blobs import iso, redis_key
from ..core.records import IngestResult
from ..functions import FunctionDef
from ..runtime import LazyRuntime, Runtime, status_template
from ..store.base import COMMIT_GRACE, aw, aw_within, give_up_after
from . import dashboard, auth, controls, openapi, schemas
from .auth import Kind
from .http import JSON, MAX_BODY_BYTES, BodyLimit, DurablyStarlette, error, error_response
from .metrics import Metrics
from .cron import post_cron
from .apps import post_app

log = logging.getLogger("durably.server")

RESERVED_PREFIX = "durably/"

T = TypeVar("T")


# --- plumbing --------------------------------------------------------------------------------


def _field(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def describe_validation(exc: ValidationError, what: str) -> str:
    """The first problem of a validation error, naming the field."""
    err = exc.errors()[0]
    name = _field(tuple(err.get("loc", ())))
    if err["type"] == "extra_forbidden":
        return f"unknown {what} {name!r}"
    if err["type"] == "missing":
        return f"{what} {name!r} is required"
    msg = err["msg"]
    if err["type"] == "value_error":
        msg = msg.removeprefix("Value error, ")
    if err["type"] == "string_pattern_mismatch":
        if (err.get("ctx") or {}).get("pattern") == schemas.TEXT_PATTERN:
            msg = "must not hold NUL characters"
        else:
            msg = "must not be blank or hold NUL characters"
    return f"{what} {name!r}: {msg}" if name else f"{what}: {msg}"


# --- routes ----------------------------------------------------------------------------------


@dataclass
class Call:
    api: "Api"
    request: Request
    query: Any
    body: Any
    role: str = "operator"

    def path(self, name: str) -> str:
        return self.request.path_params[name]

    def actor(self) -> admin.Actor:
        """Who asks (for the audit log): the caller's role and client address."""
        client = self.request.client
        return admin.Actor(self.role, client.host if client is not None else None)


Handler = Callable[[Call], Awaitable[Response]]


@dataclass
class Op:
    """One operation: its route, its guard, what it accepts and what it answers."""

    name: str
    method: str
    path: str  # as in the OpenAPI document
    handler: Handler
    auth: Kind
    summary: str
    tag: str
    responses: list[tuple[int, type[BaseModel] | None, str]]
    query: type[BaseModel] = schemas.NoQuery
    body: type[BaseModel] | str | None = None
    body_required: bool = True
    errors: list[int] = field(default_factory=lambda: [503])
    path_params: dict[str, str] = field(default_factory=dict)
    path_schemas: dict[str, dict] = field(default_factory=dict)  # default: a non-empty string
    route: str | None = None  # the Starlette path, when it differs (":path" parameters)
    media_type: str = "application/json"
    description: str | None = None


class Api:
    """The HTTP API's state: settings, keys, metrics and the runtime it serves.

    ``functions`` is the code loaded in this process (``app.asgi()``, ``durably dev``), or
    None (``durably server``): with code, the cron endpoint can fall back to running it
    inline when the store is unreachable.
    """

    def __init__(self, settings: Settings, runtime: LazyRuntime, *, owns_runtime: bool,
                 functions: Mapping[str, FunctionDef] | None):
        self.settings = settings
        self.runtime = runtime
        self.owns_runtime = owns_runtime
        self.functions = functions
        self.code_loaded = functions is not None
        self.keys = auth.Keys.from_settings(settings)
        self.metrics = Metrics(worker_window=settings.lease_seconds)
        self.inline_windows: OrderedDict[str, int] = OrderedDict()
        self.inline_unrecorded: set[str] = set()  # windows run inline, not yet recorded in the store
        self._redis: Any = None

    @property
    def inline_fallback(self) -> bool:
        """The cron endpoint may run work inline: the fallback is on and the code is loaded."""
        return self.settings.inline_fallback and self.code_loaded

    def bounded(self) -> Any:
        """The block of a dispatch: its store calls give up after DURABLY_DISPATCH_TIMEOUT."""
        return give_up_after(self.settings.dispatch_timeout)

    async def open(self) -> Runtime:
        """The runtime, opened (and its store migrated) on first use; inside ``bounded()``,
        waited for no longer than the deadline (the open goes on in its thread)."""
        current = self.runtime.current
        if current is not None:
            return current
        return await aw_within(self.runtime.opening())

    async def store(self) -> Any:
        return (await self.open()).store

    async def registered_store(self) -> Any:
        """The store, once this process's functions (an app's, where loaded) are in its registry."""
        runtime = await self.open()
        registering = runtime.registry.register()
        if registering is not None:
            await aw_within(registering)
        return runtime.store

    async def ingest(self, events: list[dict], audit: Any = None) -> IngestResult:
        """Record events and the runs they start (after registering this process's functions)."""
        return await aw_within((await self.open()).ingest(events, audit))

    async def within_deadline(self, make: Callable[[], Awaitable[T]]) -> T:
        """``await make()`` inside ``bounded()``, answered within the deadline however the
        store behaves (reads included): then ``StoreUnavailable``."""
        seconds = self.settings.dispatch_timeout
        with self.bounded():
            try:
                return await asyncio.wait_for(make(), seconds + COMMIT_GRACE)
            except asyncio.TimeoutError:
                raise StoreUnavailable(f"the store did not answer within {seconds:g} s "
                                       "(DURABLY_DISPATCH_TIMEOUT)") from None

    async def ingest_bounded(self, events: list[dict], audit: Any = None) -> IngestResult:
        """``ingest`` within DURABLY_DISPATCH_TIMEOUT of now (``audit``: an operator's send)."""
        with self.bounded():
            return await self.ingest(events, audit)

    async def try_store(self) -> Any:
        try:
            return await self.store()
        except DurablyError:
            return None

    async def redis(self) -> Any:
        if self._redis is None:
            import redis.asyncio as aioredis

            url = self.settings.redis_url
            if url is None:
                raise ConfigError("DURABLY_REDIS_URL is not set: status blobs are kept in the store")
            self._redis = aioredis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        return self._redis

    async def close(self) -> None:
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()
        if self.owns_runtime:
            await run_in_threadpool(self.runtime.close)


def _path(op: Op, request: Request) -> None:
    """Path parameters the store could not hold are refused here, the same on every store."""
    for name, value in request.path_params.items():
        if "\x00" in value:
            raise InvalidInput(f"path parameter {name!r}: must not hold NUL characters")
        limit = op.path_schemas.get(name, {}).get("maxLength")
        if limit is not None and len(value) > limit:
            raise InvalidInput(f"path parameter {name!r}: {len(value):,} characters; at most {limit}")


def _query(model: type[BaseModel], request: Request) -> BaseModel:
    data: dict[str, str] = {}
    for k, v in request.query_params.multi_items():
        if k in data:
            raise InvalidInput(f"query parameter {k!r} is given more than once")
        if "\x00" in k or "\x00" in v:
            raise InvalidInput(f"query parameter {k!r}: must not hold NUL characters")
        data[k] = v
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(describe_validation(exc, "query parameter")) from None


async def _body(op: Op, request: Request) -> Any:
    if op.body is None:
        return None
    raw = await request.body()
    if not raw.strip():
        if op.body_required:
            raise InvalidInput("request body: a JSON body is required")
        return op.body() if isinstance(op.body, type) else None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"request body: malformed JSON ({exc})") from None
    if not isinstance(op.body, type):
        return data
    try:
        return op.body.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(describe_validation(exc, "field")) from None


def endpoint(api: Api, op: Op) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        started = time.perf_counter()
        try:
            auth.check_env(request, api.settings.env)
            role = auth.authorize(request, api.keys, op.auth)
            if op.auth == "admin" and op.method != "GET":
                auth.require_operator(role, f"{op.method} {op.path}")  # 403 before the body is read
            _path(op, request)
            call = Call(api, request, _query(op.query, request), await _body(op, request), role)
            response = await op.handler(call)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON error
            response = error_response(exc)
        api.metrics.observe_request(op.path, op.method, response.status_code, time.perf_counter() - started)
        return response

    handle.__name__ = op.name
    return handle


# --- events ----------------------------------------------------------------------------------


def _check_name(name: str, what: str) -> None:
    if name.startswith(RESERVED_PREFIX):
        raise InvalidInput(f"{what}: names starting with {RESERVED_PREFIX!r} are reserved for durably's own events")


def _events(body: Any) -> list[dict]:
    if isinstance(body, dict):
        items, prefix = [body], lambda i: "event"
    elif isinstance(body, list):
        if not body:
            raise InvalidInput("request body: an empty list sends nothing; send one event or a list of 1 to 1000")
        if len(body) > admin.MAX_LIST:
            raise InvalidInput(f"request body: {len(body)} events in one request; at most {admin.MAX_LIST}")
        items, prefix = body, lambda i: f"events[{i}]"
    else:
        raise InvalidInput("request body: must be an event object or a list of events")
    out = []
    for i, item in enumerate(items):
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            _check_name(item["name"], f"{prefix(i)}.name")
        try:
            model = schemas.EventIn.model_validate(item)
        except ValidationError as exc:
            err = describe_validation(exc, "field")
            raise InvalidInput(f"{prefix(i)}: {err}") from None
        event = Event(name=model.name, data=model.data, id=model.id, ts=model.ts, user=model.user)
        try:
            event.encode()
        except PayloadTooLarge as exc:
            raise PayloadTooLarge(f"{prefix(i)}: {exc} (the limit is {EVENT_MAX_BYTES:,} bytes per event)") from None
        except InvalidInput as exc:
            raise InvalidInput(f"{prefix(i)}: {exc}") from None
        out.append(event.to_dict())
    return out


def trace_of(request: Request) -> dict[str, str] | None:
    """The caller's W3C trace context (``traceparent``, ``tracestate`` headers), if valid; an
    invalid one is ignored, as the W3C recommendation asks, and the runs start a trace of their own."""
    parent = request.headers.get("traceparent")
    if parent is None:
        return None
    context = {"traceparent": parent.strip().lower()}
    state = request.headers.get("tracestate")
    if state:
        context["tracestate"] = state.strip()
    try:
        return check_trace(context)
    except InvalidInput:
        return None


async def post_events(c: Call) -> Response:
    events = _events(c.body)
    context = trace_of(c.request)
    if context is not None:
        for e in events:
            e.setdefault("trace", context)
    api = c.api
    r = await api.ingest_bounded(events)
    return JSON({"ids": r.ids, "runs": r.runs, "duplicates": r.duplicates, "skipped": r.skipped})


async def list_events(c: Call) -> Response:
    q: schemas.EventsQuery = c.query
    cursor = admin.decode_cursor(q.cursor) if q.cursor else None
    rows = await aw((await c.api.store()).list_events(name=q.name, cursor=cursor, limit=q.limit + 1))
    more = len(rows) > q.limit
    rows = rows[:q.limit]
    nxt = admin.encode_cursor(rows[-1]["received_at"], rows[-1]["id"]) if more else None
    return JSON({"events": [event_json(e) for e in rows], "next_cursor": nxt})


async def get_event(c: Call) -> Response:
    e = await aw((await c.api.store()).get_event(c.path("id")))
    if e is None:
        raise NotFound(f"no event {c.path('id')!r} in env {c.api.settings.env!r}")
    out = event_json(e)
    out["skipped"] = [{"function_id": s["function_id"], "reason": s["reason"], "created_at": iso(s["created_at"])}
                      for s in e.get("skipped", [])]
    return JSON(out)


# --- runs ------------------------------------------------------------------------------------


async def list_runs(c: Call) -> Response:
    q: schemas.RunsQuery = c.query
    now = time.time()
    since = admin.parse_time(q.since, name="since", now=now)
    until = admin.parse_time(q.until, name="until", now=now)
    cursor = admin.decode_cursor(q.cursor) if q.cursor else None
    rows = await aw((await c.api.store()).list_runs(status=q.status, function_id=q.function, tenant=q.tenant,
                                                    since=since, until=until, cursor=cursor, limit=q.limit + 1))
    more = len(rows) > q.limit
    rows = rows[:q.limit]
    nxt = admin.encode_cursor(rows[-1]["created_at"], rows[-1]["id"]) if more else None
    return JSON({"runs": [run_json(r) for r in rows], "next_cursor": nxt})


async def get_run(c: Call) -> Response:
    r = await aw((await c.api.store()).get_run(c.path("id")))
    if r is None:
        raise NotFound(f"no run {c.path('id')!r} in env {c.api.settings.env!r}")
    return JSON(run_json(r, detail=True))


async def cancel_run(c: Call) -> Response:
    return JSON(await admin.cancel_run(await c.api.store(), c.path("id"), actor=c.actor()))


async def replay_run(c: Call) -> Response:
    b: schemas.ReplayIn = c.body
    if b.from_step is None and b.data is None:
        return JSON(await admin.replay_run(await c.api.store(), c.path("id"), actor=c.actor()),
                    status_code=201)
    return JSON(await admin.rerun_from_step(await c.api.store(), c.path("id"), b.from_step, b.data,
                                            actor=c.actor()), status_code=201)


async def bulk_replay(c: Call) -> Response:
    b: schemas.BulkReplayIn = c.body
    now = time.time()
    res = await admin.bulk_replay(
        await c.api.store(), function_id=b.function, status=b.status,
        since=admin.parse_time(b.since, name="since", now=now), until=admin.parse_time(b.until, name="until", now=now),
        limit=b.limit, concurrency=b.concurrency, dry_run=b.dry_run, tenant=b.tenant, actor=c.actor())
    return JSON(res, status_code=200 if b.dry_run else 201)


async def bulk_cancel(c: Call) -> Response:
    b: schemas.BulkCancelIn = c.body
    now = time.time()
    res = await admin.bulk_cancel(
        await c.api.store(), function_id=b.function, status=b.status, tenant=b.tenant, if_=b.if_,
        since=admin.parse_time(b.since, name="since", now=now), until=admin.parse_time(b.until, name="until", now=now),
        limit=b.limit, dry_run=b.dry_run, actor=c.actor())
    return JSON(res)


# --- functions, status -----------------------------------------------------------------------


def _last(r: dict | None) -> dict | None:
    if r is None:
        return None
    return {"id": r["id"], "status": r["status"], "created_at": iso(r["created_at"]),
            "started_at": iso(r.get("started_at")), "finished_at": iso(r.get("finished_at"))}


def function_json(f: dict, now: float, paused: dict | None = None) -> dict:
    """A registry entry as the API shows it; ``paused``: the store's paused functions."""
    config = f["config"]
    triggers, ticks = [], []
    for t in config.get("triggers", []):
        if "cron" in t:
            try:
                nxt: float | None = next_tick(t["cron"], t["tz"], now)
            except Exception:  # noqa: BLE001 - a schedule this version cannot read: show it, no tick
                nxt = None
            if nxt is not None:
                ticks.append(nxt)
            triggers.append({"cron": t["cron"], "tz": t["tz"], "description": describe(t["cron"], t["tz"]),
                             "next_run_at": iso(nxt), "overlap": t.get("overlap", "allow")})
        else:
            triggers.append({"event": t.get("event"), "if": t.get("if")})
    last = f.get("last_run")
    return {
        "id": f["id"], "name": config.get("name") or f["id"], "app_id": f["app_id"], "triggers": triggers,
        "next_run_at": iso(min(ticks)) if ticks else None, "last_run": _last(last),
        "last_status": last["status"] if last else None, "last_cron_run": _last(f.get("last_cron_run")),
        "stats_24h": f.get("stats_24h") or {}, "config": config, "updated_at": iso(f.get("updated_at")),
        "paused": f["id"] in (paused or {}), "paused_mode": (paused or {}).get(f["id"], {}).get("mode"),
        "event_schema": config.get("event_schema") if isinstance(config.get("event_schema"), dict) else None,
    }


async def list_functions(c: Call) -> Response:
    now = time.time()
    store = await c.api.store()
    rows = await aw(store.functions_overview(now - 86400))
    paused = await aw(store.paused_functions())
    return JSON({"functions": [function_json(f, now, paused) for f in rows if not f["config"].get("internal")]})


async def invoke_function(c: Call) -> Response:
    body: schemas.InvokeIn = c.body
    async def run_now() -> dict:
        return await admin.run_now(await c.api.registered_store(), c.path("id"), body.data, actor=c.actor())

    return JSON(await c.api.within_deadline(run_now), status_code=201)


def _status_target(c: Call) -> tuple[str, str]:
    """(tenant, function) of ``/api/v1/status/{tenant}/{function}`` as sent: split on the raw
    path where the server gives it, so a tenant with an encoded '/' (``a%2Fb``) is one tenant."""
    raw = c.request.scope.get("raw_path")
    marker = b"/api/v1/status/"
    if isinstance(raw, bytes) and marker in raw:
        rest = raw.split(b"?", 1)[0].split(marker, 1)[1]
        tenant, sep, function = rest.partition(b"/")
        if sep and function:
            return unquote_to_bytes(tenant).decode("utf-8", "replace"), unquote_to_bytes(function).decode("utf-8", "replace")
    return c.path("tenant"), c.path("function")


async def get_status(c: Call) -> Response:
    api = c.api
    tenant, fid = _status_target(c)
    if not tenant:
        raise InvalidInput("tenant must not be empty (runs without a tenant have the tenant 'global')")
    if "\x00" in tenant or "\x00" in fid:
        raise InvalidInput("tenant and function must not contain NUL")
    if api.settings.redis_url:
        # The template the function registered (its workers write with it), else this process's.
        template = status_template(api.settings)
        try:
            config = await aw((await api.store()).get_function(fid))
        except StoreUnavailable:
            config = None
        if config and isinstance(config.get("status_key"), str):
            template = config["status_key"]
        key = redis_key(template, api.settings.env, tenant, fid)
        try:
            raw = await (await api.redis()).get(key)
        except Exception as exc:  # noqa: BLE001 - Redis down is a 503, not a crash
            raise StoreUnavailable(f"Redis is unreachable: {exc}") from None
        blob = orjson.loads(raw) if raw is not None else None
    else:
        blob = await aw((await api.store()).get_status(tenant, fid))
    if blob is None:
        raise NotFound(f"no status for tenant {tenant!r} and function {fid!r} in env {api.settings.env!r}")
    return JSON(blob)


# --- health, metrics, the document -----------------------------------------------------------


async def health(c: Call) -> Response:
    from ..health import collect

    store = await c.api.try_store()
    report = await run_in_threadpool(collect, c.api.settings, store)
    return JSON(report, status_code=200 if report["ok"] else 503)


async def metrics(c: Call) -> Response:
    text = await c.api.metrics.render(await c.api.try_store())
    return Response(text, media_type=CONTENT_TYPE_LATEST)


def _ok(status: int, model: type[BaseModel] | None, desc: str = "") -> tuple[int, type[BaseModel] | None, str]:
    return (status, model, desc)


RUN_ID = {"id": "Run id."}
# A path parameter is text without NUL (PostgreSQL text cannot hold one); an id is at most
# EVENT_ID_MAX characters (every id durably stores is).
TEXT = {"type": "string", "minLength": 1, "pattern": schemas.TEXT_PATTERN}
ID = {**TEXT, "maxLength": EVENT_ID_MAX}
ID_SCHEMA = {"id": ID}
OPS: list[Op] = [
    Op("send_events", "POST", "/api/v1/events", post_events, "event", "Send one event or a list", "events",
       [_ok(200, schemas.SendOut)], body="events", errors=[413, 503],
       description="A list is recorded in one transaction. An event id seen within 24 h is accepted and "
                   "triggers nothing again. Each event is at most 1 MiB; names starting with 'durably/' are reserved. "
                   "An event whose data does not validate against the JSON Schema its functions registered "
                   "(event_schema in GET /api/v1/functions) is refused with 400 invalid_event naming the field; "
                   "a list with one such event stores nothing."),
    Op("list_events", "GET", "/api/v1/events", list_events, "admin", "Events, newest first", "events",
       [_ok(200, schemas.EventsPage)], query=schemas.EventsQuery),
    Op("get_event", "GET", "/api/v1/events/{id}", get_event, "admin", "One event with the runs it triggered",
       "events", [_ok(200, schemas.EventDetailOut)], errors=[404, 503], path_params={"id": "Event id."},
       path_schemas=ID_SCHEMA, route="/api/v1/events/{id:path}"),
    Op("cron_dispatch", "POST", "/api/v1/cron/{event_name}", post_cron, "cron",
       "Dispatch-only cron ping: one event per window", "cron",
       [_ok(202, schemas.CronOut, "The window's first ping: the event was sent"),
        _ok(200, schemas.CronOut, "A later ping in the same window (duplicate), or inline mode")],
       query=schemas.CronQuery, errors=[404, 503], path_params={"event_name": "The event to send; may contain '/'."},
       path_schemas={"event_name": {"type": "string", "minLength": 1, "maxLength": 256,
                                    "pattern": schemas.PATH_NAME_PATTERN}},
       route="/api/v1/cron/{event_name:path}",
       description="Sends event_name with id cron:{event_name}:{window_start} (window_start = now rounded down to "
                   "the window, store clock) and records the dispatch window in the same transaction. Never runs "
                   "work inline unless DURABLY_INLINE_FALLBACK=true, the store is unreachable and the app's code "
                   "is loaded in this process."),
    Op("list_runs", "GET", "/api/v1/runs", list_runs, "admin", "The run ledger, newest first", "runs",
       [_ok(200, schemas.RunsPage)], query=schemas.RunsQuery),
    Op("get_run", "GET", "/api/v1/runs/{id}", get_run, "admin", "One run with its steps and attempts", "runs",
       [_ok(200, schemas.RunDetailOut)], errors=[404, 503], path_params=RUN_ID, path_schemas=ID_SCHEMA),
    Op("cancel_run", "POST", "/api/v1/runs/{id}/cancel", cancel_run, "admin", "Cancel an unfinished run", "runs",
       [_ok(200, schemas.CancelOut)], errors=[404, 503], path_params=RUN_ID, path_schemas=ID_SCHEMA),
    Op("replay_run", "POST", "/api/v1/runs/{id}/replay", replay_run, "admin",
       "Replay a finished run as a new run (same function, same trigger event), or rerun it from a step", "runs",
       [_ok(201, schemas.ReplayOut)], body=schemas.ReplayIn, body_required=False, errors=[404, 413, 503],
       path_params=RUN_ID, path_schemas=ID_SCHEMA,
       description="With from_step: the new run's memo holds the original's finished steps before that step "
                   "(they are not run again). With data: it replaces the trigger event's data for the new run "
                   "(without from_step, the whole run is run again on it)."),
    Op("bulk_replay", "POST", "/api/v1/replay", bulk_replay, "admin", "Replay many finished runs of a function",
       "runs", [_ok(201, schemas.BulkReplayOut, "Replays created"), _ok(200, schemas.BulkReplayOut, "Dry run")],
       body=schemas.BulkReplayIn, errors=[404, 413, 503]),
    Op("bulk_cancel", "POST", "/api/v1/cancellations", bulk_cancel, "admin",
       "Cancel many unfinished runs of a function by filter", "runs",
       [_ok(200, schemas.BulkCancelOut, "Runs cancelled, or, with dry_run, the runs that match")],
       body=schemas.BulkCancelIn, errors=[404, 413, 503],
       description="Filters: status, created since/until, tenant, and a CEL 'if' over the run's event; newest "
                   "first, at most limit; the runs are cancelled in one transaction, with one audit row."),
    Op("list_functions", "GET", "/api/v1/functions", list_functions, "admin",
       "The registry, with next and last cron run and last status", "functions", [_ok(200, schemas.FunctionsOut)]),
    Op("invoke_function", "POST", "/api/v1/functions/{id}/invoke", invoke_function, "admin",
       "Run now: a new run with a manual trigger event", "functions", [_ok(201, schemas.InvokeOut)],
       body=schemas.InvokeIn, body_required=False, errors=[404, 413, 503], path_params={"id": "Function id."},
       path_schemas={"id": TEXT}, route="/api/v1/functions/{id:path}/invoke"),
    Op("add_app", "POST", "/api/v1/apps", post_app, "admin", "Sync an Inngest SDK app by its serve URL", "functions",
       [_ok(200, schemas.AppOut, "The app synced: its functions are in the registry")], body=schemas.AppIn,
       errors=[413, 502, 503],
       description="Sends the app the PUT that makes it sync (as durably dev -u URL does); the app must point its "
                   "INNGEST_BASE_URL at this server. Idempotent. 502 when the app cannot be reached or its sync "
                   "is refused, with the reason."),
    Op("get_status", "GET", "/api/v1/status/{tenant}/{function}", get_status, "admin",
       "The status blob of (tenant, function)", "status", [_ok(200, schemas.StatusOut)], errors=[404, 503],
       path_params={"tenant": "Tenant ('global' by default).", "function": "Function id."},
       path_schemas={"tenant": TEXT, "function": TEXT}, route="/api/v1/status/{tenant}/{function:path}"),
    Op("health", "GET", "/api/v1/health", health, "none", "Store and Redis reachable, workers, backlog, alerts",
       "health", [_ok(200, schemas.HealthOut, "Healthy"), _ok(503, schemas.HealthOut, "Store or Redis unreachable")],
       errors=[]),
    Op("metrics", "GET", "/metrics", metrics, "admin", "Prometheus metrics", "health",
       [_ok(200, None, "Prometheus text exposition format")], errors=[], media_type=CONTENT_TYPE_LATEST),
]
OPS.extend(controls.ops(Op, _ok, TEXT))  # pause, resume, backfill, the audit log


def create_app(settings: Settings, *, runtime: LazyRuntime | None = None,
               functions: Mapping[str, FunctionDef] | None = None, observers: list[Any] | None = None) -> Starlette:
    """The HTTP API as an ASGI app. Raises ConfigError when a required key is missing.

    ``durably server`` passes only ``settings``: the API opens a runtime of its own (no user
    code) and closes it on shutdown. ``app.asgi()`` and ``durably dev`` pass the App's
    runtime, its ``functions`` (the inline fallback's code) and its ``observers`` list (the
    API's metrics join it, to count failed status-sink writes).
    """
    owns = runtime is None
    if runtime is None:
        runtime = LazyRuntime(lambda: Runtime.open(settings, on_status_sink_error=api.metrics.status_sink_failed))
    api = Api(settings, runtime, owns_runtime=owns, functions=functions)
    if api.keys.open_kinds():
        log.warning("env %r: %s unset, so %s routes are open (allowed in dev only)", settings.env,
                    ", ".join(auth.SETTINGS[k][1] for k in api.keys.open_kinds()),
                    "/".join(api.keys.open_kinds()))
    if observers is not None:
        observers.append(api.metrics)

    async def openapi_json(request: Request) -> Response:
        try:
            auth.check_env(request, settings.env)
        except auth.EnvMismatch as exc:
            return error_response(exc)
        doc = openapi.build(OPS, env=settings.env, keys=api.keys, version=__version__,
                            server_url=request.scope.get("root_path") or "/")
        return JSON(doc)

    # One route per path with all its methods, so a 405 lists every method of the path in Allow.
    by_path: dict[str, dict[str, Callable[[Request], Awaitable[Response]]]] = {}
    for op in OPS:
        by_path.setdefault(op.route or op.path, {})[op.method] = endpoint(api, op)
    routes = [Route(path, _by_method(handlers), methods=list(handlers)) for path, handlers in by_path.items()]
    routes.append(Route("/openapi.json", openapi_json, methods=["GET"]))
    routes.extend(dashboard.routes(api))  # the dashboard: same store, same admin auth
    routes.extend(inngest_api.routes(api))  # the Inngest SDKs' endpoints, at the host root (DESIGN §11)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = f"no route {request.method} {request.url.path}" if exc.status_code == 404 else str(exc.detail)
        return error(exc.status_code, code, message, headers=exc.headers)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette):
        try:
            yield
        finally:
            await api.close()

    asgi = DurablyStarlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error},
                      middleware=[Middleware(BodyLimit, limit=MAX_BODY_BYTES)], env=settings.env)
    asgi.state.durably = api
    return asgi


def _by_method(handlers: dict[str, Callable[[Request], Awaitable[Response]]]) -> Callable[[Request], Awaitable[Response]]:
    async def dispatch(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    return dispatch
