"""Durable execution: memoized steps, retries, errors, replay, the sync API."""

from __future__ import annotations

import asyncio
import logging
import time

import pydantic
import pytest

import durably
from durably.core.events import FUNCTION_FAILED
from tests.helpers import get_run, running_worker, wait_run
from tests.integration.support import FAST, steps_of


class Transient(Exception):
    pass


def test_three_steps_second_fails_twice_then_completes(app_factory):
    """Done-when 1: step 1 runs once, step 2 three times, step 3 once."""
    app = app_factory()
    calls: list[str] = []

    def flaky() -> int:
        calls.append("two")
        if calls.count("two") <= 2:
            raise Transient(f"transient failure {calls.count('two')}")
        return 2

    @app.function(id="three-steps", trigger=durably.on_event("go"), retries=FAST)
    async def three(ctx: durably.Context) -> dict:
        a = await ctx.step.run("one", lambda: calls.append("one") or 1)
        b = await ctx.step.run("two", flaky)
        c = await ctx.step.run("three", lambda: calls.append("three") or 3)
        return {"sum": a + b + c}

    with running_worker(app):
        res = app.send(durably.Event("go", {"x": 1}))
        assert len(res.runs) == 1
        run = wait_run(app, res.runs[0])
    assert run["status"] == "completed" and run["terminal_reason"] == "completed"
    assert run["output"] == {"sum": 6}
    assert calls.count("one") == 1 and calls.count("two") == 3 and calls.count("three") == 1
    steps = steps_of(app, run["id"])
    assert [steps[s]["attempts"] for s in ("one", "two", "three")] == [1, 3, 1]
    assert all(s["status"] == "completed" for s in steps.values())
    errors = [a["error"] for a in steps["two"]["log"] if a["error"]]
    assert [e["message"] for e in errors] == ["transient failure 1", "transient failure 2"]
    assert errors[0]["name"] == "Transient"
    assert len(steps["two"]["log"]) == 3


def test_step_error_can_be_caught(app_factory):
    app = app_factory()
    calls = []

    def always_fails():
        calls.append(1)
        raise Transient("nope")

    @app.function(id="catcher", trigger=durably.on_event("go"), retries=FAST)
    async def catcher(ctx):
        try:
            await ctx.step.run("doomed", always_fails)
        except durably.StepError as exc:
            fallback = await ctx.step.run("fallback", lambda: "plan b")
            return {"step": exc.step_id, "error": exc.error["message"], "fallback": fallback}
        return {"unexpected": True}

    with running_worker(app):
        run = wait_run(app, app.send(durably.Event("go")).runs[0])
    assert run["status"] == "completed"
    assert run["output"] == {"step": "doomed", "error": "nope", "fallback": "plan b"}
    assert len(calls) == FAST.attempts
    steps = steps_of(app, run["id"])
    assert steps["doomed"]["status"] == "failed" and steps["doomed"]["attempts"] == FAST.attempts


def test_retries_exhausted_fails_the_run_and_records_each_attempt(app_factory):
    app = app_factory()

    def broken():
        raise Transient("still broken")

    @app.function(id="exhaust", trigger=durably.on_event("go"), retries=FAST)
    async def exhaust(ctx):
        await ctx.step.run("ok", lambda: 1)
        await ctx.step.run("broken", broken)
        return "never"

    with running_worker(app):
        run = wait_run(app, app.send(durably.Event("go")).runs[0])
    assert run["status"] == "failed" and run["terminal_reason"] == "retries_exhausted"
    assert run["error"]["name"] == "StepError" and "broken" in run["error"]["message"]
    assert "still broken" in run["error"]["message"]
    step = steps_of(app, run["id"])["broken"]
    assert step["status"] == "failed" and step["attempts"] == 3
    assert [a["attempt"] for a in step["log"]] == [1, 2, 3]
    assert all(a["error"]["message"] == "still broken" for a in step["log"])
    assert step["error"]["name"] == "Transient"


def test_retry_after_error_sets_the_delay(app_factory):
    app = app_factory()
    seen: list[float] = []

    def later():
        seen.append(time.time())
        if len(seen) == 1:
            raise durably.RetryAfterError("rate limited", "400ms")
        return "ok"

    # The policy alone would wait a minute: the run finishing quickly proves RetryAfterError's delay won.
    policy = durably.Retry(attempts=3, initial="60s", jitter=False)

    @app.function(id="retry-after", trigger=durably.on_event("go"), retries=policy)
    async def fn(ctx):
        return await ctx.step.run("later", later)

    with running_worker(app):
        run = wait_run(app, app.send(durably.Event("go")).runs[0], timeout=10)
    assert run["status"] == "completed" and run["output"] == "ok"
    assert seen[1] - seen[0] >= 0.4
    log = steps_of(app, run["id"])["later"]["log"]
    assert log[0]["error"]["name"] == "RetryAfterError"
    assert log[1]["started_at"] - log[0]["finished_at"] >= 0.39


def test_body_failure_is_retried_per_run_attempt(app_factory):
    app = app_factory()
    attempts: list[int] = []

    @app.function(id="body", trigger=durably.on_event("go"), retries=FAST)
    async def body(ctx):
        await ctx.step.run("once", lambda: "memo")
        attempts.append(ctx.attempt)
        if len(attempts) < 3:
            raise Transient("body failed")
        return len(attempts)

    with running_worker(app):
        run = wait_run(app, app.send(durably.Event("go")).runs[0])
    assert run["status"] == "completed" and run["output"] == 3
    assert attempts == [0, 1, 2]
    assert steps_of(app, run["id"])["once"]["attempts"] == 1


def test_step_retries_do_not_use_up_the_body_retries(app_factory):
    """Retries are per step, and per run attempt for code outside steps: counted apart."""
    app = app_factory()
    step_calls: list[int] = []
    body_failures: list[int] = []

    def flaky():
        step_calls.append(1)
        if len(step_calls) < 3:
            raise Transient("step hiccup")
        return "ok"

    @app.function(id="mixed", trigger=durably.on_event("go"), retries=FAST)
    async def mixed(ctx):
        await ctx.step.run("flaky", flaky)  # uses all 3 attempts of the step
        if not body_failures:
            body_failures.append(1)
            raise Transient("body hiccup")  # the body's first failure: it must be retried
        return "done"

    with running_worker(app):
        run = wait_run(app, app.send(durably.Event("go")).runs[0])
    assert run["status"] == "completed", run["error"]
    assert run["output"] == "done" and len(step_calls) == 3


def test_non_retriable_error_fails_at_once_and_runs_on_failure(app_factory):
    """Done-when 6 (second half)."""
    app = app_factory()
    calls: list[str] = []
    failures: list[dict] = []

    def handler(ctx: durably.Context):
        failures.append(ctx.event.to_dict())
        return "handled"

    def bad():
        calls.append("bad")
        raise durably.NonRetriableError("card declined")

    @app.function(id="charge", trigger=durably.on_event("order"), retries=5, on_failure=handler)
    async def charge(ctx):
        await ctx.step.run("charge-card", bad)
        calls.append("after")

    with running_worker(app):
        res = app.send(durably.Event("order", {"orderId": "o1"}))
        run = wait_run(app, res.runs[0])
        assert run["status"] == "failed" and run["terminal_reason"] == "non_retriable"
        failed_runs = wait_for_runs(app, "charge-failure", 1)
        handler_run = wait_run(app, failed_runs[0]["id"])
    assert calls == ["bad"]
    assert "card declined" in run["error"]["message"]
    step = steps_of(app, run["id"])["charge-card"]
    assert step["status"] == "failed" and step["attempts"] == 1
    assert handler_run["status"] == "completed" and handler_run["output"] == "handled"
    assert len(failures) == 1
    fe = failures[0]
    assert fe["name"] == FUNCTION_FAILED
    assert fe["data"]["function_id"] == "charge" and fe["data"]["run_id"] == run["id"]
    assert fe["data"]["reason"] == "non_retriable"
    assert "card declined" in fe["data"]["error"]["message"]
    assert fe["data"]["event"]["data"] == {"orderId": "o1"}


def test_non_retriable_error_in_the_body(app_factory):
    app = app_factory()
    tries = []

    @app.function(id="body-nr", trigger=durably.on_event("go"), retries=5)
    def body(ctx):
        tries.append(1)
        raise durably.NonRetriableError("bad input")

    with running_worker(app):
        run = wait_run(app, app.send(durably.Event("go")).runs[0])
    assert run["status"] == "failed" and run["terminal_reason"] == "non_retriable"
    assert run["error"]["message"] == "bad input" and tries == [1]


def test_repeated_step_ids_in_a_loop_replay_in_order(app_factory):
    app = app_factory()
    executed: list[int] = []

    @app.function(id="loop", trigger=durably.on_event("go"))
    async def loop(ctx):
        out = []
        for i in range(3):
            out.append(await ctx.step.run("item", lambda i=i: executed.append(i) or i * 10))
            await ctx.step.sleep("pause", "50ms")  # every pause resumes from the memo
        return out

    with running_worker(app):
        run = wait_run(app, app.send(durably.Event("go")).runs[0])
    assert run["status"] == "completed" and run["output"] == [0, 10, 20]
    assert executed == [0, 1, 2]
    steps = get_run(app, run["id"])["steps"]
    assert [s["step_id"] for s in steps] == ["item", "pause", "item:1", "pause:1", "item:2", "pause:2"]
    assert [s["seq"] for s in steps] == sorted(s["seq"] for s in steps)


def test_parallel_steps_run_concurrently_and_return_in_order(app_factory):
    app = app_factory()
    calls: list[str] = []

    @app.function(id="par", trigger=durably.on_event("go"))
    async def par(ctx):
        arrived = {"n": 0}
        everyone = asyncio.Event()

        async def branch(name: str) -> str:
            calls.append(name)
            arrived["n"] += 1
            if arrived["n"] == 3:
                everyone.set()
            await asyncio.wait_for(everyone.wait(), 10)  # only returns if all three run at once
            return name.upper()

        results = await ctx.step.parallel(
            lambda: ctx.step.run("a", branch, "a"),
            lambda: ctx.step.run("b", branch, "b"),
            lambda: ctx.step.run("c", branch, "c"),
        )
        await ctx.step.sleep("pause", "50ms")
        again = await ctx.step.parallel([ctx.step.run("a2", lambda: "x"), ctx.step.run("b2", lambda: "y")])
        return results + again

    with running_worker(app):
        run = wait_run(app, app.send(durably.Event("go")).runs[0])
    assert run["status"] == "completed", run["error"]
    assert run["output"] == ["A", "B", "C", "x", "y"]
    assert sorted(calls) == ["a", "b", "c"]  # not run again on resume after the sleep


def test_sync_function_with_the_sync_step_api(app_factory):
    app = app_factory()
    calls: list[str] = []

    @app.function(id="sync-fn", trigger=durably.on_event("go"), retries=FAST)
    def sync_fn(ctx: durably.Context) -> dict:
        a = ctx.step.run("a", lambda: calls.append("a") or 1)
        ctx.step.sleep("nap", "100ms")
        both = ctx.step.parallel(lambda: ctx.step.run("p1", lambda: 2), lambda: ctx.step.run("p2", lambda: 3))
        ids = ctx.step.send_event("announce", durably.Event("sync.done", {"a": a}))
        got = ctx.step.wait_for_event("maybe", "never.sent", timeout="100ms")
        return {"a": a, "both": both, "ids": ids, "waited": got, "step_key": ctx.step_key}

    with running_worker(app):
        run = wait_run(app, app.send(durably.Event("go")).runs[0])
    assert run["status"] == "completed", run["error"]
    out = run["output"]
    assert out["a"] == 1 and out["both"] == [2, 3] and len(out["ids"]) == 1 and out["waited"] is None
    assert out["step_key"] is None  # outside a step
    assert calls == ["a"]
    assert [s["step_id"] for s in get_run(app, run["id"])["steps"]] == ["a", "nap", "p1", "p2", "announce", "maybe"]


def test_step_key_names_the_running_step(app_factory):
    app = app_factory()
    keys: list[str | None] = []

    @app.function(id="keys", trigger=durably.on_event("go"))
    async def fn(ctx):
        keys.append(ctx.step_key)
        await ctx.step.run("charge", lambda: keys.append(ctx.step_key))
        await ctx.step.run("charge", lambda: keys.append(ctx.step_key))

        async def inner():
            keys.append(ctx.step_key)

        await ctx.step.run("async-step", inner)
        keys.append(ctx.step_key)

    with running_worker(app):
        run = wait_run(app, app.send(durably.Event("go")).runs[0])
    rid = run["id"]
    assert keys == [None, f"{rid}:charge", f"{rid}:charge:1", f"{rid}:async-step", None]


def test_logger_is_silent_while_replaying(app_factory, caplog):
    app = app_factory()

    @app.function(id="logs", trigger=durably.on_event("go"))
    async def fn(ctx):
        ctx.logger.info("start")
        await ctx.step.run("a", lambda: 1)
        ctx.logger.info("after a")
        await ctx.step.sleep("nap", "50ms")
        ctx.logger.info("after nap")
        await ctx.step.sleep("nap", "50ms")
        ctx.logger.info("end")

    caplog.set_level(logging.INFO, logger="durably.run")
    with running_worker(app):
        run = wait_run(app, app.send(durably.Event("go")).runs[0])
    assert run["status"] == "completed"
    messages = [r.getMessage() for r in caplog.records if r.name == "durably.run.logs"]
    assert [m.split("] ", 1)[1] for m in messages] == ["start", "after a", "after nap", "end"]
    assert all(run["id"] in m for m in messages)


class Invoice(pydantic.BaseModel):
    number: str
    total: float


def test_pydantic_model_step_output(app_factory):
    app = app_factory()
    seen: list[object] = []

    def make_invoice() -> Invoice:
        return Invoice(number="INV-1", total=12.5)

    @app.function(id="models", trigger=durably.on_event("go"))
    async def fn(ctx):
        inv = await ctx.step.run("invoice", make_invoice)
        seen.append(inv)
        await ctx.step.sleep("nap", "50ms")  # resume: the model comes back from the memo
        return {"invoice": inv, "type": type(inv).__name__}

    with running_worker(app):
        run = wait_run(app, app.send(durably.Event("go")).runs[0])
    assert run["status"] == "completed", run["error"]
    assert run["output"] == {"invoice": {"number": "INV-1", "total": 12.5}, "type": "Invoice"}
    assert len(seen) == 2 and all(isinstance(s, Invoice) for s in seen)
    assert steps_of(app, run["id"])["invoice"]["output"] == {"number": "INV-1", "total": 12.5}


def wait_for_runs(app, function_id: str, n: int, timeout: float = 20.0) -> list[dict]:
    from tests.helpers import runs_of, wait_for

    return wait_for(lambda: (lambda rs: rs if len(rs) >= n else None)(runs_of(app, function_id=function_id)),
                    timeout, what=f"{n} run(s) of {function_id}")
