"""Retention: ``durably prune --older-than`` and DURABLY_PRUNE_AFTER, on both stores."""

from __future__ import annotations

import json
import sqlite3

import pytest

import durably
from durably import retention
from durably.errors import InvalidInput
from tests.helpers import cli_env, get_run, run_cli, running_worker, runs_of, wait_for, wait_run

DAY = 86400.0

# Time columns moved back to make rows look old (the store's clock cannot be moved).
AGE = {
    "durably_runs": ("created_at", "started_at", "finished_at", "available_at", "sort_at"),
    "durably_events": ("received_at",),
    "durably_keys": ("expires_at",),
    "durably_skips": ("created_at",),
}


def age_rows(url: str, seconds: float, where: dict[str, str] | None = None) -> None:
    """Move the time columns of every row (or those matching ``where[table]``) back by ``seconds``."""
    where = where or {}
    stmts = []
    for table, cols in AGE.items():
        sets = ", ".join(f"{c} = {c} - {seconds}" for c in cols)
        cond = where.get(table, "1 = 1")
        stmts.append(f"UPDATE {table} SET {sets} WHERE {cond}")
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url[len("sqlite:///"):])
        with conn:
            for s in stmts:
                conn.execute(s)
        conn.close()
    else:
        import psycopg

        from durably.store.postgres import split_url

        dsn, schema = split_url(url)
        with psycopg.connect(dsn, autocommit=True, options=f"-c search_path={schema}") as conn:
            for s in stmts:
                conn.execute(s)


def _setup(app):
    @app.function(id="keep", trigger=durably.on_event("go"), idempotency="event.data.k")
    async def keep(ctx):
        return await ctx.step.run("one", lambda: ctx.event.data["k"])

    @app.function(id="idle", trigger=durably.on_event("idle"))
    async def idle(ctx):  # never run: no worker serves it in these tests
        return None

    return keep


def test_prune_deletes_old_finished_runs_steps_events_and_keys_in_batches(app_factory, store_url):
    app = app_factory()
    _setup(app)
    served = durably.App("served", settings=app.settings)  # runs "keep" only: "idle" runs stay queued
    served.functions = {"keep": app.functions["keep"]}
    old = app.send([durably.Event("go", {"k": f"k{i}"}) for i in range(5)]).runs
    queued = app.send(durably.Event("idle")).runs[0]
    try:
        with running_worker(served):
            for rid in old:
                wait_run(app, rid)
        age_rows(store_url, 2 * DAY)
        with running_worker(served):
            fresh = app.send(durably.Event("go", {"k": "fresh"})).runs[0]
            wait_run(app, fresh)
    finally:
        served.close()
    assert app.store.get_status("global", "keep").result() is not None

    totals = retention.prune(app.store, DAY, batch=2)

    assert totals["runs"] == 5 and totals["steps"] == 5
    assert totals["events"] == 6  # the five "go" and the "idle" event, all aged two days
    assert totals["keys"] >= 5  # their idempotency keys expired
    for rid in old:
        assert get_run(app, rid) is None
    assert get_run(app, fresh)["status"] == "completed"  # finished just now: kept
    assert get_run(app, queued)["status"] == "queued"  # live runs are never pruned
    assert app.store.get_status("global", "keep").result() is not None  # status blobs stay
    # A second pass finds nothing, and an expired key can be taken again by a new event.
    assert not any(retention.prune(app.store, DAY).values())
    assert app.send(durably.Event("go", {"k": "k0"})).runs


def test_prune_keeps_events_a_day_whatever_the_retention(app_factory, store_url):
    app = app_factory()
    _setup(app)
    ev = app.send(durably.Event("idle", id="dedupe-me")).ids[0]
    age_rows(store_url, 3600, where={"durably_runs": "1 = 0"})  # the event is an hour old
    assert retention.prune(app.store, 60)["events"] == 0
    assert app.store.get_event(ev).result() is not None
    # Its id still deduplicates a second delivery.
    assert app.send(durably.Event("idle", id="dedupe-me")).duplicates == ["dedupe-me"]


def test_prune_rejects_a_non_positive_retention(app_factory):
    app = app_factory()
    with pytest.raises(InvalidInput):
        retention.prune(app.store, 0)


def test_prune_cli(store_url, app_factory):
    app = app_factory()
    _setup(app)
    with running_worker(app):
        rid = app.send(durably.Event("go", {"k": "x"})).runs[0]
        wait_run(app, rid)
    age_rows(store_url, 40 * DAY)
    env = cli_env(store_url)
    r = run_cli(["prune", "--older-than", "30d", "--json"], env)
    assert r.returncode == 0, r.stderr
    totals = json.loads(r.stdout)
    assert totals["runs"] == 1 and totals["steps"] == 1 and totals["events"] == 1
    assert get_run(app, rid) is None
    r = run_cli(["prune", "--older-than", "30d"], env)
    assert r.returncode == 0 and "nothing older than 30d" in r.stdout
    bad = run_cli(["prune", "--older-than", "soon"], env)
    assert bad.returncode == 1 and bad.stderr.startswith("error: ") and len(bad.stderr.strip().splitlines()) == 1


def test_scheduler_prunes_with_prune_after(app_factory):
    app = app_factory(prune_after="1s")
    _setup(app)
    with running_worker(app):
        rid = app.send(durably.Event("go", {"k": "auto"})).runs[0]
        wait_run(app, rid)
        wait_for(lambda: get_run(app, rid) is None, 20, what="the finished run to be pruned")
        # Events stay at least a day; the run's event is still there.
        assert app.store.get_event(app.store.list_events().result()[0]["id"]).result()
    assert not runs_of(app, function_id="keep")
