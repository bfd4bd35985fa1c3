"""Sleeps free the worker; waits resume on the matching event or time out."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import durably
from tests.helpers import get_run, running_worker, wait_run
from tests.integration.support import steps_of, wait_status, wait_step


def test_sleep_resumes_after_the_duration_and_frees_the_worker(app_factory):
    """Done-when 3: with concurrency 1, another run completes during the sleep."""
    app = app_factory()
    marks: dict[str, float] = {}

    @app.function(id="sleeper", trigger=durably.on_event("sleep"))
    async def sleeper(ctx):
        await ctx.step.run("before", lambda: marks.setdefault("before", time.time()))
        await ctx.step.sleep("nap", "2s")
        await ctx.step.run("after", lambda: marks.setdefault("after", time.time()))
        return "rested"

    @app.function(id="quick", trigger=durably.on_event("quick"))
    async def quick(ctx):
        return await ctx.step.run("q", lambda: marks.setdefault("quick", time.time()) and "done")

    with running_worker(app, concurrency=1):
        sid = app.send(durably.Event("sleep")).runs[0]
        wait_status(app, sid, "sleeping")
        qid = app.send(durably.Event("quick")).runs[0]
        wait_run(app, qid)
        assert get_run(app, sid)["status"] == "sleeping"  # the quick run finished while it slept
        run = wait_run(app, sid, timeout=20)
    assert run["status"] == "completed" and run["output"] == "rested"
    assert marks["before"] < marks["quick"] < marks["after"]
    assert marks["after"] - marks["before"] >= 2.0
    nap = steps_of(app, sid)["nap"]
    assert nap["status"] == "completed" and nap["finished_at"] - nap["started_at"] >= 2.0
    assert nap["wake_at"] - nap["started_at"] >= 2.0 - 1e-6


def test_sleep_until(app_factory):
    app = app_factory()
    target: dict[str, float] = {}

    @app.function(id="until", trigger=durably.on_event("go"))
    async def until(ctx):
        when = await ctx.step.run("when", lambda: time.time() + 0.5)
        await ctx.step.sleep_until("wait", datetime.fromtimestamp(when, timezone.utc))
        await ctx.step.sleep_until("past", "2000-01-01T00:00:00Z")  # already due: no suspension
        target["woke"] = time.time()
        target["when"] = when
        return "ok"

    with running_worker(app):
        run = wait_run(app, app.send(durably.Event("go")).runs[0])
    assert run["status"] == "completed"
    assert target["woke"] >= target["when"]
    steps = steps_of(app, run["id"])
    assert steps["past"]["status"] == "completed"


def test_zero_and_timedelta_sleeps(app_factory):
    app = app_factory()

    @app.function(id="zero", trigger=durably.on_event("go"))
    async def zero(ctx):
        await ctx.step.sleep("none", 0)
        await ctx.step.sleep("short", timedelta(milliseconds=50))
        return "ok"

    with running_worker(app):
        run = wait_run(app, app.send(durably.Event("go")).runs[0])
    assert run["status"] == "completed"
    assert {s["status"] for s in steps_of(app, run["id"]).values()} == {"completed"}


def _waiter(app, **wait_kwargs):
    @app.function(id="waiter", trigger=durably.on_event("order.created"))
    async def waiter(ctx):
        got = await ctx.step.wait_for_event("approval", "order.approved", **wait_kwargs)
        return None if got is None else {"id": got.id, "data": got.data}

    return waiter


def test_wait_for_event_resumes_only_on_the_matching_event(app_factory):
    """Done-when 4 (first half)."""
    app = app_factory()
    _waiter(app, match="data.orderId", timeout="1m")
    with running_worker(app):
        # An event received before the wait began never satisfies it.
        app.send(durably.Event("order.approved", {"orderId": "o1"}, id="early"))
        rid = app.send(durably.Event("order.created", {"orderId": "o1"})).runs[0]
        wait_step(app, rid, "approval", "waiting")
        wait_status(app, rid, "waiting")
        # Matching happens in the transaction that records the event: once send returns, it is decided.
        app.send(durably.Event("order.approved", {"orderId": "o2"}, id="other-order"))
        app.send(durably.Event("order.shipped", {"orderId": "o1"}, id="other-name"))
        assert get_run(app, rid)["status"] == "waiting"
        assert steps_of(app, rid)["approval"]["status"] == "waiting"
        app.send(durably.Event("order.approved", {"orderId": "o1", "by": "ann"}, id="the-one"))
        run = wait_run(app, rid)
    assert run["status"] == "completed"
    assert run["output"] == {"id": "the-one", "data": {"orderId": "o1", "by": "ann"}}


def test_wait_for_event_match_accepts_the_event_prefix(app_factory):
    app = app_factory()
    _waiter(app, match="event.data.orderId")
    with running_worker(app):
        rid = app.send(durably.Event("order.created", {"orderId": 7})).runs[0]
        wait_status(app, rid, "waiting")
        app.send(durably.Event("order.approved", {"orderId": "7"}))  # a string is not the number 7
        assert get_run(app, rid)["status"] == "waiting"
        app.send(durably.Event("order.approved", {"orderId": 7}, id="num"))
        run = wait_run(app, rid)
    assert run["output"]["id"] == "num"


def test_wait_for_event_timeout_returns_none(app_factory):
    """Done-when 4 (second half)."""
    app = app_factory()
    _waiter(app, match="data.orderId", timeout="300ms")
    with running_worker(app):
        rid = app.send(durably.Event("order.created", {"orderId": "o1"})).runs[0]
        run = wait_run(app, rid)
        # A late event matches nothing and creates nothing.
        app.send(durably.Event("order.approved", {"orderId": "o1"}))
    assert run["status"] == "completed" and run["output"] is None
    step = steps_of(app, rid)["approval"]
    assert step["status"] == "completed" and step["output"] is None
    assert step["finished_at"] - step["started_at"] >= 0.3
    assert get_run(app, rid)["status"] == "completed"


def test_wait_for_event_with_if_over_event_and_async(app_factory):
    app = app_factory()
    _waiter(app, if_="async.data.orderId == event.data.orderId && async.data.amount >= event.data.minimum",
            timeout="1m")
    with running_worker(app):
        rid = app.send(durably.Event("order.created", {"orderId": "o1", "minimum": 10})).runs[0]
        wait_status(app, rid, "waiting")
        app.send(durably.Event("order.approved", {"orderId": "o1", "amount": 5}))
        app.send(durably.Event("order.approved", {"orderId": "o2", "amount": 50}))
        app.send(durably.Event("order.approved", {"orderId": "o1"}))  # the expression fails: no match
        assert get_run(app, rid)["status"] == "waiting"
        app.send(durably.Event("order.approved", {"orderId": "o1", "amount": 10}, id="enough"))
        run = wait_run(app, rid)
    assert run["output"]["id"] == "enough"


def test_one_event_resolves_each_matching_wait_once(app_factory):
    app = app_factory()
    _waiter(app, match="data.orderId", timeout="1m")
    with running_worker(app):
        a = app.send(durably.Event("order.created", {"orderId": "shared"})).runs[0]
        b = app.send(durably.Event("order.created", {"orderId": "shared"})).runs[0]
        c = app.send(durably.Event("order.created", {"orderId": "other"})).runs[0]
        for rid in (a, b, c):
            wait_status(app, rid, "waiting")
        app.send(durably.Event("order.approved", {"orderId": "shared"}, id="go"))
        ra, rb = wait_run(app, a), wait_run(app, b)
        assert get_run(app, c)["status"] == "waiting"
    assert ra["output"]["id"] == "go" and rb["output"]["id"] == "go"
