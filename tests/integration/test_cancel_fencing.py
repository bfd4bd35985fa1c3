"""Cancel, fencing tokens, lease takeover and graceful stop: a zombie never double-applies."""

from __future__ import annotations

import threading
import time

import pytest

import durably
from durably.errors import LeaseLost
from durably.core.jsonutil import dumps
from durably.core.records import StepWrite
from tests.helpers import get_run, running_worker, wait_for, wait_run
from tests.integration.support import steps_of, wait_status, wait_step


def test_cancel_a_sleeping_run(app_factory):
    app = app_factory()
    woke: list[str] = []

    @app.function(id="napper", trigger=durably.on_event("go"))
    async def napper(ctx):
        await ctx.step.sleep("nap", "300ms")
        await ctx.step.run("after", lambda: woke.append(ctx.event.data["who"]))

    with running_worker(app, concurrency=1):
        first = app.send(durably.Event("go", {"who": "first"})).runs[0]
        wait_status(app, first, "sleeping")
        assert app.store.cancel_run(first, "cancelled by test").result() is True
        assert app.store.cancel_run(first, "again").result() is False  # already over
        # A second run sleeps past the first one's wake time: by the time it completes, the
        # worker would have resumed the first one, had it still been claimable.
        second = app.send(durably.Event("go", {"who": "second"})).runs[0]
        wait_run(app, second)
    run = get_run(app, first)
    assert run["status"] == "cancelled" and run["terminal_reason"] == "cancelled by test"
    assert run["finished_at"] is not None
    assert woke == ["second"]


def test_a_cancelled_runs_open_steps_end_as_cancelled(app_factory, store_url):
    """DESIGN §3: a cancelled run's unfinished steps end as cancelled, never stay sleeping or
    waiting (the ledger, `durably runs show` and the run page show them so)."""
    import asyncio

    from durably import admin
    from tests.helpers import cli_env, run_cli

    app = app_factory(env="dev")  # the dashboard below runs with open routes (dev)

    @app.function(id="napper", trigger=durably.on_event("nap"))
    async def napper(ctx):
        await ctx.step.run("before", lambda: 1)
        await ctx.step.sleep("nap", "1h")

    @app.function(id="waiter", trigger=durably.on_event("wait"))
    async def waiter(ctx):
        await ctx.step.wait_for_event("reply", "reply", timeout="1h")

    with running_worker(app, concurrency=2):
        sleeping = app.send(durably.Event("nap")).runs[0]
        waiting = app.send(durably.Event("wait")).runs[0]
        wait_step(app, sleeping, "nap", "sleeping")
        wait_step(app, waiting, "reply", "waiting")
        for rid in (sleeping, waiting):
            asyncio.run(admin.cancel_run(app.store, rid))
    steps = steps_of(app, sleeping)
    assert steps["before"]["status"] == "completed"
    assert steps["nap"]["status"] == "cancelled" and steps["nap"]["finished_at"] is not None
    assert steps_of(app, waiting)["reply"]["status"] == "cancelled"
    assert get_run(app, waiting)["status"] == "cancelled"

    shown = run_cli(["runs", "show", sleeping], cli_env(store_url, env="dev"))
    assert shown.returncode == 0, shown.stderr
    (nap_line,) = [ln for ln in shown.stdout.splitlines() if ln.split()[:1] == ["nap"]]
    assert "cancelled" in nap_line and "sleeping" not in nap_line, shown.stdout

    from starlette.testclient import TestClient

    from durably.config import Settings
    from durably.server.api import create_app

    with TestClient(create_app(Settings.load({"DURABLY_DATABASE_URL": store_url, "DURABLY_ENV": "dev"}))) as c:
        page = c.get(f"/runs/{sleeping}")
    assert page.status_code == 200
    assert "sleeping" not in page.text and "cancelled with its run" in page.text


def test_cancel_a_running_run_fences_out_its_worker(app_factory):
    app = app_factory()
    started, gate = threading.Event(), threading.Event()
    later: list[str] = []

    def block():
        started.set()
        gate.wait(10)
        return "finished late"

    @app.function(id="long", trigger=durably.on_event("go"))
    async def long(ctx):
        try:
            await ctx.step.run("block", block)
        except Exception:  # noqa: BLE001 - a broad handler in user code must not swallow the fence
            later.append("handler")
        await ctx.step.run("next", lambda: later.append("next"))
        return "completed anyway"

    with running_worker(app) as worker:
        rid = app.send(durably.Event("go")).runs[0]
        assert started.wait(10)
        assert app.store.cancel_run(rid, "cancelled by user").result() is True
        gate.set()
        wait_for(lambda: rid not in worker._inflight, what="the worker to drop the cancelled run")
    run = get_run(app, rid)
    assert run["status"] == "cancelled" and run["output"] is None
    assert later == []  # no step after the cancel ran
    assert "block" not in steps_of(app, rid) or steps_of(app, rid)["block"]["status"] != "completed"
    assert "next" not in steps_of(app, rid)


def test_a_zombie_whose_lease_was_taken_over_cannot_write(app_factory):
    app = app_factory()

    @app.function(id="f", trigger=durably.on_event("go"))
    async def f(ctx):
        return None

    rid = app.send(durably.Event("go")).runs[0]
    store, functions = app.store, dumps(["f"])
    claimed, _, _ = store.claim_runs("zombie", functions, 1, 0.2).result()
    zombie = claimed[0]
    assert zombie.id == rid
    # The zombie stops heartbeating (a long GC pause, a frozen VM): its lease expires and is recovered.
    wait_for(lambda: rid in store.recover_leases().result(), timeout=10, what="lease recovery")
    claimed, _, _ = store.claim_runs("heir", functions, 1, 30).result()
    heir = claimed[0]
    assert heir.id == rid and heir.lease_gen > zombie.lease_gen

    now = time.time()

    def step(output: str, sid: str = "s1") -> StepWrite:
        return StepWrite(sid, "run", "completed", 0, 1, dumps(output), None, None, now, now)

    with pytest.raises(LeaseLost):
        store.checkpoint_step(zombie, 30, step("zombie")).result()
    assert store.checkpoint_step(heir, 30, step("heir")).result() is None
    with pytest.raises(LeaseLost):
        store.checkpoint_step(zombie, 30, step("zombie", "s2")).result()
    with pytest.raises(LeaseLost):
        store.suspend_run(zombie, steps=[step("zombie", "s3")], waits=[], children=[], status="sleeping",
                          available_at=now + 60, lease=30).result()
    with pytest.raises(LeaseLost):
        store.finish_run(zombie, status="completed", output=dumps("zombie"), error=None, reason="completed").result()
    # The zombie's heartbeat does not extend the heir's lease either.
    store.heartbeat({"id": "zombie", "host": "h", "pid": 1, "functions": ["f"], "concurrency": 1}, 30).result()
    store.finish_run(heir, status="completed", output=dumps("heir"), error=None, reason="completed").result()

    run = get_run(app, rid)
    assert run["status"] == "completed" and run["output"] == "heir"
    assert [(s["step_id"], s["output"]) for s in run["steps"]] == [("s1", "heir")]


def test_a_crashed_run_is_resumed_from_its_last_committed_step(app_factory):
    """In-process twin of the kill -9 test: a claimed run whose worker vanished is recovered."""
    app = app_factory(lease_seconds=1)
    calls: list[str] = []

    @app.function(id="resumable", trigger=durably.on_event("go"))
    async def resumable(ctx):
        await ctx.step.run("one", lambda: calls.append("one"))
        await ctx.step.run("two", lambda: calls.append("two"))
        return ctx.attempt

    rid = app.send(durably.Event("go")).runs[0]
    store, functions = app.store, dumps(["resumable"])
    crashed = store.claim_runs("crashed", functions, 1, 1.0).result()[0][0]
    now = time.time()
    store.checkpoint_step(crashed, 1.0, StepWrite("one", "run", "completed", 0, 1, "null", None, None, now,
                                                  now)).result()
    # The worker that claimed it is gone; a new worker recovers the run after the lease.
    with running_worker(app):
        run = wait_run(app, rid, timeout=15)
    assert run["status"] == "completed"
    assert calls == ["two"]  # the committed step was not run again


def test_graceful_stop_hands_unfinished_runs_back(app_factory):
    app = app_factory()
    started, gate = threading.Event(), threading.Event()
    calls: list[str] = []

    def block():
        calls.append("block")
        started.set()
        gate.wait(10)
        return "done"

    @app.function(id="slow", trigger=durably.on_event("go"))
    async def slow(ctx):
        await ctx.step.run("first", lambda: calls.append("first"))
        return await ctx.step.run("block", block)

    with running_worker(app, grace=0.2):
        rid = app.send(durably.Event("go")).runs[0]
        assert started.wait(10)
    # The worker waited 0.2 s, then gave the run back to the queue.
    run = get_run(app, rid)
    assert run["status"] == "queued" and run["lease_owner"] is None
    assert steps_of(app, rid)["first"]["status"] == "completed"
    gate.set()
    with running_worker(app):
        run = wait_run(app, rid)
    assert run["status"] == "completed" and run["output"] == "done"
    assert calls.count("first") == 1


def test_graceful_stop_lets_in_flight_runs_finish(app_factory):
    app = app_factory()
    started, gate = threading.Event(), threading.Event()

    @app.function(id="finisher", trigger=durably.on_event("go"))
    async def finisher(ctx):
        await ctx.step.run("wait", lambda: started.set() or gate.wait(10))
        return "finished during the drain"

    with running_worker(app, grace=10) as worker:
        rid = app.send(durably.Event("go")).runs[0]
        assert started.wait(10)

        def release_once_stopping():
            wait_for(lambda: worker.stopping.is_set(), what="stop")
            gate.set()

        threading.Thread(target=release_once_stopping, daemon=True).start()
    run = get_run(app, rid)
    assert run["status"] == "completed" and run["output"] == "finished during the drain"


def test_waiting_run_cancelled_is_not_resumed_by_its_event(app_factory):
    app = app_factory()

    @app.function(id="w", trigger=durably.on_event("go"))
    async def w(ctx):
        return await ctx.step.wait_for_event("wait", "answer", timeout="1m")

    with running_worker(app):
        rid = app.send(durably.Event("go")).runs[0]
        wait_step(app, rid, "wait", "waiting")
        wait_status(app, rid, "waiting")
        assert app.store.cancel_run(rid, "user").result()
        app.send(durably.Event("answer"))
        assert get_run(app, rid)["status"] == "cancelled"
        assert steps_of(app, rid)["wait"]["status"] == "cancelled"  # ended with its run; the event did not complete it
