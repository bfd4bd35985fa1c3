"""The reference app's DESIGN §9 behaviours, each against the app started as its README says:
the cutover flag, time budgets, maintenance parity, the SLO-gated analytics path, dispatch
through durably's window ledger, env-safe keys, --no-worker and the multi-process recipe."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import redis

from tests.e2e.inbox_procs import REDIS_URL, ROOT, AppSchema, InboxProc, call, new_env
from tests.helpers import durably_cmd, wait_for

WINDOW = "3600"  # one window for the whole test: two pings of a test never straddle two


@pytest.fixture
def schema():
    s = AppSchema()
    yield s
    s.drop()


@pytest.fixture
def inbox(tmp_path, schema):
    started: list[InboxProc] = []

    def start(store_url: str, env: str | None = None, *args: str, **extra: str) -> InboxProc:
        extra.setdefault("BACKGROUND_JOBS_DISPATCH_WINDOW", WINDOW)
        p = InboxProc(tmp_path, store_url, schema, env or new_env(), args=args, **extra)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def test_flag_off_runs_the_work_inline_at_once_and_on_again_dispatches(inbox, store_url, schema):
    app = inbox(store_url)
    with schema.conn() as c:
        c.execute("INSERT INTO draft_runs (client_id) SELECT 'c' || g FROM generate_series(1, 30) g")
    status, body, _ = app.cron()
    assert status == 202 and body["mode"] == "dispatch" and body["duplicate"] is False, body
    assert "= false" in app.flag("false")
    status, body, _ = app.cron()  # no restart: the next ping reads the flag
    assert status == 200 and body["mode"] == "inline", body
    assert "budgetLeftSeconds" in body and 0 < body["budgetLeftSeconds"] <= 50
    assert body["maintenance"]["prunedMemory"] == {"lead": 0, "workspace": 0}
    assert "= true" in app.flag("true")
    status, body, _ = app.cron()  # dispatch again: the window was dispatched by the first ping
    assert status == 200 and body["mode"] == "dispatch" and body["duplicate"] is True, body


def test_the_app_route_and_durablys_route_agree_on_a_window(inbox, store_url):
    app = inbox(store_url)
    status, body, _ = app.durably_cron("background/maintenance.requested", int(WINDOW))
    assert status == 202 and body["duplicate"] is False, body
    status, body, _ = app.cron()
    assert status == 202, body  # process dispatched now, maintenance already by durably's route
    by_name = {d["dispatchKey"].rsplit(":", 1)[0]: d for d in body["dispatches"]}
    assert by_name["background/process.requested"]["duplicate"] is False
    assert by_name["background/maintenance.requested"]["duplicate"] is True
    status, body, _ = app.durably_cron("background/process.requested", int(WINDOW))
    assert status == 200 and body["duplicate"] is True, body
    assert body["eventId"] == by_name["background/process.requested"]["eventId"]
    status, body, _ = app.cron()
    assert status == 200 and body["duplicate"] is True
    runs = app.wait_done("process-background-jobs")
    assert len(app.runs("process-background-jobs")) == 1 and len(app.runs("background-maintenance")) == 1
    assert runs[0]["status"] == "completed"


def test_the_time_budget_stops_new_work_and_the_summary_says_what_is_left(inbox, pg_url, schema):
    spent = inbox(pg_url, None, BACKGROUND_JOBS_TIME_BUDGET="0")
    with schema.conn() as c:
        c.execute("INSERT INTO draft_runs (client_id) SELECT 'c' || g FROM generate_series(1, 250) g")
    spent.flag("false")
    status, body, _ = spent.cron()
    assert status == 200 and body["process"]["stoppedBy"] == "budget" and body["process"]["processed"] == 0, body
    assert body["budgetLeftSeconds"] == 0 and body["maintenance"] == {"skipped": "time budget spent"}
    spent.flag("true")
    app = inbox(pg_url)  # default budget, 50 s
    status, body, _ = app.cron()
    assert status in (200, 202), body
    run = app.wait_done("process-background-jobs")[0]
    out = app.admin(f"/runs/{run['id']}")["output"]
    assert out["processed"] == 250 and out["batches"] == 3 and out["stoppedBy"] == "empty", out
    assert 0 < out["budgetLeftSeconds"] <= out["budgetSeconds"] == 50
    fdef = next(f for f in app.admin("/functions")["functions"] if f["id"] == "process-background-jobs")
    assert json.dumps(fdef).count("finish") >= 1, fdef


def test_maintenance_prunes_expired_lead_and_workspace_memory(inbox, store_url, schema):
    with schema.conn() as c:
        app = inbox(store_url)
        c.execute("INSERT INTO inferred_memory (scope, client_id, subject, expires_at) VALUES "
                  "('lead', 'c1', 'l1', now() - interval '1 hour'), ('lead', 'c1', 'l2', now() - interval '1 s'),"
                  "('workspace', 'c1', 'w', now() - interval '1 day'), ('lead', 'c1', 'l3', now() + interval '1 day'),"
                  "('workspace', 'c2', 'w', now() + interval '1 hour')")
        status, body, _ = app.durably_cron("background/maintenance.requested", int(WINDOW))
        assert status == 202, body
        run = app.wait_done("background-maintenance")[0]
        out = app.admin(f"/runs/{run['id']}")["output"]
        assert out["prunedMemory"] == {"lead": 2, "workspace": 1}, out
        left = c.execute("SELECT scope, subject FROM inferred_memory ORDER BY 1, 2").fetchall()
        assert left == [("lead", "l3"), ("workspace", "w")]


def test_a_stale_analytics_read_sends_one_recompute_per_client_and_bucket(inbox, store_url):
    app = inbox(store_url, None, ANALYTICS_SLO_SECONDS="0")
    status, body, _ = call("POST", app.base + "/api/messages", {"clientId": "a1", "folder": "inbox"})
    assert status == 201, body
    status, first, _ = call("GET", app.base + "/api/inbox/a1/analytics")
    assert status == 200 and first["stale"] is True and first["ageSeconds"] is None, first
    assert first["recompute"]["duplicate"] is False and len(first["recompute"]["runs"]) == 1
    status, second, _ = call("GET", app.base + "/api/inbox/a1/analytics")
    assert second["recompute"] == {"eventId": first["recompute"]["eventId"], "duplicate": True, "runs": []}
    status, other, _ = call("GET", app.base + "/api/inbox/a2/analytics")  # another client: its own
    assert other["recompute"]["duplicate"] is False
    wait_for(lambda: len([r for r in app.runs("analytics-recompute") if r["status"] == "completed"]) == 2,
             timeout=30, interval=0.2)
    status, after, _ = call("GET", app.base + "/api/inbox/a1/analytics")
    assert after["days"] and after["days"][0]["messages"] == 1 and after["ageSeconds"] is not None
    assert after["version"] == 1 and after["recompute"]["duplicate"] is True  # still the same bucket
    assert len(app.runs("analytics-recompute")) == 2


def test_analytics_within_the_slo_send_nothing(inbox, store_url):
    app = inbox(store_url, None, ANALYTICS_SLO_SECONDS="3600")
    status, first, _ = call("GET", app.base + "/api/inbox/a3/analytics")
    assert first["stale"] is True  # nothing computed yet
    wait_for(lambda: [r for r in app.runs("analytics-recompute") if r["status"] == "completed"], timeout=30)
    status, body, _ = call("GET", app.base + "/api/inbox/a3/analytics")
    assert body["stale"] is False or body["ageSeconds"] is None  # a3 has no messages: no rows to age
    status, bad, _ = call("POST", app.base + "/api/messages", {"clientId": "", "folder": "inbox"})
    assert status == 400 and bad["error"]["code"] == "invalid_input", bad


def test_preview_keys_carry_the_env_and_production_keys_the_seeds_names(inbox, pg_url, tmp_path):
    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    client = f"k{new_env()}"
    preview = inbox(pg_url, "preview-" + new_env())
    status, _, _ = call("POST", preview.base + "/api/messages", {"clientId": client, "folder": "inbox"})
    assert status == 201
    wait_for(lambda: r.get(f"{preview.env}:inbox:v1:ver:{client}") == "1", timeout=30, interval=0.2)
    wait_for(lambda: (json.loads(r.get(f"{preview.env}:job:v1:{client}:inbox-counts-recompute") or "{}")
                      .get("status") == "completed"), timeout=30, interval=0.2)
    assert r.get(f"inbox:v1:ver:{client}") is None and r.get(f"job:v1:{client}:inbox-counts-recompute") is None
    assert not [k for k in r.scan_iter(f"*{client}*") if not k.startswith(preview.env + ":")]
    preview.stop()
    prod_env = "prod-" + new_env()
    prod = inbox(pg_url, prod_env, DURABLY_PRODUCTION_ENV=prod_env)
    try:
        status, _, _ = call("POST", prod.base + "/api/messages", {"clientId": client, "folder": "inbox"})
        assert status == 201
        wait_for(lambda: r.get(f"inbox:v1:ver:{client}") == "1", timeout=30, interval=0.2)
        wait_for(lambda: (json.loads(r.get(f"job:v1:{client}:inbox-counts-recompute") or "{}")
                          .get("status") == "completed"), timeout=30, interval=0.2)
        assert r.get(f"{preview.env}:inbox:v1:ver:{client}") == "1"  # production never wrote preview's either
    finally:
        for k in r.scan_iter(f"*{client}*"):
            r.delete(k)


def test_no_worker_serves_the_api_and_a_durably_worker_runs_the_functions(inbox, pg_url, procs):
    api = inbox(pg_url, None, "--no-worker")
    assert "API only (--no-worker)" in api.log()
    status, body, _ = call("POST", api.base + "/api/messages", {"clientId": "nw1", "folder": "inbox"})
    assert status == 201, body
    runs = api.runs("inbox-counts-recompute")
    assert [r["status"] for r in runs] == ["queued"]  # nobody runs it in the API process
    worker = procs.start(["worker", "examples.inbox.jobs:app"], api.environ, cwd=str(ROOT))
    done = api.wait_done("inbox-counts-recompute")
    assert done[0]["status"] == "completed", procs.log(worker)
    status, counts, _ = call("GET", api.base + "/api/inbox/nw1/counts")
    assert counts["folders"]["inbox"]["total"] == 1 and counts["version"] == 1, counts


def test_the_flag_command_shows_and_refuses(schema):
    env = {"INBOX_DATABASE_URL": schema.url, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "examples.inbox", "flag", "background-jobs-use-durably"], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and p.stdout.strip() == "background-jobs-use-durably = true", p.stdout + p.stderr
    p = subprocess.run([sys.executable, "-m", "examples.inbox", "flag", "background-jobs-use-durably", "maybe"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and "invalid choice" in p.stderr
    assert durably_cmd("worker")  # the recipe's worker command exists


def _through(proxy, pg_url: str) -> str:
    return pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}", 1)


def test_a_black_holed_store_is_a_503_within_the_dispatch_timeout(inbox, pg_url):
    from tests.tcp_proxy import TcpProxy

    proxy = TcpProxy(5432)
    proxy.start()
    try:
        done = inbox(_through(proxy, pg_url), None, DURABLY_DISPATCH_TIMEOUT="1")
        app = inbox(_through(proxy, pg_url), None, DURABLY_DISPATCH_TIMEOUT="1")  # another env
        assert done.cron()[0] == 202
        proxy.black_hole()
        # A window dispatched before the store went is known as done: a duplicate, no 503.
        status, body, _ = done.cron()
        assert status == 200 and body["duplicate"] is True, body
        t0 = time.monotonic()
        status, body, headers = app.cron()
        took = time.monotonic() - t0
        assert status == 503 and body["error"]["code"] == "store_unavailable", body
        assert took < 1.5, took
        assert {k.lower(): v for k, v in headers.items()}.get("retry-after") == "5"
        lines = [x for x in app.log().splitlines() if "inbox.cron.dispatch_failed" in x]
        assert len(lines) == 1, app.log()
        fields = json.loads(lines[0][lines[0].index("{"):])
        assert fields["dispatchKeys"] and all(k.startswith("background/") for k in fields["dispatchKeys"])
        assert fields["error"] and fields["fallback"] == "none"
    finally:
        proxy.restore()  # the apps stop with their store back, then the proxy goes
        for p in (done, app):
            p.stop()
        proxy.cut()


def test_the_emergency_fallback_runs_a_window_inline_once_across_processes(inbox, pg_url):
    from tests.tcp_proxy import TcpProxy

    proxy = TcpProxy(5432)
    proxy.start()
    env = new_env()
    try:
        url = _through(proxy, pg_url)
        a = inbox(url, env, DURABLY_DISPATCH_TIMEOUT="1", BACKGROUND_JOBS_INLINE_EMERGENCY_FALLBACK="true")
        b = inbox(url, env, DURABLY_DISPATCH_TIMEOUT="1", BACKGROUND_JOBS_INLINE_EMERGENCY_FALLBACK="true")
        proxy.black_hole()
        t0 = time.monotonic()
        status, body, _ = a.cron()
        assert time.monotonic() - t0 < 1.5 + 1.0  # the deadline, then the (tiny) inline work
        assert status == 200 and body["mode"] == "inline" and body["duplicate"] is False, body
        assert sorted(body["ran"]) == ["background/maintenance.requested", "background/process.requested"]
        assert "budgetLeftSeconds" in body
        status, again, _ = a.cron()
        assert status == 200 and again["duplicate"] is True, again
        status, other, _ = b.cron()  # another process, the same window: Redis says it ran
        assert status == 200 and other["duplicate"] is True and other.get("ran", []) == [], other
        lines = [x for x in a.log().splitlines() + b.log().splitlines() if "inbox.cron.dispatch_failed" in x]
        assert len(lines) == 1, lines
        assert json.loads(lines[0][lines[0].index("{"):])["dispatchKeys"] == body["dispatchKeys"]
        proxy.restore()
        wait_for(lambda: a.log().count("inbox.cron.inline_recorded") == 2, timeout=30, interval=0.2,
                 what="the inline windows recorded in the ledger")
        status, d, _ = b.durably_cron("background/process.requested", int(WINDOW))
        assert status == 200 and d["duplicate"] is True, d  # never dispatched once the store is back
        status, again, _ = b.cron()
        assert again["duplicate"] is True
        assert a.runs("process-background-jobs") == [] and a.runs("background-maintenance") == []
    finally:
        proxy.restore()
        for p in (a, b):
            p.stop()
        proxy.cut()
