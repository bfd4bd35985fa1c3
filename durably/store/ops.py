"""The transactional bodies of the store verbs, shared by every dialect.

Each function runs inside one open transaction ``tx`` (a ``Tx``: named statements of the
dialect, the store's clock as ``tx.now``, the env as ``tx.env``). Nothing here knows which
database it talks to.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from ..core import blobs as status_mod
from ..errors import LeaseLost
from ..core.ids import new_id
from ..core.jsonutil import dumps, loads
from ..engine.flow import gcra
from .writer import Rejected
from .base import ClaimedRun, IngestResult, Matcher, NewRun, Planner, Skip, StepWrite, WaitWrite

KEY_TTL = 86400.0


class Tx(Protocol):
    env: str
    now: float
    status_in_store: bool
    woke: bool

    def one(self, name: str, /, **params: Any) -> Any: ...
    def all(self, name: str, /, **params: Any) -> list[Any]: ...
    def exec(self, name: str, /, **params: Any) -> int: ...
    def all_many(self, calls: list[tuple[str, dict]]) -> list[list[Any]]: ...
    def exec_at_commit(self, name: str, /, **params: Any) -> None: ...


# --- events and runs -----------------------------------------------------------------------


def ingest(tx: Tx, events: list[dict], plan: Planner, match: Matcher) -> IngestResult:
    """Record events (duplicates ignored), create the runs they trigger, resolve waits."""
    res = IngestResult(ids=[], runs=[], duplicates=[])
    fresh = []
    for e in events:
        res.ids.append(e["id"])
        n = tx.exec("insert_event", env=tx.env, id=e["id"], name=e["name"], data=dumps(e), ts=e["ts"], now=tx.now)
        if n:
            fresh.append(e)
        else:
            res.duplicates.append(e["id"])
    if not fresh:
        return res
    triggers: dict[str, list] = {}
    for e in fresh:
        name = e["name"]
        if name not in triggers:
            triggers[name] = tx.all("triggers_for", env=tx.env, name=name)
        for row in triggers[name]:
            config = loads(row["config"])
            planned = plan(config, e, row["if_expr"], tx.now)
            if planned is None:
                continue
            if isinstance(planned, Skip):
                _skip(tx, e["id"], planned.function_id, planned.reason)
                res.skipped.append({"event_id": e["id"], "function_id": planned.function_id, "reason": planned.reason})
                continue
            created = _create(tx, planned)
            if isinstance(created, Skip):
                res.skipped.append({"event_id": e["id"], "function_id": created.function_id, "reason": created.reason})
            elif created not in res.runs:
                res.runs.append(created)
    _match_waits(tx, fresh, match)
    return res


def _skip(tx: Tx, event_id: str, function_id: str, reason: str) -> Skip:
    tx.exec("insert_skip", env=tx.env, event_id=event_id, function_id=function_id, reason=reason, now=tx.now)
    return Skip(function_id, reason)


def create_run(tx: Tx, run: NewRun) -> str | None:
    """Create a run under its flow control; returns its id (or the id of the open
    debounce/batch run that took the event), or None when the event creates no run."""
    res = _create(tx, run)
    return None if isinstance(res, Skip) else res


def _create(tx: Tx, run: NewRun) -> "str | Skip":
    fid, event_id = run.function_id, run.event.get("id", "")
    gcra_set = None
    if run.rate_limit:
        key, interval, tolerance = run.rate_limit
        row = tx.one("gcra_get", env=tx.env, key=key)
        ok, tat = gcra(row[0] if row else None, tx.now, interval, tolerance)
        if not ok:
            return _skip(tx, event_id, fid, "rate_limited")
        gcra_set = (key, tat)
    for scope, key, ttl in run.keys:
        taken = tx.exec("take_key", env=tx.env, scope=scope, key=key, run_id=run.id, expires_at=tx.now + ttl, now=tx.now)
        if not taken:
            return _skip(tx, event_id, fid, f"duplicate {scope.split(':')[0]} key {key!r}")
    singleton_key = None
    if run.singleton:
        scope, key = f"singleton:{fid}", run.singleton["key"]
        holder = tx.one("key_holder", env=tx.env, scope=scope, key=key)
        if holder is not None and holder["expires_at"] > tx.now:
            if run.singleton["mode"] == "skip":
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
        open_ = tx.one("debounce_open", env=tx.env, function_id=fid, key=d["key"])
        if open_ is not None:
            at = tx.now + d["period"]
            if d.get("timeout") is not None:
                at = min(at, open_["first_at"] + d["timeout"])
            tx.exec("debounce_take", run_id=open_["run_id"], event=dumps(run.event), event_id=event_id, at=at)
            return open_["run_id"]
        gathering, delay = 1, max(delay, d["period"])
    elif run.batch:
        b = run.batch
        open_ = tx.one("batch_open", env=tx.env, function_id=fid, key=b["key"])
        if open_ is not None:
            full = open_["size"] + 1 >= b["max_size"]
            tx.exec("batch_append", run_id=open_["run_id"], event=dumps(run.event), full=1 if full else 0, now=tx.now)
            tx.exec("close_batch" if full else "batch_grow", run_id=open_["run_id"])
            if full:
                tx.woke = True
            return open_["run_id"]
        run.events = [run.event]
        if b["max_size"] > 1:
            gathering, delay = 1, max(delay, b["timeout"])
    available = tx.now + delay
    tx.exec(
        "insert_run",
        id=run.id, env=tx.env, function_id=fid, tenant=run.tenant or "global",
        trigger=run.trigger, event_id=event_id or None, event=dumps(run.event),
        events=dumps(run.events) if run.events is not None else None,
        available_at=available, sort_at=available - run.priority, priority=run.priority, now=tx.now,
        ckeys=dumps(run.ckeys) if run.ckeys else None, idempotency_key=run.idempotency_key,
        parent_run_id=run.parent_run_id, parent_step_id=run.parent_step_id, replay_of=run.replay_of,
        start_deadline=tx.now + run.start_timeout if run.start_timeout else None,
        finish_timeout=run.finish_timeout, throttle=dumps(run.throttle) if run.throttle else None,
        singleton_key=singleton_key, gathering=gathering,
    )
    if run.plan_error:
        err = dumps({"name": "ExpressionError", "message": run.plan_error})
        tx.exec("fail_new_run", run_id=run.id, error=err, reason="expression_error", now=tx.now)
        if singleton_key:
            tx.exec("release_keys_of_run", run_id=run.id)
        _status(tx, run.tenant, fid, "failed", run.id, None, tx.now, 0, loads(err))
        return run.id
    if gathering:
        if run.debounce:
            tx.exec("debounce_put", env=tx.env, function_id=fid, key=run.debounce["key"], run_id=run.id, now=tx.now)
        else:
            tx.exec("batch_put", env=tx.env, function_id=fid, key=run.batch["key"], run_id=run.id)  # type: ignore[index]
    for c in run.cancel_on:
        tx.exec("insert_wait", env=tx.env, run_id=run.id, step_id="", kind="cancel", event_name=c["event"],
                match_path=c["match_path"], match_value=c["match_value"], if_expr=c.get("if"),
                expires_at=tx.now + c["timeout"] if c.get("timeout") else None, now=tx.now)
    tx.woke = True
    return run.id


def create_runs(tx: Tx, runs: list[NewRun]) -> list[str | None]:
    return [create_run(tx, r) for r in runs]


def _match_waits(tx: Tx, events: list[dict], match: Matcher) -> None:
    by_name: dict[str, list[dict]] = {}
    for e in events:
        by_name.setdefault(e["name"], []).append(e)
    for name, evs in by_name.items():
        waits = tx.all("waits_for", env=tx.env, name=name, now=tx.now)
        for w in waits:
            w = dict(w)
            for e in evs:
                if not match(w, e):
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


# --- claiming ------------------------------------------------------------------------------


CLAIM_SCAN_MAX = 5000  # candidates one claim may look at when most are blocked by their keys


def _candidates(tx: Tx, functions: str, limit: int):
    """Ready runs in claim order, fetched page by page until the caller has enough."""
    page = limit + 16  # enough when few are blocked; pages grow fourfold when many are
    after_sort = after_id = None
    seen = 0
    while seen < CLAIM_SCAN_MAX:
        rows = tx.all("claim_candidates", env=tx.env, now=tx.now, functions=functions, limit=page,
                      after_sort=after_sort, after_id=after_id)
        yield from rows
        seen += len(rows)
        if len(rows) < page:
            return
        after_sort, after_id = rows[-1]["sort_at"], rows[-1]["id"]
        page = min(page * 4, 1000)


def _take_slots(tx: Tx, run_id: str, ckeys: list, full_keys: set[str]) -> bool:
    """Take one slot of every concurrency key of a run, or none (keys in a fixed order)."""
    for key, cap in sorted(ckeys):
        if key in full_keys:
            break
        used = {r[0] for r in tx.all("slots_used", env=tx.env, key=key)}
        if not any(slot not in used and tx.exec("take_slot", env=tx.env, key=key, slot=slot, run_id=run_id)
                   for slot in range(int(cap))):
            full_keys.add(key)
            break
    else:
        return True
    tx.exec("release_slots", run_id=run_id)
    return False


def claim(tx: Tx, owner: str, functions: str, limit: int, lease: float) -> tuple[list[ClaimedRun], float | None, float]:
    """Lease up to ``limit`` ready runs, taking their concurrency slots in this transaction.

    Flow control decides run by run which candidates may start; the chosen runs are then
    leased by one UPDATE. A throttled run is leased on its own at once, as its start
    consumes the throttle's budget that the next candidate of the same key is judged by.
    """
    rows: list[Any] = []
    chosen: list[Any] = []  # candidates cleared to start, leased together below
    order: dict[str, int] = {}  # claim order of the candidates
    full_keys: set[str] = set()
    for c in _candidates(tx, functions, limit):
        if len(rows) + len(chosen) >= limit:
            break
        order[c["id"]] = len(order)
        if c["start_deadline"] is not None and c["started_at"] is None and c["start_deadline"] < tx.now:
            cancel(tx, c["id"], "start_timeout")
            continue
        throttled = None
        if c["throttle"] and c["started_at"] is None:
            key, interval, tolerance = loads(c["throttle"])
            trow = tx.one("gcra_get", env=tx.env, key=key)
            ok, tat = gcra(trow[0] if trow else None, tx.now, interval, tolerance)
            if not ok:
                tx.exec("defer_run", run_id=c["id"], at=tat)
                continue
            throttled = (key, tat)  # consumed only if the run is claimed below
        ckeys = loads(c["ckeys"]) if c["ckeys"] else None
        if ckeys and not _take_slots(tx, c["id"], ckeys, full_keys):
            continue
        if throttled is None:
            chosen.append(c)
            continue
        row = tx.one("claim_runs", ids=dumps([c["id"]]), owner=owner, now=tx.now, lease=lease)
        if row is None:
            if ckeys:
                tx.exec("release_slots", run_id=c["id"])
            continue
        tx.exec("gcra_set", env=tx.env, key=throttled[0], tat=throttled[1])
        rows.append((c, row))
    if chosen:
        got = {r["id"]: r for r in tx.all("claim_runs", ids=dumps([c["id"] for c in chosen]), owner=owner,
                                            now=tx.now, lease=lease)}
        for c in chosen:
            row = got.get(c["id"])
            if row is not None:
                rows.append((c, row))
            elif c["ckeys"]:  # taken by another worker meanwhile: give its slots back
                tx.exec("release_slots", run_id=c["id"])
        rows.sort(key=lambda cr: order[cr[0]["id"]])
    claimed: list[ClaimedRun] = []
    mono = getattr(tx, "mono", None)
    for c, row in rows:
        if c["gathering"]:  # the claim closed its debounce/batch window: no more events join it
            tx.exec("close_gathering", run_id=row["id"])
            tx.exec("close_batch", run_id=row["id"])
        run = ClaimedRun(
            id=row["id"], function_id=row["function_id"], tenant=row["tenant"], trigger=row["trigger"],
            event=loads(row["event"]), events=loads(row["events"]), attempt=row["attempt"],
            lease_gen=row["lease_gen"], started_at=row["started_at"], created_at=row["created_at"],
            resumed=bool(row["resumed"]), now=tx.now, parent_run_id=row["parent_run_id"],
            finish_deadline=row["finish_deadline"], mono=mono, holds=bool(row["holds"]),
        )
        if run.resumed:
            run.steps = [dict(s) for s in tx.all("load_steps", run_id=run.id)]
        _status(tx, run.tenant, run.function_id, "running", run.id, run.started_at, None, run.attempt, None)
        claimed.append(run)
    next_at = None
    if len(claimed) < limit:
        r = tx.one("next_available", env=tx.env, functions=functions)
        next_at = r[0] if r else None
    return claimed, next_at, tx.now


def _fence(tx: Tx, run: ClaimedRun, lease: float) -> None:
    """Go on only under the lease this worker holds (same token), and extend it."""
    if not tx.all("fence_runs", now=tx.now, items=dumps([_fence_item(run, lease)])):
        raise _lease_lost(run)


def _fence_item(run: ClaimedRun, lease: float) -> dict:
    return {"id": run.id, "gen": run.lease_gen, "lease": lease}


def _lease_lost(run: ClaimedRun) -> LeaseLost:
    return LeaseLost(f"run {run.id}: lease lost (another worker took it over, or it was cancelled)")


def _write_step(tx: Tx, run: ClaimedRun, s: StepWrite) -> bool:
    """Write a step of a run held under its token; False when the step had already finished."""
    return bool(tx.all("upsert_steps", items=dumps([_step_item(run, s)])))


def checkpoint(tx: Tx, run: ClaimedRun, lease: float, step: StepWrite, emit: list[dict] | None,
               plan: Planner | None, match: Matcher | None) -> dict | None:
    """Commit one finished step (and the events it sends) under the run's lease.

    Returns the stored step when it was already finished by someone else (an awaited
    event or an invoked run resolved it first), so the caller uses that outcome.
    """
    _fence(tx, run, lease)
    written = _write_step(tx, run, step)
    if step.kind == "wait":
        tx.exec("delete_waits_of_step", run_id=run.id, step_id=step.step_id)
    if not written:
        row = tx.one("get_step", run_id=run.id, step_id=step.step_id)
        return dict(row) if row else None
    if emit:
        ingest(tx, emit, plan, match)  # type: ignore[arg-type]
    return None


def _checkpoint_many(tx: Tx, items: list[tuple]) -> list[Any]:
    """``checkpoint`` for many steps at once: one fence and one upsert for the plain ones
    (a ``step.run`` result, a sleep that ended), sent together; the others one by one."""
    out: list[Any] = [None] * len(items)
    plain: list[int] = []
    seen: set[tuple[str, str]] = set()
    for k, (run, lease, step, emit, plan, match) in enumerate(items):
        if emit or step.kind == "wait" or (run.id, step.step_id) in seen:
            try:
                out[k] = checkpoint(tx, run, lease, step, emit, plan, match)
            except LeaseLost as exc:  # raised by the fence, before anything was written
                out[k] = Rejected(exc)
            continue
        seen.add((run.id, step.step_id))
        plain.append(k)
    if not plain:
        return out
    fence = dumps([_fence_item(items[k][0], items[k][1]) for k in plain])
    steps = dumps([_step_item(items[k][0], items[k][2]) for k in plain])
    held_rows, written_rows = tx.all_many([("fence_runs", {"now": tx.now, "items": fence}),
                                           ("upsert_steps", {"items": steps})])
    held = {(r["id"], r["lease_gen"]) for r in held_rows}
    written = {(r["run_id"], r["step_id"]) for r in written_rows}
    for k in plain:
        run, step = items[k][0], items[k][2]
        if (run.id, run.lease_gen) not in held:
            out[k] = Rejected(_lease_lost(run))
        elif (run.id, step.step_id) not in written:  # finished by someone else first: use theirs
            row = tx.one("get_step", run_id=run.id, step_id=step.step_id)
            out[k] = dict(row) if row else None
    return out


def _step_item(run: ClaimedRun, s: StepWrite) -> dict:
    return {"run_id": run.id, "gen": run.lease_gen, "step_id": s.step_id, "kind": s.kind, "status": s.status,
            "seq": s.seq, "attempts": s.attempts, "output": s.output, "error": s.error, "log": s.attempt_log,
            "started_at": s.started_at, "finished_at": s.finished_at, "wake_at": s.wake_at}


checkpoint.many = _checkpoint_many  # type: ignore[attr-defined]


def suspend(tx: Tx, run: ClaimedRun, steps: list[StepWrite], waits: list[WaitWrite], children: list[NewRun],
            status: str, available_at: float, attempt_inc: int, error: str | None, lease: float) -> None:
    """Park a run (sleep, wait, invoke, retry backoff): write its pending steps, free its slots."""
    _fence(tx, run, lease)
    for s in steps:
        _write_step(tx, run, s)
    early = []
    for w in waits:
        hit = _received_since(tx, run, w)
        if hit is not None:  # the event came between wait_for_event() and this commit
            early.append((w.step_id, hit))
            continue
        tx.exec("insert_wait", env=tx.env, run_id=run.id, step_id=w.step_id, kind=w.kind, event_name=w.event_name,
                match_path=w.match_path, match_value=w.match_value, if_expr=w.if_expr, expires_at=w.expires_at,
                now=tx.now)
    for child in children:
        create_run(tx, child)
    tx.exec("release_slots", run_id=run.id)
    tx.exec("suspend_run", run_id=run.id, lease_gen=run.lease_gen, status=status,
            available_at=max(available_at, tx.now) if status == "queued" else available_at,
            attempt_inc=attempt_inc, error=error)
    for step_id, event in early:
        tx.exec("resolve_step", run_id=run.id, step_id=step_id, status="completed", output=dumps(event), error=None,
                now=tx.now)
        tx.exec("wake_run", run_id=run.id, now=tx.now)
    tx.woke = True
    if status == "queued" and attempt_inc:
        _status(tx, run.tenant, run.function_id, "retrying", run.id, run.started_at, None, run.attempt + attempt_inc,
                loads(error) if error else None)


def _received_since(tx: Tx, run: ClaimedRun, w: WaitWrite) -> dict | None:
    """The first event matching a wait that arrived after the wait began but before it was stored."""
    if w.kind != "wait" or w.since is None:
        return None
    from ..engine.flow import match

    wait = {"match_path": w.match_path, "match_value": w.match_value, "if_expr": w.if_expr, "event": run.event}
    for row in tx.all("events_since", env=tx.env, name=w.event_name, since=w.since):
        event = loads(row["data"])
        if match(wait, event):
            return event
    return None


def finish(tx: Tx, run: ClaimedRun, status: str, output: str | None, error: str | None, reason: str,
           emit: list[dict] | None, plan: Planner | None, match: Matcher | None) -> dict:
    """End a run for good; resolve the parent waiting on it (invoke); emit follow-up events."""
    row = tx.one("finish_runs", now=tx.now, items=dumps([_finish_item(run, status, output, error, reason)]))
    if row is None:
        raise _finish_lost(run)
    _after_end(tx, run.id, row, status, output, error)
    if emit:
        ingest(tx, emit, plan, match)  # type: ignore[arg-type]
    return {"finished_at": tx.now}


def _finish_many(tx: Tx, items: list[tuple]) -> list[Any]:
    """``finish`` for many runs at once: one UPDATE for the runs that emit no event, and
    one DELETE each for the slots and waits of those that held any at claim (a run takes
    no slot and subscribes to no event while it runs); the others one by one."""
    out: list[Any] = [None] * len(items)
    plain: list[int] = []
    for k, (run, status, output, error, reason, emit, plan, match) in enumerate(items):
        if not emit:
            plain.append(k)
            continue
        try:
            out[k] = finish(tx, run, status, output, error, reason, emit, plan, match)
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


finish.many = _finish_many  # type: ignore[attr-defined]


def _after_end(tx: Tx, run_id: str, row: Any, status: str, output: str | None, error: str | None) -> None:
    tx.exec("release_slots", run_id=run_id)
    tx.exec("delete_waits_of_run", run_id=run_id)
    _ended(tx, run_id, row, status, output, error)


def _ended(tx: Tx, run_id: str, row: Any, status: str, output: str | None, error: str | None) -> None:
    """What follows the end of a run, slots and waits aside: its singleton key, the parent
    waiting on it (invoke), its status blob."""
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
    _status(tx, row["tenant"], row["function_id"], status, run_id, row["started_at"], tx.now, row["attempt"],
            loads(error) if error else None)


def expire(tx: Tx, plan: Planner, match: Matcher) -> dict:
    """Enforce timeouts: cancel runs not started in time, fail runs not finished in time."""
    from ..core.events import failure_event

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
        ingest(tx, [failure_event(row["function_id"], r["id"], "timeout", err, loads(row["event"]))], plan, match)
        failed.append(r["id"])
    return {"cancelled": cancelled, "failed": failed}


def cancel(tx: Tx, run_id: str, reason: str) -> bool:
    row = tx.one("cancel_run", run_id=run_id, env=tx.env, reason=reason, now=tx.now)
    if row is None:
        return False
    _after_end(tx, run_id, row, "cancelled", None, None)
    return True


def _status(tx: Tx, tenant: str, function_id: str, status: str, run_id: str, started: float | None,
            finished: float | None, attempt: int, error: Any) -> None:
    """Stage the status blob of (tenant, function): the dialect writes the last one staged at
    commit, to its table or, with Redis, to the status sink once the transaction committed."""
    tx.stage_status(tenant or "global", function_id,  # type: ignore[attr-defined]
                    lambda: status_mod.blob(status, run_id, started, finished, attempt, error))


# --- workers, leases, leadership --------------------------------------------------------------


def heartbeat(tx: Tx, worker: dict, lease: float) -> int:
    n = tx.exec("heartbeat_runs", owner=worker["id"], now=tx.now, lease=lease)
    tx.exec("upsert_worker", env=tx.env, id=worker["id"], host=worker["host"], pid=worker["pid"],
            functions=dumps(worker["functions"]), concurrency=worker["concurrency"], now=tx.now)
    return n


def remove_worker(tx: Tx, worker_id: str) -> None:
    tx.exec("delete_worker", env=tx.env, id=worker_id)


def release(tx: Tx, owner: str, run_ids: list[str]) -> int:
    n = 0
    for rid in run_ids:
        if tx.exec("requeue_run", run_id=rid, owner=owner, now=tx.now):
            tx.exec("release_slots", run_id=rid)
            n += 1
    tx.woke = tx.woke or n > 0
    return n


def recover(tx: Tx) -> list[str]:
    """Requeue runs whose worker stopped heartbeating (lease expired)."""
    out = []
    for row in tx.all("expired_leases", env=tx.env, now=tx.now):
        if tx.exec("requeue_run", run_id=row["id"], owner=None, now=tx.now):
            tx.exec("release_slots", run_id=row["id"])
            out.append(row["id"])
    tx.woke = tx.woke or bool(out)
    return out


def acquire_leadership(tx: Tx, name: str, owner: str, ttl: float) -> bool:
    tx.exec("leader_acquire", env=tx.env, name=name, owner=owner, now=tx.now, ttl=ttl)
    row = tx.one("leader_owner", env=tx.env, name=name)
    return row is not None and row[0] == owner


# --- registry and cron -----------------------------------------------------------------------


def register(tx: Tx, app_id: str, configs: list[dict]) -> None:
    for c in configs:
        tx.exec("upsert_function", env=tx.env, id=c["id"], app_id=app_id, config=dumps(c), now=tx.now)
        tx.exec("delete_triggers", env=tx.env, function_id=c["id"])
        for t in c["triggers"]:
            if "event" in t:
                tx.exec("insert_trigger", env=tx.env, event_name=t["event"], function_id=c["id"], if_expr=t.get("if"))
            else:
                tx.exec("init_cron", env=tx.env, function_id=c["id"], schedule=f"{t['cron']}|{t['tz']}", now=tx.now)


def fire_cron(tx: Tx, function_id: str, expr: str, tz: str, make_run: Callable[[dict], NewRun]) -> str | None:
    """Fire the latest due tick of a schedule, at most once across every scheduler.

    ``last_tick`` advances by compare-and-set, and the tick's event id is unique: two
    schedulers racing on one tick create one run. Ticks missed while down fire once.
    """
    from ..core.cron import latest_due_tick

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
    tick_iso = status_mod.iso(tick)
    event = {"name": "durably/cron", "id": f"cron:{function_id}:{tick_iso}", "ts": int(tick * 1000),
             "data": {"cron": expr, "tz": tz, "tick": tick_iso, "function_id": function_id}}
    if not tx.exec("insert_event", env=tx.env, id=event["id"], name=event["name"], data=dumps(event), ts=event["ts"],
                   now=tx.now):
        return None
    run = make_run(event)
    return create_run(tx, run)


def new_run_id() -> str:
    return new_id()


# --- dispatch windows (the HTTP cron endpoint) -----------------------------------------------


def dispatch(tx: Tx, key: str, window: int, event: dict, plan: Planner, match: Matcher) -> dict:
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
    res = ingest(tx, [ev], plan, match)
    return {**out, "duplicate": False, "first_seen": tx.now, "pings": 1, "runs": res.runs}


# --- leadership hand-over and retention ------------------------------------------------------


def release_leadership(tx: Tx, name: str, owner: str) -> bool:
    """Give up a leadership this owner holds (a clean shutdown): a standby takes over at once."""
    return bool(tx.exec("leader_release", env=tx.env, name=name, owner=owner))


def prune(tx: Tx, older_than: float, limit: int) -> dict[str, int]:
    """Delete one batch (at most ``limit`` rows of each kind) of data past retention.

    Finished runs that ended more than ``older_than`` seconds ago go with their steps;
    events and skips as old go too, but events are kept at least 24 h whatever
    ``older_than`` says (their ids deduplicate deliveries); expired unique keys, spent
    throttle/rate-limit state and workers gone silent that long. Live runs and status
    blobs are never touched. The caller repeats while a count reaches ``limit``; each
    batch is its own short transaction, so pruning never holds locks for long.
    """
    before = tx.now - older_than
    events_before = tx.now - max(older_than, KEY_TTL)
    out = {"runs": 0, "steps": 0, "events": 0, "skips": 0, "keys": 0, "dispatches": 0, "workers": 0}
    ids = [r[0] for r in tx.all("prunable_runs", env=tx.env, before=before, limit=limit)]
    if ids:
        j = dumps(ids)
        out["steps"] = tx.exec("prune_steps", ids=j)
        tx.exec("prune_run_waits", ids=j)
        tx.exec("prune_run_slots", ids=j)
        tx.exec("prune_run_debounce", ids=j)
        tx.exec("prune_run_batches", ids=j)
        out["runs"] = tx.exec("prune_runs", env=tx.env, ids=j)
    out["events"] = tx.exec("prune_events", env=tx.env, before=events_before, limit=limit)
    out["skips"] = tx.exec("prune_skips", env=tx.env, before=before, limit=limit)
    out["keys"] = tx.exec("prune_keys", env=tx.env, now=tx.now, limit=limit)
    out["keys"] += tx.exec("prune_gcra", env=tx.env, before=before, limit=limit)
    out["dispatches"] = tx.exec("prune_dispatches", env=tx.env, before=events_before, limit=limit)
    out["workers"] = tx.exec("prune_workers", env=tx.env, before=before)
    return out
