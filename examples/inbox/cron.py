"""``POST /api/cron/background-jobs``: dispatch-only through durably's window ledger.

Each ping dispatches ``background/process.requested`` and ``background/maintenance.requested``
for the current window with ``App.dispatch_async``, the ledger durably's own
``POST /durably/api/v1/cron/{event}`` uses, so the two routes agree on a window: whichever is
pinged second in a window answers ``duplicate: true``.

- The cutover flag ``background-jobs-use-durably`` (the app's ``flags`` table) off: the work
  runs inline at once (the rollback), ``200 {"mode": "inline", ...}``.
- The store does not answer within ``DURABLY_DISPATCH_TIMEOUT``: one structured log line with
  the dispatch key and the error, then ``503 store_unavailable`` with ``Retry-After``, or, with
  ``BACKGROUND_JOBS_INLINE_EMERGENCY_FALLBACK=true``, the window's work inline, once per window
  (per process, and across processes through Redis, under durably's own inline key), and the
  window recorded in the ledger as soon as the store answers, so it is never dispatched too.
  A dispatched window is remembered in Redis beside the ledger (the same key), so a ping later
  in that window that finds the store gone does not run it inline as well.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from typing import Any

from starlette.responses import JSONResponse

import durably
from durably.errors import StoreUnavailable

from . import events as ev
from . import jobs
from .db import USE_DURABLY, get_flag

log = logging.getLogger("inbox.cron")

NAMES = (ev.PROCESS_REQUESTED, ev.MAINTENANCE_REQUESTED)
REDIS_BUDGET = 0.5  # seconds Redis may take to answer a claim: it must not hold the route up

_claimed: OrderedDict[str, float] = OrderedDict()  # windows this process ran inline
_claimed_lock = threading.Lock()


def run_inline(names: tuple[str, ...] = NAMES, keys: dict[str, str] | None = None) -> dict:
    """The cron route's work in this process, within BACKGROUND_JOBS_TIME_BUDGET: the queue
    first, then maintenance if time is left; the summary says how much of the budget is left."""
    s = jobs.res().settings
    started = time.monotonic()
    keys = keys or {}
    executor = f"inline:{os.getpid()}"
    out: dict[str, Any] = {}
    if ev.PROCESS_REQUESTED in names:
        jobs.log_cron_work(keys.get(ev.PROCESS_REQUESTED), "inline", executor)
        out["process"] = jobs.process_within_budget(s.time_budget, started)
    if ev.MAINTENANCE_REQUESTED in names:
        if time.monotonic() - started < s.time_budget:
            jobs.log_cron_work(keys.get(ev.MAINTENANCE_REQUESTED), "inline", executor)
            out["maintenance"] = {"recovered": jobs.recover_stale(s.stale_draft_minutes),
                                  "pruned": jobs.prune_drafts(s.prune_draft_days),
                                  "prunedMemory": jobs.prune_inferred_memory()}
        else:
            out["maintenance"] = {"skipped": "time budget spent"}
    out["budgetSeconds"] = s.time_budget
    out["budgetLeftSeconds"] = round(max(0.0, s.time_budget - (time.monotonic() - started)), 3)
    return out


def _window(name: str, window: int) -> tuple[str, int]:
    start = int(time.time() // window) * window
    return f"{name}:{start}", start


def _redis_key(key: str) -> str:
    """durably's own key for a window run inline (server/cron.py), so its route sees it too."""
    return f"durably:{jobs.app.settings.env}:inline:{key}"


def _ran_inline(key: str) -> bool:
    """Whether window ``key``'s work is done already, inline or dispatched (this process, or
    any process through Redis): then the ping is a duplicate, whatever the store says."""
    with _claimed_lock:
        if key in _claimed:
            return True
    try:
        return bool(jobs.res().redis.exists(_redis_key(key)))
    except Exception:  # noqa: BLE001 - Redis unknown: the ledger decides
        return False


def _claim(key: str, window: int) -> bool:
    """Take the inline run of window ``key``: once in this process, once across processes
    (Redis SET NX). Redis unreachable: this process's claim alone (logged)."""
    with _claimed_lock:
        if key in _claimed:
            return False
        _claimed[key] = time.time()
        while len(_claimed) > 1024:
            _claimed.popitem(last=False)
    try:
        return bool(jobs.res().redis.set(_redis_key(key), jobs.app.settings.env, nx=True, ex=window + 3600))
    except Exception as exc:  # noqa: BLE001 - the work runs: better than a gap in it
        log.error(json.dumps({"event": "inbox.cron.inline_claim_failed", "dispatchKey": key, "error": str(exc)}))
        return True


def _mark_dispatched(key: str, window: int) -> None:
    with _claimed_lock:
        _claimed[key] = time.time()
        while len(_claimed) > 1024:
            _claimed.popitem(last=False)
    try:
        jobs.res().redis.set(_redis_key(key), "dispatched", ex=window + 3600)
    except Exception as exc:  # noqa: BLE001 - this process still knows; others ask the ledger
        log.warning(json.dumps({"event": "inbox.cron.mark_failed", "dispatchKey": key, "error": str(exc)}))


async def _record_when_back(name: str, window_start: int, window: int) -> None:
    """Until the window ends: record it in the ledger as soon as the store answers."""
    pause = 0.5
    while time.time() < window_start + window:
        try:
            await jobs.app.record_dispatch_async(name, window_start)
            log.info(json.dumps({"event": "inbox.cron.inline_recorded", "dispatchKey": f"{name}:{window_start}"}))
            return
        except StoreUnavailable:
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)
        except Exception:  # noqa: BLE001 - the next ping of the window is a duplicate anyway (Redis)
            log.exception("could not record the inline window %s:%s", name, window_start)
            return


_background: set[asyncio.Task] = set()


async def _dispatch(name: str, window: int) -> dict:
    key, start = _window(name, window)
    if _ran_inline(key):  # done already: ran inline while the store was away, or dispatched
        return {"dispatchKey": key, "eventId": f"cron:{key}", "duplicate": True, "mode": "known", "runs": []}
    try:
        d = await jobs.app.dispatch_async(name, window=window, data={"source": "cron"})
    except StoreUnavailable as exc:
        return {"dispatchKey": key, "windowStart": start, "error": str(exc)}
    if d["dispatchKey"] == key:
        # Remember the window as done beside the ledger: a ping later in the window that finds
        # the store gone must not run the work inline as well.
        await asyncio.to_thread(_mark_dispatched, key, window)
    return {**d, "mode": "dispatch"}


async def handle(settings: Any) -> JSONResponse:
    """The route's body, once the cron secret was checked."""
    window = settings.dispatch_window
    if not await asyncio.to_thread(get_flag, jobs.res().pool, USE_DURABLY):
        summary = await asyncio.to_thread(run_inline)
        return JSONResponse({"mode": "inline", "reason": f"flag {USE_DURABLY} is off", **summary}, status_code=200)
    results = await asyncio.gather(*(_dispatch(name, window) for name in NAMES))
    failed = [(name, r) for name, r in zip(NAMES, results) if "error" in r]
    if not failed:
        duplicate = all(r["duplicate"] for r in results)
        body = {"mode": "dispatch", "dispatchKey": results[0]["dispatchKey"], "duplicate": duplicate,
                "dispatches": results, "runs": [x for r in results for x in r["runs"]]}
        return JSONResponse(body, status_code=200 if duplicate else 202)
    keys = {name: r["dispatchKey"] for name, r in failed}
    error = failed[0][1]["error"]
    # One line, its fields in the message itself (a handler printing only %(message)s keeps them).
    log.error(json.dumps({"event": "inbox.cron.dispatch_failed", "env": jobs.app.settings.env,
                          "dispatchKeys": list(keys.values()), "error": error,
                          "fallback": "inline" if settings.inline_fallback else "none"}))
    if not settings.inline_fallback:
        return JSONResponse({"error": {"code": "store_unavailable", "message": f"dispatch failed: {error}",
                                       "dispatchKeys": list(keys.values())}},
                            status_code=503, headers={"Retry-After": "5"})
    mine = tuple(name for name in keys if _claim(keys[name], window))
    summary = await asyncio.to_thread(run_inline, mine, keys) if mine else {}
    for name in mine:
        start = int(keys[name].rsplit(":", 1)[1])
        task = asyncio.create_task(_record_when_back(name, start, window))
        _background.add(task)
        task.add_done_callback(_background.discard)
    return JSONResponse({"mode": "inline", "reason": "store_unavailable", "error": error,
                         "dispatchKeys": list(keys.values()), "duplicate": not mine, "ran": list(mine), **summary},
                        status_code=200)
