"""Both execution paths replay a run by the same rules (``durably.engine.replay``).

The worker's executor and the cron endpoint's inline fallback each run the same function
here and must agree: on the ids of repeated and explicitly numbered steps, and on a step
that raises ``InvalidInput`` (failed at once, never retried, as the body is)."""

from __future__ import annotations

import asyncio

import pytest

import durably
from durably.engine.inline import run_inline
from durably.engine.replay import Memo, StepIds, retry_delay
from durably.errors import InvalidInput, NonRetriableError, RetryAfterError, StepMismatch
from durably.functions import Retry
from durably.testing import TestEnv


def _app(seen: list[int], calls: list[str]) -> durably.App:
    app = durably.App("replay-paths")

    @app.function(id="ids", trigger=durably.on_event("replay.ids"))
    async def ids(ctx):
        async def mark():
            seen.append(ctx.attempt)
            return ctx.step_key[len(ctx.run_id) + 1:]  # the step's id, as this path numbered it

        return [await ctx.step.run("item:1", mark), await ctx.step.run("item", mark),
                await ctx.step.run("item", mark)]

    @app.function(id="bad-input", trigger=durably.on_event("replay.bad"), retries=3)
    async def bad_input(ctx):
        def refuse():
            calls.append("refuse")
            raise InvalidInput("not an event a step can send")

        await ctx.step.run("refuse", refuse)

    return app


def _inline(app: durably.App, name: str) -> dict:
    async def no_store(events):
        raise AssertionError("nothing is sent here")

    (out,) = asyncio.run(run_inline(app.functions, no_store, {"name": name, "data": {}, "id": "e1", "ts": 0}))
    return out


def test_explicit_step_ids_are_skipped_by_numbering_on_both_paths():
    seen: list = []
    app = _app(seen, [])
    with TestEnv(app) as env:
        run = env.run("ids")
    assert run.status == "completed" and run.output == ["item:1", "item", "item:2"]
    assert sorted(run.steps) == ["item", "item:1", "item:2"]
    inline = _inline(app, "replay.ids")
    assert inline["status"] == "completed" and inline["output"] == ["item:1", "item", "item:2"]
    assert seen == [0] * 6  # ctx.attempt inside a step: 0 on a first try, on both paths


def test_a_step_raising_invalid_input_fails_at_once_on_both_paths():
    calls: list[str] = []
    app = _app([], calls)
    with TestEnv(app) as env:
        run = env.run("bad-input")
    assert run.status == "failed" and run.steps["refuse"]["attempts"] == 1
    assert calls == ["refuse"]  # not retried, though the function allows 3 retries
    inline = _inline(app, "replay.bad")
    assert inline["status"] == "failed" and "not an event a step can send" in inline["error"]["message"]
    assert calls == ["refuse", "refuse"]


# --- the rules themselves (pure) -------------------------------------------------------------


def test_step_ids_number_repeats_and_skip_explicit_ones():
    ids = StepIds()
    assert [ids.next(i) for i in ("a", "a:1", "a", "a", "b")] == ["a", "a:1", "a:2", "a:3", "b"]
    ids.reset()
    assert ids.next("a") == "a"
    with pytest.raises(InvalidInput):
        ids.next("")


def test_memo_checks_the_kind_and_counts_replay():
    memo = Memo([{"step_id": "a", "kind": "run"}, {"step_id": "b", "kind": "sleep"}])
    assert memo.replaying and memo.lookup("a", "run") is not None
    with pytest.raises(StepMismatch, match="'zz' is not in the run's history.*'b'"):
        memo.lookup("zz", "run")  # a new step while "b", recorded later, is still ahead
    assert memo.lookup("zz", "run", strict=False) is None  # parallel branches: in no fixed order
    assert memo.lookup("a", "run") is not None and memo.replaying  # "b" not reached yet; "a" counted once
    with pytest.raises(StepMismatch):
        memo.lookup("b", "run")


def test_retry_delay():
    retry = Retry(attempts=3, initial=1.0, max=600.0, factor=2.0, jitter=False)
    assert retry_delay(RuntimeError("x"), 1, retry) == retry.delay(1)
    assert retry_delay(RuntimeError("x"), 3, retry) is None  # attempts spent
    assert retry_delay(NonRetriableError("x"), 1, retry) is None
    assert retry_delay(InvalidInput("x"), 1, retry) is None
    assert retry_delay(RetryAfterError("x", "7s"), 1, retry) == 7.0
