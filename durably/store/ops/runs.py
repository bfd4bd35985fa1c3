"""Runs: recording events and the runs they trigger (under flow control), resolving waits,
ending runs, timeouts, cron ticks and dispatch windows."""

from __future__ import annotations

from typing import Any

from ...core import blobs as status_mod
from ...core import eventschema, flow
from ...core.jsonutil import dumps, loads
from ...core.records import ClaimedRun, IngestResult, NewRun, Skip, UniqueKey
from ...core.types import SkipReason
from ...errors import LeaseLost, UnstorableInput
from ..writer import Rejected
from .tx import Tx
from .tx import stage_blob as _status

# --- events and runs -----------------------------------------------------------------------


def ingest(tx: Tx, events: list[dict]) -> IngestResult:
    """Record events (duplicates ignored), create the runs they trigger, resolve waits."""
    res = IngestResult(ids=[], runs=[], duplicates=[])
    tx.now  # noqa: B018 - read with BEGIN, in the transaction's first round trip
    triggers: dict[str, list[tuple[Any, dict]]] = {}
    schemas: dict[str, list[Any]] = {}
    paused: set[str] = set()  # the triggered functions paused in skip mode
    for i, e in enumerate(events):  # typed events are refused before anything is written
        name = e["name"]
        if name not in triggers:
            rows = tx.all("triggers_for", env=tx.env, name=name)
            triggers[name] = [(row, loads(row["config"])) for row in rows]
            paused.update(row["function_id"] for row in rows if row["skip_paused"])
            schemas[name] = _schemas(name, triggers[name])
        for check in schemas[name]:
            check(name, e.get("data"), f"events[{i}]: " if len(events) > 1 else "")
    fresh = _record_events(tx, events, res)
    if not fresh:
        return res
    made: set[str] = set(res.runs)
    plain: list[NewRun] = []  # runs created with at most a key to take: keys, then rows, taken together
    for e in fresh:
        for row, config in triggers[e["name"]]:
            planned = flow.plan(config, e, row["if_expr"], tx.now)
            if planned is None:
                res.filtered.append({"event_id": e["id"], "function_id": config["id"],
                                     "reason": f"filter false: {row['if_expr']}"})
                continue
            if isinstance(planned, Skip):
                _skip(tx, e["id"], planned.function_id, planned.reason)
                res.skipped.append({"event_id": e["id"], "function_id": planned.function_id, "reason": planned.reason})
                continue
            if len(fresh) > 1 and _is_plain(planned, paused):
                plain.append(planned)
                res.runs.append(planned.id)
                made.add(planned.id)
                continue
            created = _create(tx, planned, paused)
            if isinstance(created, Skip):
                res.skipped.append({"event_id": e["id"], "function_id": created.function_id, "reason": created.reason})
            elif created not in made:  # a debounce or batch run that took an earlier event too
                res.runs.append(created)
                made.add(created)
    if plain:
        _insert_plain(tx, _take_keys(tx, plain, res))
    _match_waits(tx, fresh)
    return res


def _record_events(tx: Tx, events: list[dict], res: IngestResult) -> list[dict]:
    """Record the events; the ones new here, in order (an id seen within 24 h, or earlier
    in this call, is a duplicate). A list of events is written by one statement."""
    if len(events) == 1:
        e = events[0]
        res.ids.append(e["id"])
        if tx.exec("insert_event", env=tx.env, id=e["id"], name=e["name"], data=dumps(e), ts=e["ts"], now=tx.now):
            return [e]
        res.duplicates.append(e["id"])
        return []
    first: dict[str, dict] = {}
    for e in events:
        first.setdefault(e["id"], e)
        if not _INT64_MIN <= e["ts"] <= _INT64_MAX:  # JSON carries it; the store's integer does not
            raise UnstorableInput(f"the store cannot hold this input: a number out of range (event ts {e['ts']})")
    # In id order: concurrent lists that share ids lock their rows in one order (no deadlock).
    rows = dumps([[e["id"], e["name"], dumps(e), int(e["ts"])] for _id, e in sorted(first.items())])
    new = {r["id"] for r in tx.all("insert_events", env=tx.env, rows=rows, now=tx.now)}
    fresh = []
    for e in events:
        res.ids.append(e["id"])
        if e["id"] in new:
            new.discard(e["id"])  # the first of an id in the list is the one recorded
            fresh.append(e)
        else:
            res.duplicates.append(e["id"])
    return fresh


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _is_plain(run: NewRun, paused: set[str]) -> bool:
    """A run created with no more than one key to take: no window to join, no budget."""
    return not (run.rate_limit or len(run.unique_keys) > 1 or run.singleton or run.debounce or run.batch
                or run.cancel_on or run.memo_of is not None or run.plan_error or run.function_id in paused)


def _key_held(uk: UniqueKey) -> str:
    """The skip reason of a run whose unique key another run holds."""
    return f"duplicate {uk.kind} key {uk.key!r}"


def _take_keys(tx: Tx, runs: list[NewRun], res: IngestResult) -> list[NewRun]:
    """Take the idempotency keys of a list's runs in one statement; the runs that may be
    created. A key held by a live run, or taken by an earlier run of the list, skips its run."""
    first: dict[tuple[str, str], NewRun] = {}
    lost: list[NewRun] = []
    for r in runs:
        if r.unique_keys:
            uk = r.unique_keys[0]
            if first.setdefault((uk.scope, uk.key), r) is not r:
                lost.append(r)
    if not first:
        return runs
    rows = dumps([[scope, key, r.id, tx.now + r.unique_keys[0].ttl]  # in key order, as the events above
                  for (scope, key), r in sorted(first.items(), key=lambda kv: kv[0])])
    taken = {row["run_id"] for row in tx.all("take_keys", env=tx.env, rows=rows, now=tx.now)}
    lost.extend(r for r in first.values() if r.id not in taken)
    if not lost:
        return runs
    gone = {r.id for r in lost}
    at = {rid: i for i, rid in enumerate(res.runs)}
    for r in sorted(lost, key=lambda r: at[r.id]):
        uk = r.unique_keys[0]
        event_id = r.event.get("id", "")
        skip = _skip(tx, event_id, r.function_id, _key_held(uk))
        res.skipped.append({"event_id": event_id, "function_id": skip.function_id, "reason": skip.reason})
    res.runs[:] = [rid for rid in res.runs if rid not in gone]
    return [r for r in runs if r.id not in gone]


def _run_columns(run: NewRun, now: float, delay: float) -> dict[str, Any]:
    """A new run's columns, as insert_run and insert_runs write them (claimable after ``delay``)."""
    available = now + delay
    return {
        "id": run.id, "function_id": run.function_id, "tenant": run.tenant or "global", "trigger": run.trigger,
        "event_id": run.event.get("id") or None, "event": dumps(run.event),
        "events": dumps(run.events) if run.events is not None else None,
        "available_at": available, "sort_at": available - run.priority, "priority": run.priority,
        "ckeys": dumps([s.to_json() for s in run.slots]) if run.slots else None,
        "idempotency_key": run.idempotency_key, "parent_run_id": run.parent_run_id,
        "parent_step_id": run.parent_step_id, "replay_of": run.replay_of,
        "start_deadline": now + run.start_timeout if run.start_timeout else None,
        "finish_timeout": run.finish_timeout, "throttle": dumps(run.throttle.to_json()) if run.throttle else None,
        "fair_key": run.fair_key,
    }


# The order of insert_runs' JSON rows (x->>0 ... x->>18 in queries.sql).
_RUN_COLUMNS = ("id", "function_id", "tenant", "trigger", "event_id", "event", "events", "available_at", "sort_at",
                "priority", "ckeys", "idempotency_key", "parent_run_id", "parent_step_id", "replay_of",
                "start_deadline", "finish_timeout", "throttle", "fair_key")


def _insert_plain(tx: Tx, runs: list[NewRun]) -> None:
    """Insert runs that need nothing more at creation (keys taken), all in one statement."""
    rows = [[c[k] for k in _RUN_COLUMNS] for c in (_run_columns(r, tx.now, r.delay) for r in runs)]
    tx.exec("insert_runs", env=tx.env, rows=dumps(rows), now=tx.now)
    tx.woke = True


def _schemas(name: str, rows: list[tuple[Any, dict]]) -> list[Any]:
    """A check for each distinct schema registered for event ``name`` (compiled once)."""
    seen: list[dict] = []
    out: list[Any] = []
    for _row, config in rows:
        for t in config.get("triggers") or []:
            schema = t.get("schema")
            if t.get("event") == name and isinstance(schema, dict) and schema not in seen:
                seen.append(schema)
                out.append(eventschema.checker(config["id"], schema))
    return out


def _skip(tx: Tx, event_id: str, function_id: str, reason: str) -> Skip:
    tx.exec("insert_skip", env=tx.env, event_id=event_id, function_id=function_id, reason=reason, now=tx.now)
    return Skip(function_id, reason)


def paused_skip(tx: Tx) -> set[str]:
    """The functions paused in skip mode (``durably functions pause ID --skip``)."""
    return {r[0] for r in tx.all("paused_skip", env=tx.env)}


def create_run(tx: Tx, run: NewRun, paused: set[str] | None = None) -> str | None:
    """Create a run under its flow control; returns its id (or the id of the open
    debounce/batch run that took the event), or None when the event creates no run."""
    res = _create(tx, run, paused_skip(tx) if paused is None else paused)
    return None if isinstance(res, Skip) else res


def _create(tx: Tx, run: NewRun, paused: set[str]) -> "str | Skip":
    fid, event_id = run.function_id, run.event.get("id", "")
    # Paused in skip mode: a new trigger is recorded as skipped. A run invoked by another run
    # is still created (and waits, as in queue mode): its parent waits for its result.
    if fid in paused and run.trigger != "invoke":
        return _skip(tx, event_id, fid, SkipReason.PAUSED)
    gcra_set = None
    if run.rate_limit:
        rl = run.rate_limit
        row = tx.one("gcra_get", env=tx.env, key=rl.key)
        ok, tat = flow.gcra(row[0] if row else None, tx.now, rl.interval, rl.tolerance)
        if not ok:
            return _skip(tx, event_id, fid, "rate_limited")
        gcra_set = (rl.key, tat)
    for uk in run.unique_keys:
        taken = tx.exec("take_key", env=tx.env, scope=uk.scope, key=uk.key, run_id=run.id, expires_at=tx.now + uk.ttl,
                        now=tx.now)
        if not taken:
            return _skip(tx, event_id, fid, _key_held(uk))
    singleton_key = None
    if run.singleton:
        scope, key = f"singleton:{fid}", run.singleton.key
        holder = tx.one("key_holder", env=tx.env, scope=scope, key=key)
        if holder is not None and holder["expires_at"] > tx.now:
            if run.singleton.mode == "skip":
                return _skip(tx, event_id, fid, f"singleton: run {holder['run_id']} is still running")
            cancel(tx, holder["run_id"], f"singleton: replaced by run {run.id}")
        tx.exec("take_key", env=tx.env, scope=scope, key=key, run_id=run.id, expires_at=tx.now + 100 * 365 * 86400.0,
                now=tx.now + 100 * 365 * 86400.0)  # taken unconditionally: the previous holder is gone
        singleton_key = key
    if gcra_set:
        tx.exec("gcra_set", env=tx.env, key=gcra_set[0], tat=gcra_set[1])
    gathering = 0
    delay = run.delay
    if run.debounce:
        d = run.debounce
        open_ = tx.one("debounce_open", env=tx.env, function_id=fid, key=d.key)
        if open_ is not None:
            at = tx.now + d.period
            if d.timeout is not None:
                at = min(at, open_["first_at"] + d.timeout)
            tx.exec("debounce_take", run_id=open_["run_id"], event=dumps(run.event), event_id=event_id, at=at)
            return open_["run_id"]
        gathering, delay = 1, max(delay, d.period)
    elif run.batch:
        b = run.batch
        open_ = tx.one("batch_open", env=tx.env, function_id=fid, key=b.key)
        if open_ is not None:
            full = open_["size"] + 1 >= b.max_size
            tx.exec("batch_append", run_id=open_["run_id"], event=dumps(run.event), full=1 if full else 0, now=tx.now)
            tx.exec("close_batch" if full else "batch_grow", run_id=open_["run_id"])
            if full:
                tx.woke = True
            return open_["run_id"]
        run.events = [run.event]
        if b.max_size > 1:
            gathering, delay = 1, max(delay, b.timeout)
    tx.exec("insert_run", env=tx.env, now=tx.now, singleton_key=singleton_key, gathering=gathering,
            **_run_columns(run, tx.now, delay))
    if run.memo_of is not None:  # rerun from a step: the steps before it replay from this memo
        tx.exec("copy_memo", run_id=run.id, from_run_id=run.memo_of[0], before_seq=run.memo_of[1])
    if run.plan_error:
        err = dumps({"name": "ExpressionError", "message": run.plan_error})
        tx.exec("fail_new_run", run_id=run.id, error=err, reason="expression_error", now=tx.now)
        if singleton_key:
            tx.exec("release_keys_of_run", run_id=run.id)
        _status(tx, run.tenant, fid, "failed", run.id, None, tx.now, 0, loads(err))
        return run.id
    if gathering:
        if run.debounce:
            tx.exec("debounce_put", env=tx.env, function_id=fid, key=run.debounce.key, run_id=run.id, now=tx.now)
        elif run.batch:
            tx.exec("batch_put", env=tx.env, function_id=fid, key=run.batch.key, run_id=run.id)
    for c in run.cancel_on:
        tx.exec("insert_wait", env=tx.env, run_id=run.id, step_id="", kind="cancel", event_name=c.event,
                match_path=c.match_path, match_value=c.match_value, if_expr=c.if_,
                expires_at=tx.now + c.timeout if c.timeout else None, now=tx.now)
    tx.woke = True
    return run.id


def create_runs(tx: Tx, runs: list[NewRun]) -> list[str | None]:
    paused = paused_skip(tx) if runs else set()
    return [create_run(tx, r, paused) for r in runs]


def _match_waits(tx: Tx, events: list[dict]) -> None:
    by_name: dict[str, list[dict]] = {}
    for e in events:
        by_name.setdefault(e["name"], []).append(e)
    for name, evs in by_name.items():
        waits = tx.all("waits_for", env=tx.env, name=name, now=tx.now)
        for w in waits:
            w = dict(w)
            for e in evs:
                if not flow.match(w, e):
                    continue
                if w["kind"] == "cancel":
                    cancel(tx, w["run_id"], "cancelled by event " + e["id"])
                else:
                    n = tx.exec("resolve_step", run_id=w["run_id"], step_id=w["step_id"], status="completed",
                                output=dumps(e), error=None, now=tx.now)
                    tx.exec("delete_waits_of_step", run_id=w["run_id"], step_id=w["step_id"])
                    if n:
                        tx.exec("wake_run", run_id=w["run_id"], now=tx.now)
                        tx.woke = True
                break


def finish(tx: Tx, run: ClaimedRun, status: str, output: str | None, error: str | None, reason: str,
           emit: list[dict] | None) -> dict:
    """End a run for good; resolve the parent waiting on it (invoke); emit follow-up events."""
    row = tx.one("finish_runs", now=tx.now, items=dumps([_finish_item(run, status, output, error, reason)]))
    if row is None:
        raise _finish_lost(run)
    _after_end(tx, run.id, row, status, output, error)
    if emit:
        ingest(tx, emit)
    return {"finished_at": tx.now}


def _finish_many(tx: Tx, items: list[tuple]) -> list[Any]:
    """``finish`` for many runs at once: one UPDATE for the runs that emit no event, and
    one DELETE each for the slots and waits of those that held any at claim (a run takes
    no slot and subscribes to no event while it runs); the others one by one."""
    out: list[Any] = [None] * len(items)
    plain: list[int] = []
    for k, (run, status, output, error, reason, emit) in enumerate(items):
        if not emit:
            plain.append(k)
            continue
        try:
            out[k] = finish(tx, run, status, output, error, reason, emit)
        except LeaseLost as exc:  # the finishing UPDATE matched nothing: nothing was written
            out[k] = Rejected(exc)
    if not plain:
        return out
    rows = {r["id"]: r for r in tx.all("finish_runs", now=tx.now,
                                       items=dumps([_finish_item(*items[k][:5]) for k in plain]))}
    ended = []
    for k in plain:
        run, status, output, error = items[k][:4]
        row = rows.get(run.id)
        if row is None:
            out[k] = Rejected(_finish_lost(run))
            continue
        if run.holds:
            ended.append(run.id)
        _ended(tx, run.id, row, status, output, error)
        out[k] = {"finished_at": tx.now}
    if ended:
        ids = dumps(ended)
        tx.exec("release_slots_of_runs", ids=ids)
        tx.exec("delete_waits_of_runs", ids=ids)
    return out


def _finish_item(run: ClaimedRun, status: str, output: str | None, error: str | None, reason: str) -> dict:
    return {"id": run.id, "gen": run.lease_gen, "status": status, "output": output, "error": error, "reason": reason}


def _finish_lost(run: ClaimedRun) -> LeaseLost:
    return LeaseLost(f"run {run.id}: lease lost before it could finish")


finish.many = _finish_many  # type: ignore[attr-defined]  # the writer's batch variant (see writer.py)


def _after_end(tx: Tx, run_id: str, row: Any, status: str, output: str | None, error: str | None) -> None:
    tx.exec("release_slots", run_id=run_id)
    tx.exec("delete_waits_of_run", run_id=run_id)
    tx.exec("cancel_open_steps", run_id=run_id, now=tx.now)
    _ended(tx, run_id, row, status, output, error)


def _ended(tx: Tx, run_id: str, row: Any, status: str, output: str | None, error: str | None) -> None:
    """What follows the end of a run, slots and waits aside: its singleton key, the parent
    waiting on it (invoke), its status blob."""
    if row["notify_end"]:  # someone waits on it (watch_end): announce the end after the commit
        tx.ended = True
    if row["trigger"] == "cron" and tx.exec("release_buffered_cron", env=tx.env, function_id=row["function_id"],
                                            now=tx.now, buffered=BUFFERED_AT):
        tx.woke = True
    if row["singleton_key"] is not None:
        tx.exec("release_keys_of_run", run_id=run_id)
    if row["parent_run_id"]:
        ok = status == "completed"
        err = error if not ok else None
        if not ok and err is None:
            err = dumps({"name": "Cancelled", "message": f"invoked run {run_id} was {status}"})
        n = tx.exec("resolve_step", run_id=row["parent_run_id"], step_id=row["parent_step_id"],
                    status="completed" if ok else "failed", output=output if ok else None, error=err, now=tx.now)
        if n:
            tx.exec("wake_run", run_id=row["parent_run_id"], now=tx.now)
            tx.woke = True
    _status(tx, row["tenant"], row["function_id"], status, run_id, row["started_at"], tx.now,
            _ended_attempt(tx, run_id, row), loads(error) if error else None)


def _ended_attempt(tx: Tx, run_id: str, row: Any) -> int:
    """The blob's ``attempt`` at a run's end, as the ledger counts: the largest of the run's
    own attempts and its steps' (``step_attempts`` comes with the finishing row)."""
    body = (row["attempt"] or 0) + (1 if row["started_at"] is not None else 0)
    if "step_attempts" in row.keys():
        steps = row["step_attempts"]
    else:
        steps = tx.one("max_step_attempts", run_id=run_id)["n"]
    return status_mod.blob_attempt(body, steps)


def expire(tx: Tx) -> dict:
    """Enforce timeouts: cancel runs not started in time, fail runs not finished in time."""
    from ...core.events import failure_event

    cancelled = [r["id"] for r in tx.all("expired_starts", env=tx.env, now=tx.now)]
    for rid in cancelled:
        cancel(tx, rid, "start_timeout")
    failed = []
    for r in tx.all("expired_finishes", env=tx.env, now=tx.now):
        err = {"name": "TimeoutError", "message": "the run did not finish within Timeouts.finish"}
        row = tx.one("fail_run", run_id=r["id"], env=tx.env, reason="timeout", error=dumps(err), now=tx.now)
        if row is None:
            continue
        _after_end(tx, r["id"], row, "failed", None, dumps(err))
        ingest(tx, [failure_event(row["function_id"], r["id"], "timeout", err, loads(row["event"]))])
        failed.append(r["id"])
    return {"cancelled": cancelled, "failed": failed}


def cancel(tx: Tx, run_id: str, reason: str) -> bool:
    row = tx.one("cancel_run", run_id=run_id, env=tx.env, reason=reason, now=tx.now)
    if row is None:
        return False
    _after_end(tx, run_id, row, "cancelled", None, None)
    return True


# --- registry and cron -----------------------------------------------------------------------


def register(tx: Tx, app_id: str, configs: list[dict]) -> None:
    for c in configs:
        status_mod.check_function_id(c["id"])
        tx.exec("upsert_function", env=tx.env, id=c["id"], app_id=app_id, config=dumps(c), now=tx.now)
        tx.exec("delete_triggers", env=tx.env, function_id=c["id"])
        for t in c["triggers"]:
            if "event" in t:
                tx.exec("insert_trigger", env=tx.env, event_name=t["event"], function_id=c["id"], if_expr=t.get("if"))
            else:
                tx.exec("init_cron", env=tx.env, function_id=c["id"], schedule=f"{t['cron']}|{t['tz']}", now=tx.now)


# A cron run buffered behind an open one (overlap="buffer_one") waits at this available_at (the
# year 5138) until that run ends and ``release_buffered_cron`` makes it claimable.
BUFFERED_AT = 1e11


def tick_event(function_id: str, expr: str, tz: str, tick: float) -> dict:
    """The event of one cron tick; its id is the tick's unique key (one per function and time)."""
    tick_iso = status_mod.iso(tick)
    return {"name": "durably/cron", "id": f"cron:{function_id}:{tick_iso}", "ts": int(tick * 1000),
            "data": {"cron": expr, "tz": tz, "tick": tick_iso, "function_id": function_id}}


def fire_cron(tx: Tx, function_id: str, expr: str, tz: str) -> str | None:
    """Fire the latest due tick of a schedule, at most once across every scheduler.

    ``last_tick`` advances by compare-and-set, and the tick's event id is unique: two
    schedulers racing on one tick create one run. Ticks missed while down fire once.
    """
    from ...core.cron import latest_due_tick

    schedule = f"{expr}|{tz}"
    row = tx.one("cron_state", env=tx.env, function_id=function_id, schedule=schedule)
    if row is None:
        tx.exec("init_cron", env=tx.env, function_id=function_id, schedule=schedule, now=tx.now)
        return None
    last = row[0]
    tick = latest_due_tick(expr, tz, last, tx.now)
    if tick is None:
        return None
    if not tx.exec("advance_cron", env=tx.env, function_id=function_id, schedule=schedule, tick=tick, last_tick=last):
        return None
    event = tick_event(function_id, expr, tz, tick)
    if not tx.exec("insert_event", env=tx.env, id=event["id"], name=event["name"], data=dumps(event), ts=event["ts"],
                   now=tx.now):
        return None
    config = tx.one("function_config", env=tx.env, id=function_id)
    if config is None:  # unregistered since the tick was read: nothing to run
        return None
    cfg = loads(config["config"])
    overlap = next((t.get("overlap", "allow") for t in cfg.get("triggers", [])
                    if t.get("cron") == expr and t.get("tz", "UTC") == tz), "allow")
    buffered = False
    if overlap != "allow":  # is the previous tick's run still going?
        state = tx.one("cron_open_runs", env=tx.env, function_id=function_id, buffered=BUFFERED_AT)
        if state["open"]:
            if overlap == "skip" or state["buffered"]:
                _skip(tx, str(event["id"]), function_id, "overlap")  # in the ledger: the tick, skipped
                return None
            buffered = True  # buffer_one: this tick starts when the open run ends
    run = flow.plan(cfg, event, None, tx.now, trigger="cron")
    if not isinstance(run, NewRun):  # no filter is passed; only the tenant rule can skip
        if run is not None:
            _skip(tx, str(event["id"]), run.function_id, run.reason)
        return None
    if buffered:
        run.delay = BUFFERED_AT - tx.now
    return create_run(tx, run)


def backfill_cron(tx: Tx, function_id: str, ticks: list[tuple[str, str, float]]) -> list[dict]:
    """Fire the given ticks ``(expr, tz, tick)`` of a function once each, under the tick's
    unique key (its event id, as ``fire_cron`` forms it): a tick whose event the store holds,
    of any age (fired by a scheduler or an earlier backfill, or skipped), is left alone. A
    backfill is asked for on purpose, so overlap rules do not apply; flow control does.
    Each tick: ``{"event_id", "fired", "run_id"}``. The schedule's last tick is not moved."""
    out: list[dict] = []
    config = tx.one("function_config", env=tx.env, id=function_id)
    cfg = loads(config["config"]) if config is not None else None
    for expr, tz, tick in ticks:
        event = tick_event(function_id, expr, tz, tick)
        item: dict = {"event_id": event["id"], "fired": False, "run_id": None}
        out.append(item)
        if cfg is None or tx.one("get_event", env=tx.env, id=event["id"]) is not None:
            continue
        if not tx.exec("insert_event", env=tx.env, id=event["id"], name=event["name"], data=dumps(event),
                       ts=event["ts"], now=tx.now):
            continue
        item["fired"] = True
        run = flow.plan(cfg, event, None, tx.now, trigger="cron")
        if isinstance(run, NewRun):
            item["run_id"] = create_run(tx, run)
        elif run is not None:
            _skip(tx, str(event["id"]), run.function_id, run.reason)
    return out


# --- dispatch windows (the HTTP cron endpoint) -----------------------------------------------


def dispatch(tx: Tx, key: str, window: int, event: dict) -> dict:
    """One ping of a dispatch-only cron route: the window's first ping sends the event.

    The window is ``[floor(now / window) * window, + window)`` on the store's clock. The
    window row and the event commit in one transaction, and the row's primary key decides
    which ping is first: two pings of one window, however they race, send one event. A
    later ping only counts itself.
    """
    window_start = int(tx.now // window) * window
    event_id = f"cron:{key}:{window_start}"
    out = {"key": key, "window": window, "window_start": window_start, "event_id": event_id}
    if not tx.exec("insert_dispatch", env=tx.env, key=key, window_start=window_start, event_id=event_id, now=tx.now):
        row = tx.one("ping_dispatch", env=tx.env, key=key, window_start=window_start)
        return {**out, "duplicate": True, "event_id": row["event_id"], "first_seen": row["first_seen"],
                "pings": row["pings"], "runs": []}
    data = dict(event.get("data") or {})
    data.update(dispatch_key=f"{key}:{window_start}", window_start=status_mod.iso(window_start), window=window)
    ev = {**event, "id": event_id, "ts": int(tx.now * 1000), "data": data}
    res = ingest(tx, [ev])
    if event_id in res.duplicates:
        # The window's event was already recorded some other way (sent with this id, or a
        # window row pruned before its event): the window is dispatched already.
        return {**out, "duplicate": True, "first_seen": tx.now, "pings": 1, "runs": []}
    return {**out, "duplicate": False, "first_seen": tx.now, "pings": 1, "runs": res.runs}


def watch_end(tx: Tx, run_id: str) -> bool:
    """Mark ``run_id`` as waited on: the transaction that ends it announces it (``tx.ended``)."""
    return tx.exec("watch_end", run_id=run_id, env=tx.env) > 0


def record_dispatch(tx: Tx, key: str, window_start: int, event_id: str) -> bool:
    """A window whose work ran inline (the store was unreachable when it was pinged): its
    row, and no event, so that no later ping of the window dispatches it again."""
    return bool(tx.exec("insert_dispatch", env=tx.env, key=key, window_start=window_start, event_id=event_id,
                        now=tx.now))
