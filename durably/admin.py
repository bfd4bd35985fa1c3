"""Operations on the ledger shared by the CLI and the HTTP API: cancel, replay, bulk replay,
"Run now", and the time filters and cursors they take.

A replay is a new run of the same function with the original trigger event (trigger
``replay``, ``replay_of`` = the original run). "Run now" is a new run with a manual trigger
event. Both go through the function's flow control like any run (concurrency keys, tenant,
priority), except its idempotency key: a replay or a manual run is asked for on purpose,
so the key that the original run holds must not swallow it.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import math
from datetime import datetime, timezone
from typing import Any, Callable

from .core import eventschema
from .core.durations import parse_duration
from .errors import DurablyError, InvalidInput, NotFound, UnknownFunction
from .core.events import MANUAL_EVENT, Event, id_problem
from .core.ids import new_id
from .core.jsonutil import dumps, loads
from .core.blobs import iso
from .core.records import NewRun, Slot
from .store.base import aw
from .core.expressions import compile_expr, evaluate_bool
from .core.types import PENDING, REPLAYABLE, RUN_STATUSES

MAX_LIST = 1000
REPLAY_CHUNK = 50  # replays created per transaction in a bulk replay


class Conflict(DurablyError):
    """The run is not in a state that allows this."""

    code = "conflict"


# --- time filters and cursors ----------------------------------------------------------------


def parse_time(value: str | None, *, name: str, now: float) -> float | None:
    """``since``/``until``: an ISO-8601 time (UTC if no offset) or a duration ago (``"1h"``)."""
    if value is None or value == "":
        return None
    text = value.strip()
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        pass
    else:
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return dt.timestamp()
    try:
        seconds = parse_duration(text, name=name)
    except InvalidInput:
        raise InvalidInput(f"{name}: {value!r} is neither an ISO-8601 time (2025-01-31T09:00:00Z) "
                           "nor a duration ago such as '30m', '1h' or '7d'") from None
    return now - seconds


def encode_cursor(at: float, id: str) -> str:
    """An opaque page cursor: the position (time, id) of the last item of a page."""
    return base64.urlsafe_b64encode(dumps([at, id]).encode()).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        at, id = loads(raw)
        if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at) or not isinstance(id, str):
            raise ValueError
        if id_problem(id) is not None:  # every id on a page is one the store holds
            raise ValueError
        return float(at), id
    except (ValueError, TypeError, binascii.Error):
        raise InvalidInput("cursor: not a cursor this API returned (pass next_cursor from the previous page)") from None


# --- functions ---------------------------------------------------------------------------------


async def function_config(store: Any, function_id: str) -> dict:
    config = await aw(store.get_function(function_id))
    if config is None:
        known = await aw(store.registry())
        close = difflib.get_close_matches(function_id, list(known), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else " (workers register their functions when they start)"
        raise UnknownFunction(f"no function {function_id!r} is registered in env {store.env!r}{hint}")
    return config


typed_event = eventschema.typed_event  # the function's first typed event: Run now's data must fit its schema
check_run_now_data = eventschema.check_config  # InvalidEvent unless the data fits the function's event schema


def _plan(config: dict, event: dict, trigger: str, now: float) -> NewRun:
    from .core.flow import plan

    planned = plan(config, event, None, now, trigger=trigger)
    if not isinstance(planned, NewRun):  # no filter (if_) is passed; the tenant rule can skip
        why = f": skipped ({planned.reason})" if planned is not None else ""
        raise InvalidInput(f"function {config['id']!r} planned no run for a {trigger} trigger{why}")
    planned.unique_keys = [k for k in planned.unique_keys if k.kind != "idempotency"]
    planned.idempotency_key = None
    return planned


async def run_now(store: Any, function_id: str, data: dict | None = None) -> dict:
    """"Run now": a new run of ``function_id`` with a manual trigger event carrying ``data``."""
    config = await function_config(store, function_id)
    check_run_now_data(config, data)
    event = Event(MANUAL_EVENT, dict(data or {}))
    event.encode()  # serializable and under the size limit
    now = await aw(store.now())
    run = _plan(config, event.to_dict(), "manual", now)
    (run_id,) = await aw(store.create_runs([run]))
    if run_id is None:
        raise Conflict(f"function {function_id!r} created no run (see the skips of event {event.id})")
    return {"id": run_id, "function_id": function_id, "event_id": event.id}


# --- cancel and replay -------------------------------------------------------------------------


async def _get(store: Any, run_id: str) -> dict:
    r = await aw(store.get_run(run_id, with_steps=False))
    if r is None:
        raise NotFound(f"no run {run_id!r} in env {store.env!r}")
    return r


async def cancel_run(store: Any, run_id: str, reason: str = "cancelled by user") -> dict:
    if not await aw(store.cancel_run(run_id, reason)):
        r = await _get(store, run_id)
        raise Conflict(f"run {run_id} is already {r['status']}; only unfinished runs can be cancelled")
    return {"id": run_id, "status": "cancelled"}


def _replay_of(config: dict, original: dict, now: float, slot: Slot | None = None) -> NewRun:
    run = _plan(config, original["event"], "replay", now)
    run.replay_of = original["id"]
    run.events = original.get("events")
    if slot is not None:
        run.slots = [*run.slots, slot]
    return run


async def replay_run(store: Any, run_id: str) -> dict:
    """Replay one finished run as a new run; returns the new run's id."""
    original = await _get(store, run_id)
    if original["status"] not in REPLAYABLE:
        raise Conflict(f"run {run_id} is {original['status']}; only finished runs (completed, failed, "
                       "cancelled) can be replayed")
    config = await function_config(store, original["function_id"])
    run = _replay_of(config, original, await aw(store.now()))
    (new,) = await aw(store.create_runs([run]))
    if new is None:
        raise Conflict(f"the replay of run {run_id} created no run (a flow-control key is held)")
    return {"id": new, "replay_of": run_id, "function_id": original["function_id"]}


async def bulk_replay(store: Any, *, function_id: str, status: str = "failed", since: float | None = None,
                      until: float | None = None, limit: int = 100, concurrency: int | None = None,
                      dry_run: bool = False, progress: Callable[[int, int], None] | None = None,
                      tenant: str | None = None) -> dict:
    """Replay the finished runs of a function in a time range (oldest first, at most ``limit``),
    of one ``tenant`` if given (e.g. one client's failed runs).

    Runs already replayed are left out, so repeating a bulk replay replays nothing twice.
    ``dry_run`` lists the runs and creates nothing. ``concurrency`` caps how many of these
    replays run at once, on every worker: each replay also takes a slot of one concurrency
    key made for this batch, held only while it runs, so the cap holds without anyone
    feeding the queue and survives restarts. ``progress(done, total)`` follows creation.
    """
    if status not in REPLAYABLE:
        raise InvalidInput(f"status: {status!r} cannot be replayed; use one of {', '.join(REPLAYABLE)}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST:
        raise InvalidInput(f"limit: must be an integer from 1 to {MAX_LIST}, got {limit!r}")
    if concurrency is not None and (isinstance(concurrency, bool) or not isinstance(concurrency, int)
                                    or concurrency < 1):
        raise InvalidInput(f"concurrency: must be an integer >= 1, got {concurrency!r}")
    config = await function_config(store, function_id)
    originals = await aw(store.replay_candidates(function_id=function_id, status=status, since=since,
                                                 until=until, limit=limit, tenant=tenant))
    items = [{"id": r["id"], "status": r["status"], "created_at": iso(r["created_at"]),
              "error": r.get("error"), "replay_id": None} for r in originals]
    out: dict[str, Any] = {"dry_run": dry_run, "function_id": function_id, "count": len(items), "runs": items,
                           "batch_id": None, "concurrency": concurrency}
    if dry_run or not originals:
        return out
    batch = new_id()
    slot = Slot(f"replay:{batch}", concurrency) if concurrency else None
    out["batch_id"] = batch
    created = 0
    if progress:
        progress(0, len(originals))
    for i in range(0, len(originals), REPLAY_CHUNK):
        chunk = originals[i:i + REPLAY_CHUNK]
        now = await aw(store.now())
        ids = await aw(store.create_runs([_replay_of(config, r, now, slot) for r in chunk]))
        for item, new in zip(items[i:i + REPLAY_CHUNK], ids):
            item["replay_id"] = new
            created += new is not None
        if progress:
            progress(min(i + REPLAY_CHUNK, len(originals)), len(originals))
    out["count"] = created
    return out


CANCELLABLE: tuple[str, ...] = (*PENDING, "running")


async def bulk_cancel(store: Any, *, function_id: str, status: str | None = None, since: float | None = None,
                      until: float | None = None, tenant: str | None = None, if_: str | None = None,
                      limit: int = 100, dry_run: bool = False,
                      reason: str = "cancelled by user (bulk)") -> dict:
    """Cancel the unfinished runs of a function that match every filter given: ``status`` (one
    of queued, running, sleeping, waiting; default all four), created in [``since``, ``until``],
    ``tenant``, and ``if_``, a CEL expression over the run's ``event`` (``event.data.plan ==
    'free'``). Newest first, at most ``limit``. ``dry_run`` lists them and cancels nothing.

    Each run is cancelled in its own transaction, as ``cancel_run`` does (its unfinished steps
    end ``cancelled``, its slots and waits are freed); one that ended meanwhile is left as it
    ended and reported under ``already_ended``."""
    if status is not None and status not in CANCELLABLE:
        raise InvalidInput(f"status: {status!r} cannot be cancelled; use one of {', '.join(CANCELLABLE)}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST:
        raise InvalidInput(f"limit: must be an integer from 1 to {MAX_LIST}, got {limit!r}")
    if if_ is not None:
        if not isinstance(if_, str) or not if_.strip():
            raise InvalidInput("if: must be a CEL expression over event, e.g. event.data.plan == 'free'")
        compile_expr(if_)  # a parse error is a clear InvalidInput now, not once per run
    await function_config(store, function_id)  # an unknown function: NotFound with suggestions
    matched: list[dict] = []
    for s in ([status] if status else CANCELLABLE):
        cursor = None
        while len(matched) < limit:
            page = await aw(store.list_runs(status=s, function_id=function_id, tenant=tenant, since=since,
                                            until=until, cursor=cursor, limit=200))
            for r in page:
                if if_ is None or evaluate_bool(if_, {"event": r.get("event") or {}}):
                    matched.append(r)
                    if len(matched) >= limit:
                        break
            if len(page) < 200:
                break
            cursor = (page[-1]["created_at"], page[-1]["id"])
    items = [{"id": r["id"], "status": r["status"], "tenant": r["tenant"], "created_at": iso(r["created_at"])}
             for r in matched]
    out: dict[str, Any] = {"dry_run": dry_run, "function_id": function_id, "count": len(items), "runs": items,
                           "already_ended": []}
    if dry_run:
        return out
    cancelled = 0
    for item in items:
        if await aw(store.cancel_run(item["id"], reason)):
            item["status"] = "cancelled"
            cancelled += 1
        else:
            out["already_ended"].append(item["id"])
    out["count"] = cancelled
    return out
