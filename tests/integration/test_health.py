"""Queue health on both stores: store and Redis reachable, live workers, backlog and the
oldest queued age per function, stale leases, the backlog alert flag."""

from __future__ import annotations

import json

import durably
from durably.health import collect
from durably.core.jsonutil import dumps
from tests.helpers import cli_env, run_cli, running_worker, wait_for
from tests.integration.test_retention import age_rows
from tests.redis_server import free_port


def _functions(app):
    @app.function(id="served", trigger=durably.on_event("served"))
    async def served(ctx):
        return None

    @app.function(id="backlogged", trigger=durably.on_event("backlogged"))
    async def backlogged(ctx):
        return None


def test_health_reports_workers_backlog_ages_stale_leases_and_alerts(app_factory, store_url):
    app = app_factory(backlog_alert_seconds="600")
    _functions(app)
    app.send([durably.Event("backlogged") for _ in range(3)])
    # A run claimed by a worker that then vanished: its lease expires, nobody recovers it yet.
    app.send(durably.Event("served"))
    runs, _next, _now = app.store.claim_runs("gone:1:x", dumps(["served"]), 1, 0.05).result()
    assert len(runs) == 1
    age_rows(store_url, 3600, where={"durably_runs": "function_id = 'backlogged'", "durably_events": "1 = 0",
                                     "durably_keys": "1 = 0", "durably_skips": "1 = 0"})
    wait_for(lambda: collect(app.settings, app.store)["stale_leases"] == 1, 10, what="the lease to expire")
    report = collect(app.settings, app.store)
    assert report["ok"] is True and report["store"]["ok"] is True and report["redis"] is None
    assert report["backlog"] == 3 and report["workers"] == []
    by_fn = {b["function_id"]: b for b in report["backlog_by_function"]}
    assert by_fn["backlogged"]["n"] == 3 and 3590 < by_fn["backlogged"]["oldest_age_s"] < 3700
    assert by_fn["backlogged"]["alert"] is True
    assert report["oldest_queued_age_s"] > 600 and report["alerts"] == {
        "backlog": True, "stale_leases": True, "no_workers": True}

    served = durably.App("served-only", settings=app.settings)
    served.functions = {"served": app.functions["served"]}
    try:
        with running_worker(served, concurrency=2):
            h = wait_for(lambda: (lambda r: r if r["workers"] else None)(collect(app.settings, app.store)), 10,
                         what="a live worker")
            assert h["workers"][0]["concurrency"] == 2 and h["workers"][0]["heartbeat_age_s"] < 5
            wait_for(lambda: collect(app.settings, app.store)["stale_leases"] == 0, 20,
                     what="the scheduler to recover the expired lease")
    finally:
        served.close()


def test_health_cli_reports_an_unreachable_redis(store_url, app_factory):
    app_factory().store  # noqa: B018 - the store exists and is migrated
    env = cli_env(store_url, DURABLY_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    r = run_cli(["health", "--json"], env)
    assert r.returncode == 1
    report = json.loads(r.stdout)
    assert report["store"]["ok"] is True and report["redis"]["ok"] is False and report["ok"] is False
