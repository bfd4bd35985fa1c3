"""The ledger as the CLI and API see it: run and step JSON, status blobs (DESIGN §5)."""

from __future__ import annotations

import re
import threading

import durably
from durably.serialize import run_json
from tests.helpers import get_run, running_worker, wait_for, wait_run
from tests.integration.support import FAST, wait_status

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
BLOB_KEYS = {"status", "runId", "startedAt", "finishedAt", "durationMs", "attempt", "lastError"}


def _blob(app, tenant, fid):
    return app.store.get_status(tenant, fid).result()


def test_status_blob_on_start_and_end(app_factory):
    app = app_factory()
    gate = threading.Event()

    @app.function(id="job", trigger=durably.on_event("go"), tenant="event.data.clientId", retries=FAST)
    async def job(ctx):
        await ctx.step.run("hold", lambda: gate.wait(10))
        if ctx.event.data.get("fail"):
            raise durably.NonRetriableError("boom")
        return "ok"

    with running_worker(app):
        rid = app.send(durably.Event("go", {"clientId": "c1"})).runs[0]
        running = wait_for(lambda: (lambda b: b if b and b["status"] == "running" else None)(_blob(app, "c1", "job")),
                           what="running blob")
        assert set(running) == BLOB_KEYS
        assert running["runId"] == rid and ISO.match(running["startedAt"])
        assert running["finishedAt"] is None and running["durationMs"] is None and running["lastError"] is None
        gate.set()
        wait_run(app, rid)
        done = _blob(app, "c1", "job")
        assert done["status"] == "completed" and done["runId"] == rid
        assert ISO.match(done["finishedAt"]) and done["durationMs"] >= 0 and done["startedAt"] == running["startedAt"]
        assert done["lastError"] is None and done["attempt"] == 1  # 1-based (DESIGN §5)
        assert _blob(app, "global", "job") is None  # tenants do not share blobs

        fid = app.send(durably.Event("go", {"clientId": "c2", "fail": True})).runs[0]
        wait_run(app, fid)
    failed = _blob(app, "c2", "job")
    assert failed["status"] == "failed" and failed["runId"] == fid
    assert failed["lastError"] == "NonRetriableError: boom"
    assert _blob(app, "c1", "job")["runId"] == rid


def test_status_blob_defaults_to_the_global_tenant(app_factory):
    app = app_factory()

    @app.function(id="plain", trigger=durably.on_event("go"))
    async def plain(ctx):
        return 1

    with running_worker(app):
        rid = app.send(durably.Event("go")).runs[0]
        wait_run(app, rid)
    assert _blob(app, "global", "plain")["runId"] == rid


def test_run_and_step_json(app_factory):
    app = app_factory()
    tries = []

    def flaky():
        tries.append(1)
        if len(tries) == 1:
            raise ValueError("first try fails")
        return {"ok": True}

    @app.function(id="shape", trigger=durably.on_event("go"), retries=FAST, tenant="event.data.t")
    async def shape(ctx):
        await ctx.step.run("flaky", flaky)
        return {"done": 1}

    with running_worker(app):
        rid = app.send(durably.Event("go", {"t": "acme"}, id="ev-shape")).runs[0]
        wait_run(app, rid)
    data = run_json(get_run(app, rid), detail=True)
    for key in ("id", "function_id", "status", "tenant", "event_id", "created_at", "started_at", "finished_at",
                "attempts", "terminal_reason", "steps", "output", "error"):
        assert key in data
    assert data["status"] == "completed" and data["tenant"] == "acme" and data["event_id"] == "ev-shape"
    assert data["attempts"] == 1 and data["output"] == {"done": 1} and data["error"] is None
    assert all(ISO.match(data[k]) for k in ("created_at", "started_at", "finished_at"))
    step = data["steps"][0]
    assert step["id"] == "flaky" and step["status"] == "completed" and step["attempts"] == 2
    assert step["errors"] == [{"name": "ValueError", "message": "first try fails"}]
    assert [a["attempt"] for a in step["attempt_log"]] == [1, 2]


def test_ledger_filters(app_factory):
    app = app_factory()

    @app.function(id="f1", trigger=durably.on_event("go"), tenant="event.data.t")
    async def f1(ctx):
        return 1

    @app.function(id="f2", trigger=durably.on_event("go"), tenant="event.data.t", retries=0)
    async def f2(ctx):
        raise RuntimeError("no")

    with running_worker(app):
        res = app.send([durably.Event("go", {"t": "a"}), durably.Event("go", {"t": "b"})])
        for rid in res.runs:
            wait_run(app, rid)
    read = lambda **kw: app.store.list_runs(**kw).result()  # noqa: E731
    assert len(read()) == 4
    assert {r["function_id"] for r in read(status="failed")} == {"f2"}
    assert {r["tenant"] for r in read(function_id="f1")} == {"a", "b"}
    assert len(read(tenant="a")) == 2 and len(read(limit=3)) == 3
    rows = read()
    assert [r["created_at"] for r in rows] == sorted((r["created_at"] for r in rows), reverse=True)


def test_envs_are_isolated(store_url):
    from tests.helpers import make_app

    a = make_app(store_url, "a", env="one")
    b = make_app(store_url, "b", env="two")
    try:
        @a.function(id="fn", trigger=durably.on_event("go"))
        async def fa(ctx):
            return "one"

        @b.function(id="fn", trigger=durably.on_event("go"))
        async def fb(ctx):
            return "two"

        ra = a.send(durably.Event("go", id="same-id"))
        rb = b.send(durably.Event("go", id="same-id"))  # another env: not a duplicate
        assert len(ra.runs) == 1 and len(rb.runs) == 1
        with running_worker(a):
            wait_run(a, ra.runs[0])
            assert get_run(a, rb.runs[0]) is None
        assert b.store.get_run(rb.runs[0]).result()["status"] == "queued"
        with running_worker(b):
            assert wait_run(b, rb.runs[0])["output"] == "two"
        assert get_run(a, ra.runs[0])["output"] == "one"
    finally:
        a.close()
        b.close()
