"""Operations on the ledger shared by the CLI and the HTTP API: cancel, replay, bulk replay,
rerun from a step, cron backfill, "Run now", pause and resume, the audit log, and the time filters and cursors they take.

Every action takes the ``actor`` who asks for it (role and client address) and writes its
audit row in the store, in the transaction of the action itself: an action that fails, or
changes nothing (cancelling a finished run, resuming a function that is not paused), leaves
no row. A dry run is not an action and is not recorded. ``actor=None`` records nothing
(code calling these functions directly, e.g. tests).

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
from dataclasses import dataclass
from typing import Any, Callable

from .core import eventschema
from .core.durations import parse_duration
from .errors import DurablyError, InvalidInput, NotFound, UnknownFunction
from .core.events import MANUAL_EVENT, Event, id_problem
from .core.ids import new_id
from .core.jsonutil import dumps, loads
from .core.blobs import iso
from .core.records import Audit, NewRun, Slot
from .store.base import aw
from .core.expressions import compile_expr, evaluate_bool
from .core.types import PAUSE_MODES, PENDING, REPLAYABLE, RUN_STATUSES

MAX_LIST = 1000
MAX_BACKFILL_TICKS = 1000  # cron ticks one backfill may fire
BACKFILL_CHUNK = 100  # ticks fired per transaction in a backfill
REPLAY_CHUNK = 50  # replays created per transaction in a bulk replay


class Conflict(DurablyError):
    """The run is not in a state that allows this."""

    code = "conflict"


ROLES = ("operator", "viewer", "cli")


@dataclass(frozen=True)
class Actor:
    """Who performs an action: ``operator`` (the admin token), ``viewer`` or ``cli``, and the
    client address of the request (None from the CLI)."""

    role: str
    client: str | None = None

    def audit(self, action: str, target: str | None, **params: Any) -> Audit:
        return Audit(role=self.role, action=action, target=target,
                     params={k: v for k, v in params.items() if v is not None}, client=self.client)


CLI = Actor("cli")


def _audit(actor: Actor | None, action: str, target: str | None, **params: Any) -> Audit | None:
    """The audit row of an action, or None when nobody is to be recorded."""
    return actor.audit(action, target, **params) if actor is not None else None


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


async def run_now(store: Any, function_id: str, data: dict | None = None, *, actor: Actor | None = None) -> dict:
    """"Run now": a new run of ``function_id`` with a manual trigger event carrying ``data``."""
    config = await function_config(store, function_id)
    check_run_now_data(config, data)
    event = Event(MANUAL_EVENT, dict(data or {}))
    event.encode()  # serializable and under the size limit
    now = await aw(store.now())
    run = _plan(config, event.to_dict(), "manual", now)
    (run_id,) = await aw(store.create_runs([run], _audit(actor, "run_now", function_id, event_id=event.id,
                                                         data=data or None)))
    if run_id is None:
        raise Conflict(f"function {function_id!r} created no run (see the skips of event {event.id})")
    return {"id": run_id, "function_id": function_id, "event_id": event.id}


# --- cancel and replay -------------------------------------------------------------------------


async def _get(store: Any, run_id: str) -> dict:
    r = await aw(store.get_run(run_id, with_steps=False))
    if r is None:
        raise NotFound(f"no run {run_id!r} in env {store.env!r}")
    return r


async def cancel_run(store: Any, run_id: str, reason: str = "cancelled by user", *,
                     actor: Actor | None = None) -> dict:
    if not await aw(store.cancel_run(run_id, reason, _audit(actor, "cancel", run_id))):
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


async def replay_run(store: Any, run_id: str, *, actor: Actor | None = None) -> dict:
    """Replay one finished run as a new run; returns the new run's id."""
    original = await _get(store, run_id)
    if original["status"] not in REPLAYABLE:
        raise Conflict(f"run {run_id} is {original['status']}; only finished runs (completed, failed, "
                       "cancelled) can be replayed")
    config = await function_config(store, original["function_id"])
    run = _replay_of(config, original, await aw(store.now()))
    (new,) = await aw(store.create_runs([run], _audit(actor, "replay", run_id, function_id=original["function_id"])))
    if new is None:
        raise Conflict(f"the replay of run {run_id} created no run (a flow-control key is held)")
    return {"id": new, "replay_of": run_id, "function_id": original["function_id"]}


async def rerun_from_step(store: Any, run_id: str, from_step: str | None, data: dict | None = None, *,
                          actor: Actor | None = None) -> dict:
    """Rerun a finished run from one of its steps: a new run of the same function (trigger
    ``replay``, ``replay_of`` the original) whose memo holds the original's finished steps
    recorded before ``from_step`` (copied with their outputs, so they replay and are not run
    again); ``from_step`` and every step after it run afresh (``None``: from the start, a
    replay). ``data``, if given, replaces the trigger event's data for the new run (its keys,
    tenant and ``ctx.event.data`` follow it; a batch run rerun on new data is a batch of that
    one event)."""
    if from_step is not None and (not isinstance(from_step, str) or not from_step):
        raise InvalidInput("from_step: must be the id of one of the run's steps")
    if data is not None and not isinstance(data, dict):
        raise InvalidInput(f"data: must be a JSON object, got {type(data).__name__}")
    original = await aw(store.get_run(run_id, with_steps=True))
    if original is None:
        raise NotFound(f"no run {run_id!r} in env {store.env!r}")
    if original["status"] not in REPLAYABLE:
        raise Conflict(f"run {run_id} is {original['status']}; only finished runs (completed, failed, "
                       "cancelled) can be rerun")
    steps = sorted(original.get("steps") or [], key=lambda s: s["seq"])
    target = next((s for s in steps if s["step_id"] == from_step), None)
    if target is None and from_step is not None:
        known = ", ".join(repr(s["step_id"]) for s in steps[:10]) or "none"
        raise InvalidInput(f"from_step: run {run_id} has no step {from_step!r} (its steps: {known})")
    config = await function_config(store, original["function_id"])
    source = original
    if data is not None and data == (original.get("event") or {}).get("data"):
        data = None  # the same data (a form sent back unedited): a batch run keeps all its events
    if data is not None:
        event = {**(original.get("event") or {}), "data": data}
        Event(MANUAL_EVENT, data).encode()  # serializable, under the size limit, no NUL
        source = {**original, "event": event, "events": [event] if original.get("events") else None}
    run = _replay_of(config, source, await aw(store.now()))
    before = target["seq"] if target is not None else -1
    if target is not None:
        run.memo_of = (run_id, before)
    audit = _audit(actor, "rerun_from_step", run_id, function_id=original["function_id"], from_step=from_step,
                   data=data)
    (new,) = await aw(store.create_runs([run], audit))
    if new is None:
        raise Conflict(f"the rerun of run {run_id} created no run (a flow-control key is held)")
    memo = [s["step_id"] for s in steps if s["seq"] < before and s["status"] in ("completed", "failed")]
    return {"id": new, "replay_of": run_id, "function_id": original["function_id"], "from_step": from_step,
            "memo": memo}


async def bulk_replay(store: Any, *, function_id: str, status: str = "failed", since: float | None = None,
                      until: float | None = None, limit: int = 100, concurrency: int | None = None,
                      dry_run: bool = False, progress: Callable[[int, int], None] | None = None,
                      tenant: str | None = None, actor: Actor | None = None) -> dict:
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
        # One audit row for the bulk replay, in the transaction of the first chunk that creates a run.
        audit = None if created else _audit(actor, "bulk_replay", function_id, status=status, since=since,
                                            until=until, tenant=tenant, limit=limit, concurrency=concurrency,
                                            batch_id=batch, matched=len(originals))
        ids = await aw(store.create_runs([_replay_of(config, r, now, slot) for r in chunk], audit))
        for item, new in zip(items[i:i + REPLAY_CHUNK], ids):
            item["replay_id"] = new
            created += new is not None
        if progress:
            progress(min(i + REPLAY_CHUNK, len(originals)), len(originals))
    out["count"] = created
    return out


CANCELLABLE: tuple[str, ...] = (*PENDING, "running")


async def cancel_runs(store: Any, run_ids: list[str], reason: str = "cancelled by user (selected)", *,
                      actor: Actor | None = None) -> dict:
    """Cancel the runs of ``run_ids`` (the dashboard's Cancel selected) in one transaction, with
    one audit row; those that had ended (or do not exist) are reported under ``already_ended``,
    not cancelled."""
    if not isinstance(run_ids, list) or not run_ids:
        raise InvalidInput("select at least one run to cancel")
    if len(run_ids) > MAX_LIST:
        raise InvalidInput(f"at most {MAX_LIST} runs at once, got {len(run_ids)}")
    for rid in run_ids:
        if not isinstance(rid, str) or id_problem(rid) is not None:
            raise InvalidInput(f"not a run id: {str(rid)[:80]!r}")
    ids = list(dict.fromkeys(run_ids))  # each once, in the order given
    done = await aw(store.cancel_runs(ids, reason, _audit(actor, "cancel_selected", None, runs=len(ids))))
    out: dict[str, Any] = {"count": 0, "runs": [], "already_ended": []}
    for rid, ok in zip(ids, done):
        out["runs" if ok else "already_ended"].append(rid)
    out["count"] = len(out["runs"])
    return out


async def bulk_cancel(store: Any, *, function_id: str, status: str | None = None, since: float | None = None,
                      until: float | None = None, tenant: str | None = None, if_: str | None = None,
                      limit: int = 100, dry_run: bool = False,
                      reason: str = "cancelled by user (bulk)", actor: Actor | None = None) -> dict:
    """Cancel the unfinished runs of a function that match every filter given: ``status`` (one
    of queued, running, sleeping, waiting; default all four), created in [``since``, ``until``],
    ``tenant``, and ``if_``, a CEL expression over the run's ``event`` (``event.data.plan ==
    'free'``). Newest first, at most ``limit``. ``dry_run`` lists them and cancels nothing.

    The runs are cancelled in one transaction, each as ``cancel_run`` does (its unfinished
    steps end ``cancelled``, its slots and waits are freed), with the action's audit row; one
    that ended meanwhile is left as it ended and reported under ``already_ended``."""
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
    if not items:
        return out
    audit = _audit(actor, "bulk_cancel", function_id, status=status, tenant=tenant, since=since, until=until,
                   limit=limit, matched=len(items), **({"if": if_} if if_ else {}))
    done = await aw(store.cancel_runs([item["id"] for item in items], reason, audit))
    cancelled = 0
    for item, ok in zip(items, done):
        if ok:
            item["status"] = "cancelled"
            cancelled += 1
        else:
            out["already_ended"].append(item["id"])
    out["count"] = cancelled
    return out


# --- pause and resume ----------------------------------------------------------------------------


async def pause(store: Any, function_id: str, *, skip: bool = False, actor: Actor | None = None) -> dict:
    """Pause a function: none of its runs is claimed (new ones, ones due after a sleep or a
    retry, ones resumed after a crash) until it is resumed; a run executing now goes on.
    New triggers still create runs that wait in ``queued``, or, with ``skip``, are recorded
    as skipped with reason ``paused``."""
    await function_config(store, function_id)
    mode = PAUSE_MODES[1] if skip else PAUSE_MODES[0]
    before = await aw(store.pause_function(function_id, mode, _audit(actor, "pause", function_id, mode=mode)))
    return {"function_id": function_id, "paused": True, "mode": mode, "was_paused": before is not None}


async def resume(store: Any, function_id: str, *, actor: Actor | None = None) -> dict:
    """Resume a paused function: the runs that waited start in their order."""
    await function_config(store, function_id)
    was = await aw(store.resume_function(function_id, _audit(actor, "resume", function_id)))
    return {"function_id": function_id, "paused": False, "mode": None, "was_paused": was}


# --- the audit log -------------------------------------------------------------------------------


def audit_json(r: dict) -> dict:
    return {"id": r["id"], "at": iso(r["at"]), "env": r["env"], "role": r["role"], "action": r["action"],
            "target": r["target"], "params": r["params"], "client": r["client"]}


async def audit_log(store: Any, *, limit: int = 50, cursor: str | None = None) -> dict:
    """The audit log, newest first: ``{"entries": [...], "next_cursor"}`` as the other lists."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST:
        raise InvalidInput(f"limit: must be an integer from 1 to {MAX_LIST}, got {limit!r}")
    after = decode_cursor(cursor) if cursor else None
    rows = await aw(store.list_audit(cursor=after, limit=limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = encode_cursor(rows[-1]["at"], rows[-1]["id"]) if more else None
    return {"entries": [audit_json(r) for r in rows], "next_cursor": nxt}


# --- cron backfill ------------------------------------------------------------------------------


async def backfill(store: Any, function_id: str, start: float | None, end: float | None,
                   dry_run: bool = False, *, actor: Actor | None = None) -> dict:
    """Fire every tick of a cron function's schedules in [``start``, ``end``] (epoch seconds, in
    the schedules' time zones) once, under the tick's unique key, the one the scheduler uses:
    ticks already fired (by a scheduler or an earlier backfill) are skipped, never duplicated.
    ``dry_run`` lists the ticks and writes nothing. At most ``MAX_BACKFILL_TICKS`` ticks."""
    from .core.cron import ticks_between

    config = await function_config(store, function_id)
    if start is None or end is None:
        raise InvalidInput("from and to: both are required (ISO-8601, or a duration ago such as '2h')")
    if start > end:
        raise InvalidInput(f"from ({iso(start)}) is after to ({iso(end)})")
    now = await aw(store.now())
    if end > now + 1:
        raise InvalidInput(f"to ({iso(end)}) is in the future; the scheduler fires the ticks still to come")
    schedules = [(t["cron"], t.get("tz", "UTC")) for t in config.get("triggers", []) if "cron" in t]
    if not schedules:
        raise InvalidInput(f"function {function_id!r} has no cron trigger: only cron functions can be backfilled")
    due: dict[float, tuple[str, str, float]] = {}
    for expr, tz in schedules:
        for tick in ticks_between(expr, tz, start, end, MAX_BACKFILL_TICKS):
            due.setdefault(tick, (expr, tz, tick))  # two schedules on one time: one tick (one key)
        if len(due) > MAX_BACKFILL_TICKS:
            raise InvalidInput(f"the range holds more than {MAX_BACKFILL_TICKS} ticks of {function_id!r}; "
                               "backfill a shorter range at a time")
    ticks = [due[t] for t in sorted(due)]
    items: list[dict[str, Any]] = [{"tick": iso(t), "cron": expr, "tz": tz, "fired": False, "run_id": None}
                                   for expr, tz, t in ticks]
    out: dict[str, Any] = {"dry_run": dry_run, "function_id": function_id, "from": iso(start), "to": iso(end),
                           "ticks": items, "fired": 0, "skipped": 0, "runs": []}
    if dry_run:
        return out
    for i in range(0, len(ticks), BACKFILL_CHUNK):
        chunk = ticks[i:i + BACKFILL_CHUNK]  # one audit row per transaction that fired a tick
        audit = _audit(actor, "backfill", function_id, **{"from": iso(chunk[0][2]), "to": iso(chunk[-1][2])})
        done = await aw(store.backfill_cron(function_id, chunk, audit))
        for item, res in zip(items[i:i + BACKFILL_CHUNK], done):
            item.update(fired=res["fired"], run_id=res["run_id"], event_id=res["event_id"])
            if res["run_id"]:
                out["runs"].append(res["run_id"])
    out["fired"] = sum(1 for x in items if x["fired"])
    out["skipped"] = len(items) - out["fired"]
    return out
