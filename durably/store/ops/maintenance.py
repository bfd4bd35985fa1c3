"""Maintenance: worker heartbeats, released and expired leases, leadership, retention."""

from __future__ import annotations

from ...core.jsonutil import dumps
from .tx import KEY_TTL, Tx

# --- workers, leases, leadership --------------------------------------------------------------


def heartbeat(tx: Tx, worker: dict, lease: float, runs: list[tuple[str, int]] | None = None) -> int:
    """Record the worker and extend leases: of ``runs`` (``(id, lease_gen)``, the runs it
    executes now) when given, else of every running run it owns."""
    if runs is None:
        n = tx.exec("heartbeat_runs", owner=worker["id"], now=tx.now, lease=lease)
    elif runs:
        n = len(tx.all("fence_runs", now=tx.now,
                       items=dumps([{"id": rid, "gen": gen, "lease": lease} for rid, gen in runs])))
    else:
        n = 0
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


def hand_back(tx: Tx, runs: list[tuple[str, int]]) -> list[str]:
    """Requeue runs (``(id, lease_gen)``) still running under that token; their ids."""
    out = []
    for rid, gen in runs:
        if tx.exec("requeue_run_fenced", run_id=rid, gen=gen, now=tx.now):
            tx.exec("release_slots", run_id=rid)
            out.append(rid)
    tx.woke = tx.woke or bool(out)
    return out


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


# --- leadership hand-over and retention ------------------------------------------------------


def release_leadership(tx: Tx, name: str, owner: str) -> bool:
    """Give up a leadership this owner holds (a clean shutdown): a standby takes over at once."""
    return bool(tx.exec("leader_release", env=tx.env, name=name, owner=owner))


def prune(tx: Tx, older_than: float, limit: int) -> dict[str, int]:
    """Delete one batch (at most ``limit`` rows of each kind) of data past retention.

    Finished runs that ended more than ``older_than`` seconds ago go with their steps;
    events and skips as old go too, but events are kept at least 24 h whatever
    ``older_than`` says (their ids deduplicate deliveries); expired unique keys, spent
    throttle/rate-limit state, workers gone silent that long and audit rows as old. Live runs and status
    blobs are never touched. The caller repeats while a count reaches ``limit``; each
    batch is its own short transaction, so pruning never holds locks for long.
    """
    before = tx.now - older_than
    events_before = tx.now - max(older_than, KEY_TTL)
    out = {"runs": 0, "steps": 0, "events": 0, "skips": 0, "keys": 0, "dispatches": 0, "workers": 0,
           "audit": 0}
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
    tx.exec("prune_fair_keys", env=tx.env, before=before)
    out["dispatches"] = tx.exec("prune_dispatches", env=tx.env, before=events_before, limit=limit)
    out["workers"] = tx.exec("prune_workers", env=tx.env, before=before)
    out["audit"] = tx.exec("prune_audit", env=tx.env, before=before, limit=limit)
    return out


_ENV_TABLES = ("waits", "slots", "keys", "gcra", "debounce", "batches", "cron", "status", "workers", "leaders",
               "skips", "dispatches", "triggers", "functions", "paused", "audit", "fair_keys", "runs", "events")


def delete_env(tx: Tx) -> dict[str, int]:
    """Delete every row of this env (and nothing of another): rows deleted, by table.

    For a throwaway env (``durably chaos``); no process of the env should be running.
    """
    out = {"steps": tx.exec("delete_env_steps", env=tx.env)}
    for table in _ENV_TABLES:
        out[table] = tx.exec(f"delete_env_{table}", env=tx.env)
    return out
