"""app.result / app.result_async: wait for a run's end on the store's wake-ups, on both stores."""

from __future__ import annotations

import asyncio
import pytest

import durably
import durably.app as app_module
from durably.errors import InvalidInput, NotFound
from tests.helpers import make_app, running_worker, wait_for
from tests.integration.support import FAST


@pytest.fixture
def no_recheck(monkeypatch):
    """Only wake-ups can end a wait: the safety-net re-read comes after a minute."""
    monkeypatch.setattr(app_module, "RESULT_RECHECK_SECONDS", 60.0)


def result_app(store_url: str) -> durably.App:
    app = make_app(store_url, "results", env="test")

    @app.function(id="double", trigger=durably.on_event("r.double"))
    async def double(ctx):
        await ctx.step.sleep("pause", "200ms")  # ends after the waiter has started waiting
        return await ctx.step.run("twice", lambda: ctx.event.data["n"] * 2)

    @app.function(id="broken", trigger=durably.on_event("r.broken"), retries=FAST)
    async def broken(ctx):
        raise ValueError("bad client id")

    @app.function(id="nap", trigger=durably.on_event("r.nap"))
    async def nap(ctx):
        await ctx.step.sleep("long", "1h")

    return app


def test_result_returns_output_error_and_reason(store_url, no_recheck):
    app = result_app(store_url)
    with running_worker(app):
        ok = app.send(durably.Event("r.double", {"n": 21})).runs[0]
        bad = app.send(durably.Event("r.broken")).runs[0]
        r = app.result(ok, timeout=20)
        assert r == durably.RunResult(run_id=ok, function_id="double", status="completed", output=42, error=None,
                                      terminal_reason="completed")
        assert r.ok
        f = app.result(bad, timeout=20)
        assert f.status == "failed" and not f.ok and f.terminal_reason == "retries_exhausted"
        assert f.error["name"] == "ValueError" and f.error["message"] == "bad client id"
    app.close()


def test_a_cancelled_run_and_a_timeout(store_url, no_recheck):
    app = result_app(store_url)
    with running_worker(app):
        rid = app.send(durably.Event("r.nap")).runs[0]
        wait_for(lambda: app.store.get_run(rid, with_steps=False).result()["status"] == "sleeping",
                 what="the run to sleep")
        with pytest.raises(TimeoutError, match=rid):
            app.result(rid, timeout=0.2)
        assert app.store.cancel_run(rid, "cancelled").result()
        r = app.result(rid, timeout=20)
        assert r.status == "cancelled" and r.output is None
    app.close()


def test_unknown_run_and_bad_timeout(store_url):
    app = result_app(store_url)
    with pytest.raises(NotFound, match="no run 'nope'"):
        app.result("nope", timeout=1)
    for bad in (-1, "5", float("nan"), True):
        with pytest.raises(InvalidInput, match="timeout"):
            app.result("nope", timeout=bad)
    app.close()


def test_result_async_does_not_block_the_loop(store_url, no_recheck):
    app = result_app(store_url)

    async def main(rid: str) -> tuple[durably.RunResult, int]:
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        t = asyncio.ensure_future(ticker())
        try:
            return await app.result_async(rid, timeout=20), ticks
        finally:
            t.cancel()

    with running_worker(app):
        rid = app.send(durably.Event("r.double", {"n": 5})).runs[0]
        r, ticks = asyncio.run(main(rid))
    assert r.output == 10 and ticks >= 5  # the loop kept running through the ~200 ms wait
    app.close()
