"""Read-only queries of the ledger, shared by every dialect (run on a reader connection, one
snapshot per read). Each returns the records of ``core.ledger``; ``SqlStore`` exposes them
as the ``Ledger`` methods of the same names."""

from __future__ import annotations

from typing import Any, Protocol, cast

from ..core.jsonutil import loads
from ..core.ledger import (AuditRecord, PausedRecord, BacklogEntry, BacklogRow, CronRecord, EventDetail, EventRecord, EventSkip,
                           FinishedBucket, FunctionConfig, FunctionOverview, FunctionRecord, HealthSnapshot,
                           MetricsSnapshot, RunBrief, RunCount, RunRecord, RunRef, SkipRecord, SlotRecord,
                           StatusBlob, StepHistogram, StepRecord, WorkerRecord)


class ReadTx(Protocol):
    """What a read needs of a transaction: the env and named statements."""

    env: str

    def one(self, name: str, /, **params: Any) -> Any: ...
    def all(self, name: str, /, **params: Any) -> list[Any]: ...


def _run_record(row: Any) -> RunRecord:
    r = dict(row)
    for k in ("event", "events", "output", "error", "ckeys"):
        if k in r and r[k] is not None:
            r[k] = loads(r[k])
    return cast(RunRecord, r)


def _step_record(row: Any) -> StepRecord:
    d = dict(row)
    for k in ("output", "error", "log"):
        if d.get(k) is not None:
            d[k] = loads(d[k])
    return cast(StepRecord, d)


def _event_record(tx: ReadTx, row: Any) -> dict[str, Any]:
    d = dict(row)
    d["event"] = loads(d.pop("data"))
    d["runs"] = [cast(RunRef, dict(x)) for x in tx.all("runs_of_event", env=tx.env, event_id=d["id"])]
    return d


def get_run(tx: ReadTx, run_id: str, with_steps: bool = True) -> RunRecord | None:
    row = tx.one("get_run", env=tx.env, id=run_id)
    if row is None:
        return None
    run = _run_record(row)
    if with_steps:
        run["steps"] = [_step_record(s) for s in tx.all("load_steps_full", run_id=run_id)]
    return run


def list_runs(tx: ReadTx, *, status: str | None = None, function_id: str | None = None, tenant: str | None = None,
              since: float | None = None, until: float | None = None, cursor: tuple[float, str] | None = None,
              limit: int = 50) -> list[RunRecord]:
    cursor_at = cursor_id = None
    if cursor:
        cursor_at, cursor_id = cursor
    rows = tx.all("list_runs", env=tx.env, status=status, function_id=function_id, tenant=tenant, since=since,
                  until=until, cursor_at=cursor_at, cursor_id=cursor_id, limit=limit)
    return [_run_record(r) for r in rows]


def list_events(tx: ReadTx, *, name: str | None = None, cursor: tuple[float, str] | None = None,
                limit: int = 50) -> list[EventRecord]:
    cursor_at = cursor_id = None
    if cursor:
        cursor_at, cursor_id = cursor
    rows = tx.all("list_events", env=tx.env, name=name, cursor_at=cursor_at, cursor_id=cursor_id, limit=limit)
    return [cast(EventRecord, _event_record(tx, r)) for r in rows]


def get_event(tx: ReadTx, event_id: str) -> EventDetail | None:
    r = tx.one("get_event", env=tx.env, id=event_id)
    if r is None:
        return None
    d = _event_record(tx, r)
    d["skipped"] = [cast(EventSkip, dict(x)) for x in tx.all("skips_of_event", env=tx.env, event_id=event_id)]
    return cast(EventDetail, d)


def list_functions(tx: ReadTx, since: float) -> list[FunctionRecord]:
    stats: dict[str, dict[str, int]] = {}
    for r in tx.all("function_stats", env=tx.env, since=since):
        stats.setdefault(r["function_id"], {})[r["status"]] = r["n"]
    out: list[FunctionRecord] = []
    for r in tx.all("list_functions", env=tx.env):
        last = tx.one("last_run_of", env=tx.env, function_id=r["id"])
        out.append({
            "id": r["id"], "app_id": r["app_id"], "config": loads(r["config"]), "updated_at": r["updated_at"],
            "last_run": cast(RunBrief, dict(last)) if last else None,
            "cron": [cast(CronRecord, dict(c)) for c in tx.all("cron_of", env=tx.env, function_id=r["id"])],
            "stats_24h": stats.get(r["id"], {}),
        })
    return out


def get_function(tx: ReadTx, function_id: str) -> FunctionConfig | None:
    r = tx.one("function_config", env=tx.env, id=function_id)
    return cast(FunctionConfig, loads(r["config"])) if r else None


def get_status(tx: ReadTx, tenant: str, function_id: str) -> StatusBlob | None:
    r = tx.one("get_status", env=tx.env, tenant=tenant, function_id=function_id)
    return cast(StatusBlob, loads(r["blob"])) if r else None


def health(tx: ReadTx, now: float, worker_window: float) -> HealthSnapshot:
    backlog: list[BacklogEntry] = []
    for r in tx.all("backlog", env=tx.env, now=now):
        b = dict(r)
        oldest = b.pop("oldest")
        b["oldest_age_s"] = max(0.0, now - oldest) if oldest is not None else 0.0
        backlog.append(cast(BacklogEntry, b))
    workers: list[WorkerRecord] = []
    for w in tx.all("live_workers", env=tx.env, since=now - worker_window):
        d = dict(w)
        d["functions"] = loads(d["functions"])
        workers.append(cast(WorkerRecord, d))
    stale: int = tx.one("stale_leases", env=tx.env, now=now)[0]
    counts: dict[str, int] = {r["status"]: r["n"] for r in tx.all("count_by_status", env=tx.env)}
    return {"backlog": backlog, "workers": workers, "stale_leases": stale, "counts": counts}


def registry(tx: ReadTx) -> dict[str, FunctionConfig]:
    return {r["id"]: loads(r["config"]) for r in tx.all("list_functions", env=tx.env)}


def list_skips(tx: ReadTx, *, function_id: str | None = None, limit: int = 1000) -> list[SkipRecord]:
    return [cast(SkipRecord, dict(r)) for r in tx.all("list_skips", env=tx.env, function_id=function_id, limit=limit)]


def list_slots(tx: ReadTx) -> list[SlotRecord]:
    return [cast(SlotRecord, dict(r)) for r in tx.all("list_slots", env=tx.env)]


# --- the HTTP API: registry overview, replay selection, metrics --------------------------------

# Upper bounds (seconds) of the step duration buckets of ``metrics_step_durations``, in the
# order of its CASE; a bucket index past the end is +Inf.
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# Upper bounds of the attempts buckets of ``durably_step_attempts``; past the end is +Inf.
ATTEMPT_BUCKETS = (1, 2, 3, 5, 10, 20)


def functions_overview(tx: ReadTx, since: float) -> list[FunctionOverview]:
    """``list_functions`` plus, for functions with a cron trigger, their newest cron run."""
    out: list[FunctionOverview] = []
    for f in list_functions(tx, since):
        last = None
        if any("cron" in t for t in f["config"].get("triggers", [])):
            row = tx.one("last_run_by_trigger", env=tx.env, function_id=f["id"], trigger="cron")
            last = cast(RunBrief, dict(row)) if row else None
        out.append({**f, "last_cron_run": last})
    return out


def replay_candidates(tx: ReadTx, *, function_id: str, status: str, since: float | None, until: float | None,
                      limit: int, tenant: str | None = None) -> list[RunRecord]:
    rows = tx.all("replay_candidates", env=tx.env, function_id=function_id, status=status, since=since,
                  until=until, tenant=tenant, limit=limit)
    return [_run_record(r) for r in rows]


def metrics(tx: ReadTx, now: float, worker_window: float) -> MetricsSnapshot:
    """Everything ``/metrics`` derives from the ledger, read in one snapshot."""
    runs = [cast(RunCount, dict(r)) for r in tx.all("metrics_runs", env=tx.env)]
    dead: dict[str, int] = {r["function_id"]: r["n"] for r in tx.all("metrics_dead_letters", env=tx.env)}
    steps: dict[str, StepHistogram] = {}
    for r in tx.all("metrics_step_durations", env=tx.env):
        h = steps.setdefault(r["function_id"], {"buckets": [0] * (len(STEP_BUCKETS) + 1), "sum": 0.0})
        h["buckets"][min(int(r["b"]), len(STEP_BUCKETS))] += r["n"]
        h["sum"] += r["total"] or 0.0
    backlog = [cast(BacklogRow, dict(r)) for r in tx.all("backlog", env=tx.env, now=now)]
    workers = len(tx.all("live_workers", env=tx.env, since=now - worker_window))
    stale: int = tx.one("stale_leases", env=tx.env, now=now)[0]
    step_retries: dict[str, int] = {r["function_id"]: r["retries"] or 0
                                    for r in tx.all("metrics_step_retries", env=tx.env)}
    attempts: dict[str, StepHistogram] = {}
    for r in tx.all("metrics_step_attempts", env=tx.env):
        h = attempts.setdefault(r["function_id"], {"buckets": [0] * (len(ATTEMPT_BUCKETS) + 1), "sum": 0.0})
        n, tries = int(r["n"]), int(r["attempts"])
        h["buckets"][next((i for i, b in enumerate(ATTEMPT_BUCKETS) if tries <= b), len(ATTEMPT_BUCKETS))] += n
        h["sum"] += float(n * tries)
    return {"runs": runs, "dead_letters": dead, "steps": steps, "step_retries": step_retries, "backlog": backlog,
            "workers": workers, "stale_leases": stale, "step_attempts": attempts}


def finished_per_minute(tx: ReadTx, since: float) -> list[FinishedBucket]:
    return [cast(FinishedBucket, dict(r)) for r in tx.all("finished_per_minute", env=tx.env, since=since)]


def paused_functions(tx: ReadTx) -> dict[str, PausedRecord]:
    return {r["function_id"]: cast(PausedRecord, dict(r)) for r in tx.all("paused_functions", env=tx.env)}


def list_audit(tx: ReadTx, *, cursor: tuple[float, str] | None = None, limit: int = 50) -> list[AuditRecord]:
    at, id = cursor if cursor is not None else (None, None)
    out = []
    for r in tx.all("list_audit", env=tx.env, cursor_at=at, cursor_id=id, limit=limit):
        d = dict(r)
        d["params"] = loads(d["params"]) if d.get("params") else {}
        out.append(cast(AuditRecord, d))
    return out
