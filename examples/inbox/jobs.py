"""The durable functions of the inbox system.

- ``inbox-counts-recompute``: one at a time per client; retried with backoff; bursts of
  ``inbox.counts.dirty`` are idempotent per client and 5-minute bucket. Recomputes the
  counts, clears the dirty marker unless the client was written meanwhile, bumps
  ``inbox:v1:ver:{clientId}`` exactly once (keyed by ``ctx.step_key``).
- ``recompute-inbox-counts``: the sweep (cron ``INBOX_SWEEP_CRON``): the N oldest dirty
  clients fan out as ``inbox.counts.recompute`` with ids deterministic per (client, dirty_at),
  so a client written during its recompute is recomputed by the next sweep.
- ``analytics-recompute``: the last N days of ``analytics_daily`` for active workspaces.
- ``process-background-jobs`` and ``background-maintenance``: the cron route's work;
  the first stops taking new work after ``BACKGROUND_JOBS_TIME_BUDGET`` seconds.

Every function has a finish timeout. Redis keys (the versions here, the status blobs in
durably) carry the seeds' exact names in production and ``{env}:`` before them elsewhere.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from datetime import datetime, timezone

import redis

import durably

from . import events as ev
from .db import open_pool
from .settings import InboxSettings

# Status blobs in Redis at job:v1:{clientId}:{jobName}, as the seeds' admin views expect.
os.environ.setdefault("DURABLY_STATUS_KEY", "job:v1:{tenant}:{function}")

log = logging.getLogger("inbox")

app = durably.App("inbox")


class TransientError(Exception):
    """An injected failure (INBOX_FAIL_RATE), retried like any real transient error."""


class Resources:
    def __init__(self, settings: InboxSettings):
        self.settings = settings
        self.pool = open_pool(settings.database_url, settings.use_durably)
        self.redis = redis.Redis.from_url(settings.redis_url, decode_responses=True)
        self.bump = self.redis.register_script(_BUMP)

    def close(self) -> None:
        self.pool.close()
        self.redis.close()


# INCR the version once per step key: a step re-run after a crash does not bump twice.
_BUMP = """
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', 86400) then
  redis.call('SET', KEYS[3], ARGV[1])
  return redis.call('INCR', KEYS[1])
end
return tonumber(redis.call('GET', KEYS[1]) or '0')
"""

_res: Resources | None = None
_res_lock = threading.Lock()


def res() -> Resources:
    global _res
    if _res is None:
        with _res_lock:
            if _res is None:
                _res = Resources(InboxSettings())
    return _res


def app_key(key: str) -> str:
    """A Redis key of the app as this env writes it: the seeds' exact name in production
    (``DURABLY_PRODUCTION_ENV``), ``{env}:`` before it in any other env, as durably does for
    status blobs (DESIGN §5): a preview process never writes a key production reads."""
    s = app.settings
    return key if s.env == s.production_env else f"{s.env}:{key}"


def version_key(kind: str, client_id: str) -> str:
    return app_key(f"{kind}:v1:ver:{client_id}")


def bump_version(kind: str, client_id: str, step_key: str) -> int:
    r = res()
    now = datetime.now(timezone.utc).isoformat()
    return int(r.bump(keys=[version_key(kind, client_id), app_key(f"{kind}:v1:bumped:{step_key}"),
                            app_key(f"{kind}:v1:ver_at:{client_id}")], args=[now]))


# --- inbox counts ------------------------------------------------------------------------------


def recompute_counts(client_id: str, run_id: str) -> dict:
    """Recompute a client's counts; return the dirty marker seen by the same snapshot.

    Counts and marker are read in one REPEATABLE READ snapshot: a write is either in both
    (its message is counted) or in neither (its marker differs from the one returned, and
    ``clear_dirty`` leaves it for the next sweep).
    """
    r = res()
    if r.settings.fail_rate and random.random() < r.settings.fail_rate:
        raise TransientError(f"injected failure while recomputing {client_id}")
    with r.pool.connection() as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        started = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        rows = conn.execute(
            "SELECT folder, count(*), count(*) FILTER (WHERE unread) FROM messages WHERE client_id = %s "
            "GROUP BY folder", (client_id,)).fetchall()
        marker = conn.execute("SELECT dirty_at FROM inbox_dirty WHERE client_id = %s", (client_id,)).fetchone()
        conn.execute("DELETE FROM inbox_counts WHERE client_id = %s", (client_id,))
        for folder, total, unread in rows:
            conn.execute("INSERT INTO inbox_counts (client_id, folder, total, unread, computed_at) "
                         "VALUES (%s, %s, %s, %s, %s)", (client_id, folder, total, unread, started))
        finished = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        conn.execute("INSERT INTO recompute_log (client_id, run_id, started_at, finished_at) VALUES (%s, %s, %s, %s)",
                     (client_id, run_id, started, finished))
    return {"folders": len(rows), "started_at": started.isoformat(),
            "dirty_at": marker[0].isoformat() if marker else None}


def clear_dirty(client_id: str, seen_dirty_at: str | None) -> bool:
    """Clear the marker only if it is still the one the recompute saw (not re-dirtied since)."""
    if seen_dirty_at is None:
        return False
    with res().pool.connection() as conn:
        cur = conn.execute("DELETE FROM inbox_dirty WHERE client_id = %s AND dirty_at = %s", (client_id, seen_dirty_at))
        return cur.rowcount > 0


@app.function(
    id="inbox-counts-recompute",
    trigger=[durably.on_event(ev.INBOX_COUNTS_DIRTY, schema=ev.InboxCountsDirty),
             durably.on_event(ev.INBOX_COUNTS_RECOMPUTE, schema=ev.InboxCountsRecompute)],
    retries=durably.Retry(attempts=6, initial="500ms", max="30s"),
    concurrency=[durably.Concurrency(limit=1, key="event.data.clientId"), durably.Concurrency(limit=20)],
    idempotency=("event.name == 'inbox.counts.dirty' ? "
                 "event.data.clientId + ':' + string(int(event.ts / 300000)) : event.id"),
    priority=durably.Priority(run="has(event.data.priority) ? int(event.data.priority) : 0"),
    tenant="event.data.clientId",
    timeouts=durably.Timeouts(finish="5m"),
)
async def inbox_counts_recompute(ctx: durably.Context) -> dict:
    client_id = ctx.event.data["clientId"]
    counts = await ctx.step.run("recompute-counts", recompute_counts, client_id, ctx.run_id)
    cleared = await ctx.step.run("clear-dirty", clear_dirty, client_id, counts["dirty_at"])
    version = await ctx.step.run("bump-version", lambda: bump_version("inbox", client_id, ctx.step_key))
    return {"clientId": client_id, "folders": counts["folders"], "cleared": cleared, "version": version}


def pull_dirty(limit: int) -> list[dict]:
    with res().pool.connection() as conn:
        rows = conn.execute("SELECT client_id, dirty_at FROM inbox_dirty ORDER BY dirty_at LIMIT %s", (limit,)).fetchall()
    return [{"clientId": c, "dirtyAt": d.isoformat(), "dirtyMs": int(d.timestamp() * 1000)} for c, d in rows]


@app.function(id="recompute-inbox-counts", trigger=durably.on_cron(os.environ.get("INBOX_SWEEP_CRON", "* * * * *")),
              singleton=durably.Singleton(mode="skip"), timeouts=durably.Timeouts(finish="2m"))
async def sweep(ctx: durably.Context) -> dict:
    dirty = await ctx.step.run("pull-dirty", pull_dirty, res().settings.sweep_batch)
    if dirty:
        await ctx.step.send_event("fan-out", [
            ev.event(ev.INBOX_COUNTS_RECOMPUTE, {"clientId": d["clientId"], "requestId": ctx.run_id,
                                                 "source": "sweep"},
                     id=f"recompute:{d['clientId']}:{d['dirtyMs']}")
            for d in dirty
        ])
    return {"dirty": len(dirty)}


# --- analytics ---------------------------------------------------------------------------------


def recompute_analytics(days: int, client_id: str | None) -> list[str]:
    with res().pool.connection() as conn, conn.transaction():
        clients = [client_id] if client_id else [r[0] for r in conn.execute(
            "SELECT client_id FROM workspaces WHERE active UNION SELECT DISTINCT client_id FROM messages "
            "WHERE created_at > now() - make_interval(days => %s)", (days,))]
        for c in clients:
            conn.execute("DELETE FROM analytics_daily WHERE client_id = %s AND day > current_date - %s", (c, days))
            conn.execute(
                "INSERT INTO analytics_daily (client_id, day, messages, unread, computed_at) "
                "SELECT client_id, created_at::date, count(*), count(*) FILTER (WHERE unread), now() FROM messages "
                "WHERE client_id = %s AND created_at::date > current_date - %s GROUP BY client_id, created_at::date",
                (c, days))
    return clients


@app.function(id="analytics-recompute", trigger=durably.on_event(ev.ANALYTICS_RECOMPUTE, schema=ev.AnalyticsRecompute),
              retries=4, concurrency=[durably.Concurrency(limit=2)],
              # one recompute per client and 5-minute bucket, however many stale reads asked
              idempotency=("has(event.data.clientId) ? event.data.clientId + ':' + string(int(event.ts / 300000))"
                           " : event.id"),
              tenant="has(event.data.clientId) ? event.data.clientId : 'global'",
              timeouts=durably.Timeouts(finish="10m"))
async def analytics_recompute(ctx: durably.Context) -> dict:
    client_id = ctx.event.data.get("clientId")
    clients = await ctx.step.run("recompute", recompute_analytics, res().settings.analytics_days, client_id)
    for c in clients:
        await ctx.step.run("bump-version", lambda c=c: bump_version("analytics", c, ctx.step_key))
    return {"clients": len(clients)}


# --- background work (the cron route's parity) --------------------------------------------------

DRAFT_BATCH = 100


def process_drafts(limit: int = DRAFT_BATCH) -> int:
    with res().pool.connection() as conn:
        cur = conn.execute(
            "UPDATE draft_runs SET status = 'done', updated_at = now() WHERE id IN ("
            "SELECT id FROM draft_runs WHERE status = 'pending' ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)",
            (limit,))
        return cur.rowcount


def process_within_budget(budget: float, started: float | None = None) -> dict:
    """Drain pending drafts batch by batch; take no new batch once ``budget`` seconds have
    passed since ``started`` (now by default). The summary says how much of it is left."""
    started = time.monotonic() if started is None else started
    processed = batches = 0
    stopped_by = "empty"
    while True:
        if time.monotonic() - started >= budget:
            stopped_by = "budget"
            break
        n = process_drafts()
        if n == 0:
            break
        processed += n
        batches += 1
    left = max(0.0, budget - (time.monotonic() - started))
    return {"processed": processed, "batches": batches, "budgetSeconds": budget,
            "budgetLeftSeconds": round(left, 3), "stoppedBy": stopped_by}


def log_cron_work(dispatch_key: str | None, mode: str, executor: str) -> None:
    """One row per execution of a cron window's work (the load check counts them per window)."""
    if not dispatch_key:
        return
    with res().pool.connection() as conn:
        conn.execute("INSERT INTO cron_work_log (dispatch_key, mode, executor) VALUES (%s, %s, %s)",
                     (dispatch_key, mode, executor))


def _process(dispatch_key: str | None, run_id: str) -> dict:
    log_cron_work(dispatch_key, "durable", run_id)
    return process_within_budget(res().settings.time_budget)


@app.function(id="process-background-jobs", trigger=durably.on_event(ev.PROCESS_REQUESTED, schema=ev.ProcessRequested),
              retries=3, concurrency=[durably.Concurrency(limit=1)],
              timeouts=durably.Timeouts(finish=f"{int(InboxSettings().time_budget) + 60}s"))
async def process_background_jobs(ctx: durably.Context) -> dict:
    return await ctx.step.run("process", _process, ctx.event.data.get("dispatch_key"), ctx.run_id)


def recover_stale(minutes: int) -> int:
    with res().pool.connection() as conn:
        return conn.execute("UPDATE draft_runs SET status = 'pending', updated_at = now() WHERE status = 'processing' "
                            "AND updated_at < now() - make_interval(mins => %s)", (minutes,)).rowcount


def prune_drafts(days: int) -> int:
    with res().pool.connection() as conn:
        return conn.execute("DELETE FROM draft_runs WHERE status IN ('done', 'failed') "
                            "AND updated_at < now() - make_interval(days => %s)", (days,)).rowcount


def prune_inferred_memory() -> dict:
    """Delete lead and workspace memory entries past their expiry; how many of each."""
    with res().pool.connection() as conn:
        rows = conn.execute("WITH gone AS (DELETE FROM inferred_memory WHERE expires_at < now() RETURNING scope) "
                            "SELECT scope, count(*) FROM gone GROUP BY scope").fetchall()
    counts = dict(rows)
    return {"lead": int(counts.get("lead", 0)), "workspace": int(counts.get("workspace", 0))}


def queue_health() -> dict:
    from durably.health import collect

    report = collect(app.settings, app.store)
    summary = {"backlog": report.get("backlog"), "oldest_queued_age_s": report.get("oldest_queued_age_s"),
               "stale_leases": report.get("stale_leases"), "alerts": report.get("alerts")}
    log.info("queue health: backlog=%s oldest_age_s=%s stale_leases=%s", summary["backlog"],
             summary["oldest_queued_age_s"], summary["stale_leases"])
    return summary


def _recover(dispatch_key: str | None, run_id: str) -> int:
    log_cron_work(dispatch_key, "durable", run_id)
    return recover_stale(res().settings.stale_draft_minutes)


@app.function(id="background-maintenance",
              trigger=durably.on_event(ev.MAINTENANCE_REQUESTED, schema=ev.MaintenanceRequested),
              retries=3, concurrency=[durably.Concurrency(limit=1)], timeouts=durably.Timeouts(finish="5m"))
async def background_maintenance(ctx: durably.Context) -> dict:
    s = res().settings
    recovered = await ctx.step.run("recover-stale-drafts", _recover, ctx.event.data.get("dispatch_key"), ctx.run_id)
    pruned = await ctx.step.run("prune-draft-runs", prune_drafts, s.prune_draft_days)
    memory = await ctx.step.run("prune-inferred-memory", prune_inferred_memory)
    health = await ctx.step.run("queue-health", queue_health)
    return {"recovered": recovered, "pruned": pruned, "prunedMemory": memory, "health": health}
