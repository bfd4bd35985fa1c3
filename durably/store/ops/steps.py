"""Steps: fencing a run's writes by its lease, checkpoints, suspending a run."""

from __future__ import annotations

from typing import Any

from ...core import flow
from ...core.jsonutil import dumps, loads
from ...core.records import ClaimedRun, NewRun, StepWrite, WaitWrite
from ...errors import LeaseLost
from ..writer import Rejected
from .runs import create_run, ingest
from .tx import Tx
from .tx import stage_blob as _status

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


def checkpoint(tx: Tx, run: ClaimedRun, lease: float, step: StepWrite, emit: list[dict] | None) -> dict | None:
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
        ingest(tx, emit)
    return None


def _checkpoint_many(tx: Tx, items: list[tuple]) -> list[Any]:
    """``checkpoint`` for many steps at once: one fence and one upsert for the plain ones
    (a ``step.run`` result, a sleep that ended), sent together; the others one by one."""
    out: list[Any] = [None] * len(items)
    plain: list[int] = []
    seen: set[tuple[str, str]] = set()
    for k, (run, lease, step, emit) in enumerate(items):
        if emit or step.kind == "wait" or (run.id, step.step_id) in seen:
            try:
                out[k] = checkpoint(tx, run, lease, step, emit)
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


checkpoint.many = _checkpoint_many  # type: ignore[attr-defined]  # the writer's batch variant (see writer.py)


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
    retried = [s for s in steps if s.status == "retrying"]
    if status == "queued" and (attempt_inc or retried):
        # A failed attempt (of the body or of a step) waits out its backoff: the attempt that
        # ended and its error, as the ledger has them.
        attempt = run.attempt + 1
        for st in run.steps or ():
            attempt = max(attempt, st.get("attempts") or 0)
        for s in steps:
            attempt = max(attempt, s.attempts)
        _status(tx, run.tenant, run.function_id, "retrying", run.id, run.started_at, None, attempt,
                loads(error) if error else None)


def _received_since(tx: Tx, run: ClaimedRun, w: WaitWrite) -> dict | None:
    """The first event matching a wait that arrived after the wait began but before it was stored."""
    if w.kind != "wait" or w.since is None:
        return None
    wait = {"match_path": w.match_path, "match_value": w.match_value, "if_expr": w.if_expr, "event": run.event}
    for row in tx.all("events_since", env=tx.env, name=w.event_name, since=w.since):
        event = loads(row["data"])
        if flow.match(wait, event):
            return event
    return None
