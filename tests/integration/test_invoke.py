"""ctx.step.invoke: a child run whose result (or failure) comes back to the parent."""

from __future__ import annotations

import durably
from tests.helpers import get_run, running_worker, runs_of, wait_run
from tests.integration.support import steps_of


def _apps(app):
    @app.function(id="child", trigger=durably.on_event("child.direct"), retries=0)
    async def child(ctx):
        if ctx.event.data.get("fail"):
            raise durably.NonRetriableError("child refused")
        if ctx.event.data.get("slow"):
            await ctx.step.sleep("slow", "1m")
        return {"doubled": ctx.event.data["n"] * 2}

    return child


def test_invoke_returns_the_child_result(app_factory):
    app = app_factory()
    child = _apps(app)

    @app.function(id="parent", trigger=durably.on_event("go"))
    async def parent(ctx):
        a = await ctx.step.invoke("by-object", child, {"n": 2})
        b = await ctx.step.invoke("by-id", "child", {"n": 5})
        return [a, b]

    with running_worker(app):
        rid = app.send(durably.Event("go")).runs[0]
        run = wait_run(app, rid)
    assert run["status"] == "completed", run["error"]
    assert run["output"] == [{"doubled": 4}, {"doubled": 10}]
    children = runs_of(app, function_id="child")
    assert len(children) == 2
    assert all(c["parent_run_id"] == rid and c["trigger"] == "invoke" for c in children)
    assert {c["parent_step_id"] for c in children} == {"by-object", "by-id"}
    steps = steps_of(app, rid)
    assert steps["by-id"]["kind"] == "invoke" and steps["by-id"]["output"] == {"doubled": 10}


def test_child_failure_raises_step_error_in_the_parent(app_factory):
    app = app_factory()
    child = _apps(app)

    @app.function(id="parent", trigger=durably.on_event("go"))
    async def parent(ctx):
        try:
            await ctx.step.invoke("call", child, {"n": 1, "fail": True})
        except durably.StepError as exc:
            return {"caught": exc.error["message"], "step": exc.step_id}
        return "no error"

    with running_worker(app):
        run = wait_run(app, app.send(durably.Event("go")).runs[0])
    assert run["status"] == "completed"
    assert run["output"] == {"caught": "child refused", "step": "call"}
    assert runs_of(app, function_id="child")[0]["terminal_reason"] == "non_retriable"


def test_invoking_an_unknown_function_is_a_clear_error(app_factory):
    app = app_factory()

    @app.function(id="parent", trigger=durably.on_event("go"))
    async def parent(ctx):
        await ctx.step.invoke("call", "no-such-function", {})

    with running_worker(app):
        run = wait_run(app, app.send(durably.Event("go")).runs[0])
    assert run["status"] == "failed" and run["terminal_reason"] == "non_retriable"
    assert "unknown function 'no-such-function'" in run["error"]["message"]
    assert steps_of(app, run["id"])["call"]["status"] == "failed"


def test_invoke_timeout(app_factory):
    app = app_factory()
    child = _apps(app)

    @app.function(id="parent", trigger=durably.on_event("go"))
    async def parent(ctx):
        try:
            await ctx.step.invoke("call", child, {"n": 1, "slow": True}, timeout="300ms")
        except durably.StepError as exc:
            return exc.error["name"]

    with running_worker(app):
        rid = app.send(durably.Event("go")).runs[0]
        run = wait_run(app, rid)
        kid = runs_of(app, function_id="child")[0]
    assert run["status"] == "completed" and run["output"] == "InvokeTimeout"
    step = steps_of(app, rid)["call"]
    assert step["status"] == "failed" and step["finished_at"] - step["started_at"] >= 0.3
    # The child ending later does not touch the parent's recorded outcome.
    assert app.store.cancel_run(kid["id"], "test").result() is True
    assert steps_of(app, rid)["call"]["status"] == "failed"
    assert get_run(app, rid)["status"] == "completed"


def test_sync_function_invokes(app_factory):
    app = app_factory()
    _apps(app)

    @app.function(id="parent", trigger=durably.on_event("go"))
    def parent(ctx):
        return ctx.step.invoke("call", "child", {"n": 21})

    with running_worker(app):
        run = wait_run(app, app.send(durably.Event("go")).runs[0])
    assert run["output"] == {"doubled": 42}
