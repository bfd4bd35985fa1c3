"""durably.testing: the real engine on a throwaway store, with time the test controls."""

from __future__ import annotations

import time

import pytest

import durably
from durably.testing import TestEnv


def make_app():
    app = durably.App("testing-demo")
    calls = {"flaky": 0}

    @app.function(id="slow-greeter", trigger=durably.on_event("greet"), retries=durably.Retry(attempts=3, initial="1h", max="1h"))
    async def greeter(ctx):
        name = await ctx.step.run("name", lambda: ctx.event.data.get("name", "world"))
        await ctx.step.sleep("a-day", "1d")

        def flaky():
            calls["flaky"] += 1
            if calls["flaky"] < 2:
                raise RuntimeError("not yet")
            return "ok"

        await ctx.step.run("flaky", flaky)
        return f"hello {name}"

    @app.function(id="approval", trigger=durably.on_event("request"))
    async def approval(ctx):
        ev = await ctx.step.wait_for_event("approved", "approve", match="data.id", timeout="2h")
        return "approved" if ev else "expired"

    return app, calls


def test_sleeps_and_backoffs_are_skipped():
    app, calls = make_app()
    t0 = time.monotonic()
    with TestEnv(app) as env:
        run = env.run("slow-greeter", {"name": "Ada"})
        assert run.status == "completed" and run.output == "hello Ada"
        assert run.steps["flaky"]["attempts"] == 2
        assert run.steps["a-day"]["status"] == "completed"
        assert env.now() - time.time() >= 86400 + 1800  # a day of sleep and a jittered 1 h backoff passed
    assert time.monotonic() - t0 < 10
    assert calls["flaky"] == 2


def test_wait_for_event_then_send_or_time_out():
    app, _ = make_app()
    with TestEnv(app) as env:
        a = env.send(durably.Event("request", {"id": "a"})).runs[0]
        b = env.send(durably.Event("request", {"id": "b"})).runs[0]
        assert env.result(a).status == "waiting"
        env.send(durably.Event("approve", {"id": "a"}))
        assert env.result(a).output == "approved"
        assert env.result(b).status == "waiting"
        env.advance("3h")
        assert env.result(b).output == "expired"


def test_store_must_not_be_open_yet(tmp_path):
    app, _ = make_app()
    app.configure(database_url=f"sqlite:///{tmp_path}/x.db")
    app.store  # noqa: B018
    try:
        with pytest.raises(durably.InvalidInput):
            TestEnv(app).start()
    finally:
        app.close()


def test_ctx_attempt_counts_the_current_steps_tries():
    app = durably.App("attempts")
    seen = []

    @app.function(id="att", trigger=durably.on_event("att"), retries=3)
    async def att(ctx):
        def first():
            seen.append(("first", ctx.attempt))
            if ctx.attempt < 2:
                raise RuntimeError("again")

        def second():
            seen.append(("second", ctx.attempt))

        await ctx.step.run("first", first)
        await ctx.step.run("second", second)

    with TestEnv(app) as env:
        assert env.run("att").status == "completed"
    assert seen == [("first", 0), ("first", 1), ("first", 2), ("second", 0)]


def _sleep_then_wait_app():
    app = durably.App("sleep-then-wait")

    @app.function(id="order", trigger=durably.on_event("order.placed"))
    async def order(ctx):
        await ctx.step.run("reserve", lambda: "reserved")
        await ctx.step.sleep("cool-off", "10m")
        paid = await ctx.step.wait_for_event("paid", "order.paid", match="data.id", timeout="1h")
        return "shipped" if paid else "expired"

    return app


def test_send_runs_the_work_it_starts_until_the_clock_must_move():
    with TestEnv(_sleep_then_wait_app()) as env:
        rid = env.send(durably.Event("order.placed", {"id": "o1"})).runs[0]
        run = env.result(rid, auto_advance=False)  # read as it stands: send already ran it to its sleep
        assert run.status == "sleeping" and run.steps["reserve"]["status"] == "completed"
        env.advance("10m")
        run = env.result(rid, auto_advance=False)
        assert run.status == "waiting" and run.steps["paid"]["status"] == "waiting"
        env.send(durably.Event("order.paid", {"id": "o1"}))
        run = env.result(rid, auto_advance=False)
        assert run.status == "completed" and run.output == "shipped"


def test_advance_goes_through_each_timer_in_order():
    """DESIGN §2: a sleep of 10 min then a wait with a 1 h timeout, advanced by 2 h, has slept,
    waited and timed out."""
    with TestEnv(_sleep_then_wait_app()) as env:
        rid = env.send(durably.Event("order.placed", {"id": "o2"})).runs[0]
        env.advance("2h")
        run = env.result(rid, auto_advance=False)
        assert run.status == "completed" and run.output == "expired"
        assert run.steps["cool-off"]["status"] == "completed" and run.steps["paid"]["status"] == "completed"
        # An event after the timeout matches nothing.
        env.send(durably.Event("order.paid", {"id": "o2"}))
        assert env.result(rid, auto_advance=False).output == "expired"


def test_a_failed_runs_stack_shows_the_users_frames_and_the_chained_cause():
    app = durably.App("stacks")

    def lookup(data):
        try:
            return data["price"]
        except KeyError as exc:
            raise ValueError("no price on the order") from exc

    @app.function(id="price", trigger=durably.on_event("p"), retries=0)
    async def price(ctx):
        return await ctx.step.run("lookup", lookup, {})

    with TestEnv(app) as env:
        run = env.run("price")
    assert run.status == "failed"
    stack = run.error["stack"]
    assert "KeyError: 'price'" in stack and "ValueError: no price on the order" in stack
    assert "The above exception was the direct cause" in stack
    assert stack.count("KeyError: 'price'") == 1, stack
    assert stack.rstrip().endswith("StepError: step 'lookup' failed: ValueError: no price on the order")
    assert "concurrent/futures" not in stack and "asyncio" not in stack
    assert "in lookup" in stack and "in price" in stack  # the user's frames
    import os

    import durably as pkg

    ours = os.path.dirname(pkg.__file__)
    assert ours not in stack, stack  # none of durably's own frames


def test_a_step_error_raised_from_the_memo_still_shows_the_steps_own_error():
    from durably.errors import StepError, error_dict

    def failing():
        raise KeyError("sku")

    try:
        failing()
    except KeyError as exc:
        step_err = error_dict(exc)
    err = error_dict(StepError("lookup", step_err))  # not chained: as on a replay from the memo
    assert "in failing" in err["stack"] and "KeyError: 'sku'" in err["stack"]
    assert "failed step 'lookup' for good" in err["stack"]
