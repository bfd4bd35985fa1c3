"""Pausing and resuming a function (queue and skip mode), and the audit rows of operators'
actions, on both stores: a paused function's runs are never claimed (the claim statement
itself reads the paused table), a run executing at the pause goes on, resume releases the
waiting runs in their order."""

from __future__ import annotations

import json
import threading

import pytest

import durably
from durably import admin
from durably.errors import UnknownFunction
from tests.helpers import make_app, running_worker, wait_for, wait_run

pytestmark = pytest.mark.anyio
OPERATOR = admin.Actor("operator", "127.0.0.9")


@pytest.fixture
def anyio_backend():
    return "asyncio"


def jobs_app(store_url: str) -> tuple[durably.App, list[int], threading.Event]:
    app = make_app(store_url, "paused")
    order: list[int] = []
    gate = threading.Event()

    @app.function(id="job", trigger=durably.on_event("job.go"))
    async def job(ctx):
        if ctx.event.data.get("nap"):
            await ctx.step.sleep("nap", "300ms")
        if ctx.event.data.get("gate"):
            await ctx.step.run("gate", lambda: gate.wait(20))
        await ctx.step.run("mark", order.append, ctx.event.data["n"])
        return ctx.event.data["n"]

    @app.function(id="other", trigger=durably.on_event("other.go"))
    async def other(ctx):
        return "ok"

    app.runtime.registry.register().result()
    return app, order, gate


def audit_rows(app: durably.App) -> list[dict]:
    return app.store.list_audit(limit=100).result()


def nothing_claimable(app: durably.App) -> None:
    """A claim of the paused function's runs, as any worker would make it, takes nothing."""
    runs, next_at, _now = app.store.claim_runs("probe", json.dumps(["job"]), 10, 30).result()
    assert runs == [] and next_at is None


async def test_pause_stops_claims_and_resume_runs_them_in_order(store_url):
    app, order, _gate = jobs_app(store_url)
    with running_worker(app, concurrency=1):
        (napper,) = app.send(durably.Event("job.go", {"n": 1, "nap": True})).runs
        wait_run(app, napper, ("sleeping",))
        res = await admin.pause(app.store, "job", actor=OPERATOR)
        assert res == {"function_id": "job", "paused": True, "mode": "queue", "was_paused": False}
        (queued,) = app.send(durably.Event("job.go", {"n": 2})).runs
        (free,) = app.send(durably.Event("other.go")).runs
        wait_run(app, free)  # another function is not paused
        due = app.store.get_run(napper).result()["available_at"]
        wait_for(lambda: app.store.now().result() > due + 0.3, what="the sleep to be due")
        nothing_claimable(app)
        assert app.store.get_run(napper).result()["status"] == "sleeping"
        assert app.store.get_run(queued).result()["status"] == "queued"
        assert order == []
        assert app.store.paused_functions().result()["job"]["mode"] == "queue"
        rows = [app.store.get_run(r).result() for r in (napper, queued)]
        claim_order = [r["event"]["data"]["n"] for r in sorted(rows, key=lambda r: (r["sort_at"], r["id"]))]
        res = await admin.resume(app.store, "job", actor=OPERATOR)
        assert res["paused"] is False and res["was_paused"] is True
        assert wait_run(app, napper)["status"] == "completed"
        assert wait_run(app, queued)["status"] == "completed"
    assert order == claim_order  # released in their order: the one ready first starts first
    assert app.store.paused_functions().result() == {}
    actions = [(r["role"], r["action"], r["target"], r["client"]) for r in audit_rows(app)]
    assert actions == [("operator", "resume", "job", "127.0.0.9"), ("operator", "pause", "job", "127.0.0.9")]
    app.close()


async def test_a_run_executing_at_the_pause_goes_on(store_url):
    app, order, gate = jobs_app(store_url)
    with running_worker(app):
        (rid,) = app.send(durably.Event("job.go", {"n": 7, "gate": True})).runs
        wait_run(app, rid, ("running",))
        await admin.pause(app.store, "job", actor=OPERATOR)
        gate.set()
        assert wait_run(app, rid)["status"] == "completed"
    assert order == [7]
    app.close()


async def test_skip_mode_records_paused_skips(store_url):
    app, _order, _gate = jobs_app(store_url)
    res = await admin.pause(app.store, "job", skip=True, actor=admin.CLI)
    assert res["mode"] == "skip"
    sent = app.send(durably.Event("job.go", {"n": 1}))
    assert sent.runs == []
    assert [(s["function_id"], s["reason"]) for s in sent.skipped] == [("job", "paused")]
    event = app.store.get_event(sent.ids[0]).result()
    assert [(s["function_id"], s["reason"]) for s in event["skipped"]] == [("job", "paused")]
    # Back to queue mode: triggers create runs again, which wait.
    assert (await admin.pause(app.store, "job", actor=admin.CLI))["was_paused"] is True
    (rid,) = app.send(durably.Event("job.go", {"n": 2})).runs
    assert app.store.get_run(rid).result()["status"] == "queued"
    nothing_claimable(app)
    assert [r["action"] for r in audit_rows(app)] == ["pause", "pause"]
    # Pausing again in the same mode changes nothing and is not recorded; nor is resuming twice.
    await admin.pause(app.store, "job", actor=admin.CLI)
    await admin.resume(app.store, "job", actor=admin.CLI)
    assert (await admin.resume(app.store, "job", actor=admin.CLI))["was_paused"] is False
    assert [r["action"] for r in audit_rows(app)] == ["resume", "pause", "pause"]
    with pytest.raises(UnknownFunction):
        await admin.pause(app.store, "nope", actor=admin.CLI)
    assert len(audit_rows(app)) == 3
    app.close()


async def test_audit_rows_exist_exactly_when_the_action_happened(store_url):
    app, _order, _gate = jobs_app(store_url)
    (a,) = app.send(durably.Event("job.go", {"n": 1})).runs
    (b,) = app.send(durably.Event("job.go", {"n": 2})).runs
    await admin.cancel_run(app.store, a, actor=OPERATOR)
    with pytest.raises(admin.Conflict):
        await admin.cancel_run(app.store, a, actor=OPERATOR)  # already cancelled: no second row
    dry = await admin.bulk_cancel(app.store, function_id="job", dry_run=True, actor=OPERATOR)
    assert dry["count"] == 1  # a dry run is not an action: no row
    assert [(r["action"], r["target"]) for r in audit_rows(app)] == [("cancel", a)]
    bulk = await admin.bulk_cancel(app.store, function_id="job", actor=OPERATOR)
    assert bulk["count"] == 1 and bulk["runs"][0]["id"] == b
    assert (await admin.bulk_cancel(app.store, function_id="job", actor=OPERATOR))["count"] == 0
    replay = await admin.replay_run(app.store, a, actor=OPERATOR)
    again = await admin.bulk_replay(app.store, function_id="job", status="cancelled", actor=OPERATOR)
    assert again["count"] == 1  # b (a was replayed already)
    now = await admin.run_now(app.store, "other", {"x": 1}, actor=admin.CLI)
    rows = audit_rows(app)
    assert [(r["role"], r["action"], r["target"]) for r in rows] == [
        ("cli", "run_now", "other"), ("operator", "bulk_replay", "job"), ("operator", "replay", a),
        ("operator", "bulk_cancel", "job"), ("operator", "cancel", a)]
    assert rows[0]["params"]["event_id"] == now["event_id"] and rows[0]["client"] is None
    assert rows[1]["params"]["matched"] == 1 and rows[2]["params"]["function_id"] == "job"
    assert rows[3]["params"] == {"limit": 100, "matched": 1}
    assert all(r["env"] == "test" for r in rows)
    assert replay["replay_of"] == a
    page = await admin.audit_log(app.store, limit=2)
    assert [e["action"] for e in page["entries"]] == ["run_now", "bulk_replay"] and page["next_cursor"]
    rest = await admin.audit_log(app.store, limit=10, cursor=page["next_cursor"])
    assert [e["action"] for e in rest["entries"]] == ["replay", "bulk_cancel", "cancel"]
    assert rest["next_cursor"] is None
    app.close()


async def test_prune_removes_old_audit_rows_and_records_itself(store_url):
    from durably.retention import prune

    app, _order, _gate = jobs_app(store_url)
    await admin.pause(app.store, "job", actor=OPERATOR)
    await admin.resume(app.store, "job", actor=OPERATOR)
    last = audit_rows(app)[0]["at"]
    wait_for(lambda: app.store.now().result() > last + 0.2, what="the rows to age")
    totals = prune(app.store, 0.1, audit=admin.CLI.audit("prune", None, older_than="0.1s"))
    assert totals["audit"] == 2
    assert [(r["role"], r["action"], r["params"]) for r in audit_rows(app)] == [
        ("cli", "prune", {"older_than": "0.1s"})]
    app.close()


async def test_a_run_released_by_a_crashed_worker_is_not_claimed_while_paused(store_url):
    app, _order, _gate = jobs_app(store_url)
    (rid,) = app.send(durably.Event("job.go", {"n": 1})).runs
    (held,), _next, _now = app.store.claim_runs("crashed", json.dumps(["job"]), 1, 30).result()
    assert held.id == rid
    await admin.pause(app.store, "job", actor=OPERATOR)
    assert app.store.release_runs("crashed", [rid]).result() == 1  # as lease recovery requeues it
    assert app.store.get_run(rid).result()["status"] == "queued"
    nothing_claimable(app)
    await admin.resume(app.store, "job", actor=OPERATOR)
    (again,), _next, _now = app.store.claim_runs("probe", json.dumps(["job"]), 10, 30).result()
    assert again.id == rid and again.resumed
    app.close()
