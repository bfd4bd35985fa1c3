"""The dispatch-only cron endpoint (``POST /api/v1/cron/{event_name}``): one event per window,
in bounded time, and the inline fallback when the store is unreachable (DESIGN §3).

A ping sends the window's event through the store's dispatch ledger (``Store.dispatch``). If the
store does not answer within ``DURABLY_DISPATCH_TIMEOUT`` and ``DURABLY_INLINE_FALLBACK`` is on
where the app's code is loaded, the window's work runs inline instead: once per process, once
across processes with Redis, and recorded in the store as dispatched as soon as it answers, so
that the window is never dispatched again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from starlette.responses import Response

from ..core.blobs import iso
from ..core.events import Event, name_problem
from ..errors import InvalidInput, StoreUnavailable
from ..store.base import aw_within, within
from .http import JSON

if TYPE_CHECKING:
    from .api import Api, Call

log = logging.getLogger("durably.server")


async def post_cron(c: Call) -> Response:
    from .api import _check_name

    api, name = c.api, c.path("event_name")
    window: int = c.query.window
    _check_name(name, "event_name")
    problem = name_problem(name)
    if problem is not None:
        raise InvalidInput(f"event_name: {problem}")
    event = {"name": name, "data": {}}
    if api.inline_fallback:
        # A window whose work ran inline (here, or in another process when Redis is
        # configured) is not dispatched again, even once the store answers.
        done = await _ran_inline(api, name, window)
        if done is not None:
            return done
    try:
        with api.bounded():
            runtime = await api.open()
            registering = runtime.registry.register()
            if registering is not None:
                await aw_within(registering)
            d = await aw_within(runtime.store.dispatch(name, window, event))
    except StoreUnavailable as exc:
        if api.inline_fallback:
            return await _inline(api, name, window, exc)
        api.metrics.cron_pings.labels("unavailable").inc()
        raise StoreUnavailable(f"cannot dispatch {name!r}: {exc}") from None
    api.metrics.cron_pings.labels("duplicate" if d["duplicate"] else "dispatched").inc()
    body = {"dispatchKey": f"{name}:{d['window_start']}", "eventId": d["event_id"], "duplicate": d["duplicate"],
            "mode": "dispatch", "window": window, "windowStart": iso(d["window_start"]), "pings": d["pings"],
            "runs": d["runs"]}
    return JSON(body, status_code=200 if d["duplicate"] else 202)


def _window(name: str, window: int) -> tuple[str, int]:
    """The dispatch key and start of the window now, on this host's clock (no store to ask)."""
    window_start = int(time.time() // window) * window
    return f"{name}:{window_start}", window_start


def _inline_body(api: Api, key: str, window: int, window_start: int) -> dict[str, Any]:
    return {"dispatchKey": key, "eventId": f"cron:{key}", "mode": "inline", "window": window,
            "windowStart": iso(window_start), "pings": 0, "runs": []}


def _inline_redis_key(api: Api, key: str) -> str:
    return f"durably:{api.settings.env}:inline:{key}"


# Redis is asked within this budget (of the dispatch's): a Redis in trouble too must not
# take the cron endpoint past its deadline.
REDIS_BUDGET = 0.5


async def _redis_call(api: Api, call: Callable[[Any], Awaitable[Any]]) -> Any:
    """``call(redis)`` within REDIS_BUDGET; raises on any failure."""
    budget = min(REDIS_BUDGET, api.settings.dispatch_timeout / 4)
    return await asyncio.wait_for(call(await api.redis()), budget)


async def _ran_inline(api: Api, name: str, window: int) -> Response | None:
    """The answer to a ping of a window whose work ran inline already, or None."""
    key, window_start = _window(name, window)
    mine = key in api.inline_windows
    if not mine and api.settings.redis_url:
        try:
            mine = bool(await _redis_call(api, lambda r: r.exists(_inline_redis_key(api, key))))
        except Exception as exc:  # noqa: BLE001 - Redis unknown: the store's window decides
            log.warning("cannot ask Redis whether window %s ran inline: %s", key, exc)
    if not mine:
        return None
    if key in api.inline_unrecorded:
        await _record_inline(api, name, window, window_start)
    api.metrics.cron_pings.labels("duplicate").inc()
    return JSON({**_inline_body(api, key, window, window_start), "duplicate": True, "inline": []})


async def _record_inline(api: Api, name: str, window: int, window_start: int) -> bool:
    """Record in the store that ``window`` of ``name`` was dispatched (its work ran inline),
    so that no process dispatches it when the store answers again. False: not reachable."""
    key = f"{name}:{window_start}"
    try:
        with api.bounded():
            runtime = await api.open()
            await aw_within(runtime.store.record_dispatch(name, window_start, f"cron:{key}"))
    except StoreUnavailable:
        return False
    api.inline_unrecorded.discard(key)
    return True


def _record_when_back(api: Api, name: str, window_start: int, window: int) -> None:
    """In a thread, until the window ends: record the window ``_inline`` ran in the store as
    soon as the store answers (``record_dispatch``), so that no process, with Redis or
    without, dispatches it then. Only on a runtime already open; stops when it closes."""
    key = f"{name}:{window_start}"
    pause = 0.5
    while time.time() < window_start + window and key in api.inline_unrecorded:
        runtime = api.runtime.current
        if runtime is None:
            return
        try:
            with api.bounded():
                within(runtime.store.record_dispatch(name, window_start, f"cron:{key}"))
        except StoreUnavailable:
            time.sleep(pause)  # the store is still away: try again later
            pause = min(pause * 2, 10.0)
            continue
        except Exception:  # noqa: BLE001 - the next ping of the window records it
            log.exception("could not record inline window %s in the store", key)
            return
        api.inline_unrecorded.discard(key)
        return


async def _claim_inline(api: Api, key: str, window: int) -> bool:
    """Take the inline run of window ``key``: once per process, and once across processes
    with Redis (``SET NX``). Redis unreachable: this process's claim alone (logged)."""
    if key in api.inline_windows:
        return False
    api.inline_windows[key] = 1
    while len(api.inline_windows) > 1024:
        api.inline_windows.popitem(last=False)
    if not api.settings.redis_url:
        return True
    try:
        won = await _redis_call(api, lambda r: r.set(_inline_redis_key(api, key), api.settings.env, nx=True,
                                                     ex=window + 3600))
    except Exception as exc:  # noqa: BLE001 - the work runs: better than a gap in it
        log.error("cannot claim window %s in Redis (running it inline in this process only): %s", key, exc)
        return True
    return bool(won)


async def _inline(api: Api, name: str, window: int, cause: BaseException) -> Response:
    from ..runtime import run_inline

    key, window_start = _window(name, window)
    body = _inline_body(api, key, window, window_start)
    if not await _claim_inline(api, key, window):  # no store to dedupe in: this process, or Redis
        api.metrics.cron_pings.labels("duplicate").inc()
        return JSON({**body, "duplicate": True, "inline": []})
    api.inline_unrecorded.add(key)
    threading.Thread(target=_record_when_back, args=(api, name, window_start, window),
                     name="durably-inline-record", daemon=True).start()
    api.metrics.cron_pings.labels("inline").inc()
    event = Event(name, {"dispatch_key": key, "window_start": iso(window_start), "window": window}, id=f"cron:{key}")
    log.error(json.dumps({"event": "durably.core.cron.inline_fallback", "env": api.settings.env, "dispatchKey": key,
                          "eventName": name, "error": str(cause),
                          "message": "the store is unreachable: running the triggered functions inline"}))
    assert api.functions is not None  # inline only where the code is loaded
    results = await run_inline(api.functions, api.ingest_bounded, event.to_dict())
    return JSON({**body, "duplicate": False, "inline": results})
