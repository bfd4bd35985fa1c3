"""The transactional bodies of the store verbs, shared by every dialect.

Each function runs inside one open transaction ``tx`` (a ``Tx``: named statements of the
dialect, the store's clock as ``tx.now``, the env as ``tx.env``). Nothing here knows which
database it talks to.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from .. import status as status_mod
from ..errors import LeaseLost
from ..ids import new_id
from ..jsonutil import dumps, loads
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
            run_id = create_run(tx, planned)
            if run_id:
                res.runs.append(run_id)
            else:
                res.skipped.append({"event_id": e["id"], "function_id": planned.function_id, "reason": "idempotency"})
    _match_waits(tx, fresh, match)
    return res


def _skip(tx: Tx, event_id: str, function_id: str, reason: str) -> None:
    tx.exec("insert_skip", env=tx.env, event_id=event_id, function_id=function_id, reason=reason, now=tx.now)


def create_run(tx: Tx, run: NewRun) -> str | None:
    """Insert a run unless one of its unique keys is held; returns its id or None."""
    for scope, key, ttl in run.keys:
        taken = tx.exec("take_key", env=tx.env, scope=scope, key=key, run_id=run.id, expires_at=tx.now + ttl, now=tx.now)
        if not taken:
            _skip(tx, run.event.get("id", ""), run.function_id, f"duplicate {scope.split(':')[0]} key {key!r}")
            return None
    available = tx.now + run.delay
    tx.exec(
        "insert_run",
        id=run.id, env=tx.env, function_id=run.function_id, tenant=run.tenant or "global",
        trigger=run.trigger, event_id=run.event.get("id"), event=dumps(run.event),
        events=dumps(run.events) if run.events is not None else None,
        available_at=available, sort_at=available - run.priority, now=tx.now,
        ckeys=dumps(run.ckeys) if run.ckeys else None, idempotency_key=run.idempotency_key,
        parent_run_id=run.parent_run_id, parent_step_id=run.parent_step_id, replay_of=run.replay_of,
        start_deadline=tx.now + run.start_timeout if run.start_timeout else None,
    )
    if run.plan_error:
        err = dumps({"name": "ExpressionError", "message": run.plan_error})
        tx.exec("fail_new_run", run_id=run.id, error=err, reason="expression_error", now=tx.now)
        if tx.status_in_store:
            _status(tx, run.tenant, run.function_id, "failed", run.id, None, tx.now, 0, loads(err))
        return run.id
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


def claim(tx: Tx, owner: str, functions: str, limit: int, lease: float) -> tuple[list[ClaimedRun], float | None, float]:
    """Lease up to ``limit`` ready runs, taking their concurrency slots in this transaction."""
    cands = tx.all("claim_candidates", env=tx.env, now=tx.now, functions=functions, limit=limit * 4 + 16)
    claimed: list[ClaimedRun] = []
    slot_counts: dict[str, int] = {}
    for c in cands:
        if len(claimed) >= limit:
            break
        ckeys = loads(c["ckeys"]) if c["ckeys"] else None
        if ckeys:
            full = False
            for key, cap in ckeys:
                if key not in slot_counts:
                    slot_counts[key] = tx.one("slot_count", env=tx.env, key=key)[0]
                if slot_counts[key] >= cap:
                    full = True
            if full:
                continue
        row = tx.one("claim_run", id=c["id"], owner=owner, now=tx.now, lease=lease)
        if row is None:
            continue
        if ckeys:
            for key, _cap in ckeys:
                tx.exec("take_slot", env=tx.env, key=key, run_id=row["id"])
                slot_counts[key] += 1
        run = ClaimedRun(
            id=row["id"], function_id=row["function_id"], tenant=row["tenant"], trigger=row["trigger"],
            event=loads(row["event"]), events=loads(row["events"]), attempt=row["attempt"],
            lease_gen=row["lease_gen"], started_at=row["started_at"], created_at=row["created_at"],
            resumed=bool(row["resumed"]), now=tx.now, parent_run_id=row["parent_run_id"],
            finish_deadline=row["finish_deadline"],
        )
        if run.resumed:
            run.steps = [dict(s) for s in tx.all("load_steps", run_id=run.id)]
        if tx.status_in_store:
            _status(tx, run.tenant, run.function_id, "running", run.id, run.started_at, None, run.attempt, None)
        claimed.append(run)
    next_at = None
    if len(claimed) < limit:
        r = tx.one("next_available", env=tx.env, functions=functions)
        next_at = r[0] if r else None
    return claimed, next_at, tx.now


def _fence(tx: Tx, run: ClaimedRun, lease: float) -> None:
    if not tx.exec("fence", run_id=run.id, lease_gen=run.lease_gen, now=tx.now, lease=lease):
        raise LeaseLost(f"run {run.id}: lease lost (another worker took it over, or it was cancelled)")


def _write_step(tx: Tx, run_id: str, s: StepWrite) -> int:
    return tx.exec(
        "upsert_step", run_id=run_id, step_id=s.step_id, kind=s.kind, status=s.status, seq=s.seq,
        attempts=s.attempts, output=s.output, error=s.error, attempt_log=s.attempt_log,
        started_at=s.started_at, finished_at=s.finished_at, wake_at=s.wake_at,
    )


def checkpoint(tx: Tx, run: ClaimedRun, lease: float, step: StepWrite, emit: list[dict] | None,
               plan: Planner | None, match: Matcher | None) -> dict | None:
    """Commit one finished step (and the events it sends) under the run's lease.

    Returns the stored step when it was already finished by someone else (an awaited
    event or an invoked run resolved it first), so the caller uses that outcome.
    """
    _fence(tx, run, lease)
    written = _write_step(tx, run.id, step)
    if step.kind == "wait":
        tx.exec("delete_waits_of_step", run_id=run.id, step_id=step.step_id)
    if not written:
        row = tx.one("get_step", run_id=run.id, step_id=step.step_id)
        return dict(row) if row else None
    if emit:
        ingest(tx, emit, plan, match)  # type: ignore[arg-type]
    return None


def suspend(tx: Tx, run: ClaimedRun, steps: list[StepWrite], waits: list[WaitWrite], children: list[NewRun],
            status: str, available_at: float, attempt_inc: int, error: str | None, lease: float) -> None:
    """Park a run (sleep, wait, invoke, retry backoff): write its pending steps, free its slots."""
    _fence(tx, run, lease)
    for s in steps:
        _write_step(tx, run.id, s)
    for w in waits:
        tx.exec("insert_wait", env=tx.env, run_id=run.id, step_id=w.step_id, kind=w.kind, event_name=w.event_name,
                match_path=w.match_path, match_value=w.match_value, if_expr=w.if_expr, expires_at=w.expires_at,
                now=tx.now)
    for child in children:
        create_run(tx, child)
    tx.exec("release_slots", run_id=run.id)
    tx.exec("suspend_run", run_id=run.id, lease_gen=run.lease_gen, status=status,
            available_at=max(available_at, tx.now) if status == "queued" else available_at,
            priority_shift=0.0, attempt_inc=attempt_inc, error=error)
    tx.woke = True
    if tx.status_in_store and status == "queued" and attempt_inc:
        _status(tx, run.tenant, run.function_id, "retrying", run.id, run.started_at, None, run.attempt + attempt_inc,
                loads(error) if error else None)


def finish(tx: Tx, run: ClaimedRun, status: str, output: str | None, error: str | None, reason: str,
           emit: list[dict] | None, plan: Planner | None, match: Matcher | None) -> dict:
    """End a run for good; resolve the parent waiting on it (invoke); emit follow-up events."""
    row = tx.one("finish_run", run_id=run.id, lease_gen=run.lease_gen, status=status, output=output, error=error,
                 reason=reason, now=tx.now)
    if row is None:
        raise LeaseLost(f"run {run.id}: lease lost before it could finish")
    _after_end(tx, run.id, row, status, output, error)
    if emit:
        ingest(tx, emit, plan, match)  # type: ignore[arg-type]
    return {"finished_at": tx.now}


def _after_end(tx: Tx, run_id: str, row: Any, status: str, output: str | None, error: str | None) -> None:
    tx.exec("release_slots", run_id=run_id)
    tx.exec("delete_waits_of_run", run_id=run_id)
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
    if tx.status_in_store:
        _status(tx, row["tenant"], row["function_id"], status, run_id, row["started_at"], tx.now, row["attempt"],
                loads(error) if error else None)


def cancel(tx: Tx, run_id: str, reason: str) -> bool:
    row = tx.one("cancel_run", run_id=run_id, env=tx.env, reason=reason, now=tx.now)
    if row is None:
        return False
    _after_end(tx, run_id, row, "cancelled", None, None)
    return True


def _status(tx: Tx, tenant: str, function_id: str, status: str, run_id: str, started: float | None,
            finished: float | None, attempt: int, error: Any) -> None:
    b = status_mod.blob(status, run_id, started, finished, attempt, error)
    tx.exec("upsert_status", env=tx.env, tenant=tenant or "global", function_id=function_id, blob=dumps(b), now=tx.now)


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
    from ..cron import latest_due_tick

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
