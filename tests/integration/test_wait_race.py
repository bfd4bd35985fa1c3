"""An event that arrives after wait_for_event() began but before the wait is stored still
resumes the run; an event from before the wait began does not."""

from __future__ import annotations

import time

import durably
from durably.core.records import StepWrite, WaitWrite
from durably.testing import TestEnv
from tests.helpers import get_run


def _app(app_factory):
    app = app_factory()

    @app.function(id="waiter", trigger=durably.on_event("start"))
    async def waiter(ctx):
        ev = await ctx.step.wait_for_event("reply", "reply", match="data.id", timeout="1h")
        return ev.data if ev else None

    app.register()
    return app


def _claim(app):
    runs, _n, _t = app.store.claim_runs("w", '["waiter"]', 1, 60.0).result()
    assert len(runs) == 1
    return runs[0]


def _suspend(app, run, since):
    step = StepWrite("reply", "wait", "waiting", 0, started_at=since, wake_at=since + 3600)
    wait = WaitWrite("reply", "wait", "reply", "data.id", '"a"', None, since + 3600, since=since)
    app.store.suspend_run(run, steps=[step], waits=[wait], children=[], status="waiting",
                          available_at=since + 3600, lease=60.0).result()


def test_event_between_wait_and_suspend_is_seen(app_factory):
    app = _app(app_factory)
    app.send(durably.Event("start", {"id": "a"}))
    run = _claim(app)
    began = app.store.now().result()
    app.send([durably.Event("reply", {"id": "b"}), durably.Event("reply", {"id": "a", "n": 1})])  # before the wait is stored
    _suspend(app, run, began)
    stored = get_run(app, run.id)
    step = next(s for s in stored["steps"] if s["step_id"] == "reply")
    assert step["status"] == "completed" and step["output"]["data"] == {"id": "a", "n": 1}
    assert stored["available_at"] <= app.store.now().result()


def test_event_before_the_wait_began_is_not_seen(app_factory):
    app = _app(app_factory)
    app.send(durably.Event("start", {"id": "a"}))
    run = _claim(app)
    app.send(durably.Event("reply", {"id": "a"}))
    time.sleep(0.01)  # the store clock must move past the event's arrival: that is the case under test
    _suspend(app, run, app.store.now().result())
    stored = get_run(app, run.id)
    assert next(s for s in stored["steps"] if s["step_id"] == "reply")["status"] == "waiting"


def test_explicit_ids_do_not_collide_with_repeated_ids():
    app = durably.App("ids")

    @app.function(id="ids", trigger=durably.on_event("ids"))
    async def ids(ctx):
        await ctx.step.run("item:1", lambda: "explicit")
        for i in range(3):
            await ctx.step.run("item", lambda i=i: i)
        return "ok"

    with TestEnv(app) as env:
        run = env.run("ids")
    assert run.status == "completed"
    assert run.steps["item:1"]["output"] == "explicit"
    assert [run.steps[k]["output"] for k in ("item", "item:2", "item:3")] == [0, 1, 2]
