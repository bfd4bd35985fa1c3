"""Read-only queries of the ledger, shared by every dialect (run on a reader connection)."""

from __future__ import annotations

from typing import Any

from ..core.jsonutil import loads


def _run_dict(row: Any) -> dict:
    r = dict(row)
    for k in ("event", "events", "output", "error", "ckeys"):
        if k in r and r[k] is not None:
            r[k] = loads(r[k])
    return r


def get_run(tx, run_id: str, with_steps: bool = True) -> dict | None:
    row = tx.one("get_run", env=tx.env, id=run_id)
    if row is None:
        return None
    run = _run_dict(row)
    if with_steps:
        steps = []
        for s in tx.all("load_steps_full", run_id=run_id):
            d = dict(s)
            for k in ("output", "error", "log"):
                if d.get(k) is not None:
                    d[k] = loads(d[k])
            steps.append(d)
        run["steps"] = steps
    return run


def list_runs(tx, *, status=None, function_id=None, tenant=None, since=None, until=None, cursor=None,
              limit: int = 50) -> list[dict]:
    cursor_at = cursor_id = None
    if cursor:
        cursor_at, cursor_id = cursor
    rows = tx.all("list_runs", env=tx.env, status=status, function_id=function_id, tenant=tenant, since=since,
                  until=until, cursor_at=cursor_at, cursor_id=cursor_id, limit=limit)
    return [_run_dict(r) for r in rows]


def list_events(tx, *, name=None, cursor=None, limit: int = 50) -> list[dict]:
    cursor_at = cursor_id = None
    if cursor:
        cursor_at, cursor_id = cursor
    out = []
    for r in tx.all("list_events", env=tx.env, name=name, cursor_at=cursor_at, cursor_id=cursor_id, limit=limit):
        d = dict(r)
        d["event"] = loads(d.pop("data"))
        d["runs"] = [dict(x) for x in tx.all("runs_of_event", env=tx.env, event_id=d["id"])]
        out.append(d)
    return out


def get_event(tx, event_id: str) -> dict | None:
    r = tx.one("get_event", env=tx.env, id=event_id)
    if r is None:
        return None
    d = dict(r)
    d["event"] = loads(d.pop("data"))
    d["runs"] = [dict(x) for x in tx.all("runs_of_event", env=tx.env, event_id=event_id)]
    d["skipped"] = [dict(x) for x in tx.all("skips_of_event", env=tx.env, event_id=event_id)]
    return d


def list_functions(tx, since: float) -> list[dict]:
    stats: dict[str, dict[str, int]] = {}
    for r in tx.all("function_stats", env=tx.env, since=since):
        stats.setdefault(r["function_id"], {})[r["status"]] = r["n"]
    out = []
    for r in tx.all("list_functions", env=tx.env):
        d = {"id": r["id"], "app_id": r["app_id"], "config": loads(r["config"]), "updated_at": r["updated_at"]}
        last = tx.one("last_run_of", env=tx.env, function_id=r["id"])
        d["last_run"] = dict(last) if last else None
        d["cron"] = [dict(c) for c in tx.all("cron_of", env=tx.env, function_id=r["id"])]
        d["stats_24h"] = stats.get(r["id"], {})
        out.append(d)
    return out


def get_function(tx, function_id: str) -> dict | None:
    r = tx.one("function_config", env=tx.env, id=function_id)
    return loads(r["config"]) if r else None


def get_status(tx, tenant: str, function_id: str) -> dict | None:
    r = tx.one("get_status", env=tx.env, tenant=tenant, function_id=function_id)
    return loads(r["blob"]) if r else None


def health(tx, now: float, worker_window: float) -> dict:
    backlog = [dict(r) for r in tx.all("backlog", env=tx.env, now=now)]
    for b in backlog:
        b["oldest_age_s"] = max(0.0, now - b.pop("oldest")) if b.get("oldest") is not None else 0.0
    workers = []
    for w in tx.all("live_workers", env=tx.env, since=now - worker_window):
        d = dict(w)
        d["functions"] = loads(d["functions"])
        workers.append(d)
    stale = tx.one("stale_leases", env=tx.env, now=now)[0]
    counts = {r["status"]: r["n"] for r in tx.all("count_by_status", env=tx.env)}
    return {"backlog": backlog, "workers": workers, "stale_leases": stale, "counts": counts}


def registry(tx) -> dict[str, dict]:
    return {r["id"]: loads(r["config"]) for r in tx.all("list_functions", env=tx.env)}


def list_skips(tx, *, function_id: str | None = None, limit: int = 1000) -> list[dict]:
    return [dict(r) for r in tx.all("list_skips", env=tx.env, function_id=function_id, limit=limit)]


def list_slots(tx) -> list[dict]:
    return [dict(r) for r in tx.all("list_slots", env=tx.env)]


# --- the HTTP API: registry overview, replay selection, metrics --------------------------------

# Upper bounds (seconds) of the step duration buckets of ``metrics_step_durations``, in the
# order of its CASE; a bucket index past the end is +Inf.
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


def functions_overview(tx, since: float) -> list[dict]:
    """``list_functions`` plus, for functions with a cron trigger, their newest cron run."""
    out = list_functions(tx, since)
    for f in out:
        last = None
        if any("cron" in t for t in f["config"].get("triggers", [])):
            row = tx.one("last_run_by_trigger", env=tx.env, function_id=f["id"], trigger="cron")
            last = dict(row) if row else None
        f["last_cron_run"] = last
    return out


def replay_candidates(tx, *, function_id: str, status: str, since: float | None, until: float | None,
                      limit: int) -> list[dict]:
    rows = tx.all("replay_candidates", env=tx.env, function_id=function_id, status=status, since=since,
                  until=until, limit=limit)
    return [_run_dict(r) for r in rows]


def metrics(tx, now: float, worker_window: float) -> dict:
    """Everything ``/metrics`` derives from the ledger, read in one snapshot."""
    runs = [dict(r) for r in tx.all("metrics_runs", env=tx.env)]
    dead = {r["function_id"]: r["n"] for r in tx.all("metrics_dead_letters", env=tx.env)}
    steps: dict[str, dict] = {}
    for r in tx.all("metrics_step_durations", env=tx.env):
        h = steps.setdefault(r["function_id"], {"buckets": [0] * (len(STEP_BUCKETS) + 1), "sum": 0.0})
        h["buckets"][min(int(r["b"]), len(STEP_BUCKETS))] += r["n"]
        h["sum"] += r["total"] or 0.0
    backlog = [dict(r) for r in tx.all("backlog", env=tx.env, now=now)]
    workers = len(tx.all("live_workers", env=tx.env, since=now - worker_window))
    stale = tx.one("stale_leases", env=tx.env, now=now)[0]
    step_retries = {r["function_id"]: r["retries"] or 0 for r in tx.all("metrics_step_retries", env=tx.env)}
    return {"runs": runs, "dead_letters": dead, "steps": steps, "step_retries": step_retries, "backlog": backlog,
            "workers": workers, "stale_leases": stale}


def finished_per_minute(tx, since: float) -> list[dict]:
    return [dict(r) for r in tx.all("finished_per_minute", env=tx.env, since=since)]
