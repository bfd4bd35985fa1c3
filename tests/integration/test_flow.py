"""Flow control against the real store: throttle, rate limit, debounce, batch, priority,
idempotency, singleton, cancel_on, timeouts, and key expressions that fail."""

from __future__ import annotations

import threading
import time

import pytest

import durably
from durably.errors import ExpressionError
from tests.helpers import get_run, running_worker, runs_of, wait_for, wait_run


def _skips(app, function_id):
    return app.store.list_skips(function_id=function_id).result()


def test_throttle_spreads_starts(app_factory):
    app = app_factory()
    starts = []

    @app.function(id="thr", trigger=durably.on_event("thr"), throttle=durably.Throttle(limit=5, period="1s"))
    async def thr(ctx):
        starts.append(time.time())

    app.send([durably.Event("thr", {"i": i}) for i in range(20)])
    with running_worker(app, concurrency=8):
        wait_for(lambda: len(starts) == 20, 30, what="20 throttled runs")
    runs = sorted(r["started_at"] for r in runs_of(app, function_id="thr"))
    gaps = [b - a for a, b in zip(runs, runs[1:])]
    assert len(runs) == 20
    assert min(gaps) >= 0.2 - 0.005, gaps  # store clock: starts at least 1/5 s apart


def test_rate_limit_drops_and_records_skips(app_factory):
    app = app_factory()

    @app.function(id="rl", trigger=durably.on_event("rl"), rate_limit=durably.RateLimit(limit=5, period="10s"))
    async def rl(ctx):
        return 1

    res = app.send([durably.Event("rl", {"i": i}) for i in range(20)])
    assert len(res.runs) == 5
    assert len(runs_of(app, function_id="rl")) == 5
    skips = _skips(app, "rl")
    assert len(skips) == 15 and {s["reason"] for s in skips} == {"rate_limited"}


def test_rate_limit_per_key(app_factory):
    app = app_factory()

    @app.function(id="rlk", trigger=durably.on_event("rlk"),
                  rate_limit=durably.RateLimit(limit=1, period="1m", key="event.data.k"))
    async def rlk(ctx):
        return 1

    res = app.send([durably.Event("rlk", {"k": k}) for k in ("a", "a", "b", "b", "c")])
    assert len(res.runs) == 3


def test_debounce_runs_once_per_key_with_last_event(app_factory):
    app = app_factory()
    seen = []

    @app.function(id="deb", trigger=durably.on_event("deb"), debounce=durably.Debounce(period="1s", key="event.data.k"))
    async def deb(ctx):
        seen.append((ctx.event.data["k"], ctx.event.data["i"]))

    with running_worker(app):
        for i in range(10):
            app.send(durably.Event("deb", {"k": "a", "i": i}))
            if i < 3:
                app.send(durably.Event("deb", {"k": "b", "i": i}))
            time.sleep(0.05)  # paces the burst (10 events over 0.5 s); not used to synchronize
        wait_for(lambda: len(seen) == 2, 10, what="two debounced runs")
    assert sorted(seen) == [("a", 9), ("b", 2)]
    assert len(runs_of(app, function_id="deb")) == 2


def test_debounce_timeout_caps_delay(app_factory):
    app = app_factory()
    started = []

    @app.function(id="debt", trigger=durably.on_event("debt"),
                  debounce=durably.Debounce(period="600ms", timeout="1500ms"))
    async def debt(ctx):
        started.append((time.time(), ctx.event.data["i"]))

    stop = threading.Event()
    first = time.time()

    def stream():
        i = 0
        while not stop.is_set():
            app.send(durably.Event("debt", {"i": i}))
            i += 1
            stop.wait(0.2)  # a continuous stream: never a 600 ms gap

    with running_worker(app):
        t = threading.Thread(target=stream)
        t.start()
        try:
            wait_for(lambda: started, 10, what="a debounced run despite the stream")
        finally:
            stop.set()
            t.join()
    assert started[0][0] - first < 1.5 + 1.0  # started by the timeout (plus claim slack), not after the stream


def test_batch_sizes(app_factory):
    app = app_factory()
    sizes = []

    @app.function(id="bat", trigger=durably.on_event("bat"), batch=durably.Batch(max_size=10, timeout="1s"))
    async def bat(ctx):
        sizes.append(len(ctx.events))
        return [e.data["i"] for e in ctx.events]

    with running_worker(app):
        app.send([durably.Event("bat", {"i": i}) for i in range(25)])
        wait_for(lambda: sum(sizes) == 25, 10, what="25 batched events")
    assert sorted(sizes) == [5, 10, 10]
    outputs = sorted(i for r in runs_of(app, function_id="bat") for i in r["output"])
    assert outputs == list(range(25))


def test_priority_orders_the_queue(app_factory):
    app = app_factory()
    order = []

    @app.function(id="pri", trigger=durably.on_event("pri"), priority=durably.Priority(run="event.data.p"),
                  concurrency=1)
    async def pri(ctx):
        order.append(ctx.event.data["name"])

    app.send([durably.Event("pri", {"name": "low", "p": -60}), durably.Event("pri", {"name": "mid", "p": 0}),
              durably.Event("pri", {"name": "high", "p": 120}), durably.Event("pri", {"name": "clamped", "p": 9999})])
    with running_worker(app, concurrency=1):
        wait_for(lambda: len(order) == 4, 10, what="4 runs")
    assert order == ["clamped", "high", "mid", "low"]


def test_idempotency_one_run_per_key(app_factory):
    app = app_factory()

    @app.function(id="idem", trigger=durably.on_event("idem"),
                  idempotency="event.data.clientId + ':' + string(int(event.ts / 60000))")
    async def idem(ctx):
        return ctx.event.data["clientId"]

    ts = int(time.time() // 60 * 60 * 1000) + 1000  # all deliveries inside one minute
    events = [durably.Event("idem", {"clientId": f"c{i % 3}"}, ts=ts + i) for i in range(100)]
    res = app.send(events[:50])
    res2 = app.send(events[50:])
    assert len(res.runs) + len(res2.runs) == 3
    assert len(runs_of(app, function_id="idem")) == 3
    assert len(_skips(app, "idem")) == 97


def test_singleton_skip(app_factory):
    app = app_factory()
    release = threading.Event()

    @app.function(id="one", trigger=durably.on_event("one"), singleton=durably.Singleton(mode="skip"))
    def one(ctx):
        release.wait(10)

    with running_worker(app):
        first = app.send(durably.Event("one")).runs[0]
        wait_run(app, first, ("running",))
        second = app.send(durably.Event("one"))
        assert second.runs == [] and second.skipped[0]["reason"].startswith("singleton")
        release.set()
        wait_run(app, first)
        third = app.send(durably.Event("one"))  # the key is free again once the run ended
        assert len(third.runs) == 1
        wait_run(app, third.runs[0])


def test_singleton_cancel_replaces_the_running_run(app_factory):
    app = app_factory()

    @app.function(id="latest", trigger=durably.on_event("latest"),
                  singleton=durably.Singleton(key="event.data.k", mode="cancel"))
    async def latest(ctx):
        await ctx.step.sleep("wait", "30s")

    with running_worker(app):
        first = app.send(durably.Event("latest", {"k": "x"})).runs[0]
        wait_run(app, first, ("sleeping",))
        second = app.send(durably.Event("latest", {"k": "x"})).runs[0]
        assert wait_run(app, first, ("cancelled",))["terminal_reason"].startswith("singleton")
        other = app.send(durably.Event("latest", {"k": "y"})).runs[0]
        wait_run(app, second, ("sleeping",))
        wait_run(app, other, ("sleeping",))


def test_cancel_on_with_match(app_factory):
    app = app_factory()

    @app.function(id="remind", trigger=durably.on_event("signup"),
                  cancel_on=[durably.CancelOn(event="deleted", match="data.userId")])
    async def remind(ctx):
        await ctx.step.sleep("later", "1h")

    with running_worker(app):
        a = app.send(durably.Event("signup", {"userId": "a"})).runs[0]
        b = app.send(durably.Event("signup", {"userId": "b"})).runs[0]
        wait_run(app, a, ("sleeping",))
        wait_run(app, b, ("sleeping",))
        app.send(durably.Event("deleted", {"userId": "b"}))
        assert wait_run(app, b, ("cancelled",))["terminal_reason"].startswith("cancelled by event")
    assert get_run(app, a)["status"] == "sleeping"


def test_start_timeout_cancels_unstarted_run(app_factory):
    app = app_factory()

    @app.function(id="late", trigger=durably.on_event("late"), timeouts=durably.Timeouts(start="200ms"))
    async def late(ctx):
        return 1

    rid = app.send(durably.Event("late")).runs[0]
    time.sleep(0.3)  # let the deadline pass with no worker running: that is the condition under test
    with running_worker(app):
        run = wait_run(app, rid)
    assert run["status"] == "cancelled" and run["terminal_reason"] == "start_timeout"


def test_finish_timeout_fails_run(app_factory):
    app = app_factory()
    failures = []

    def on_fail(ctx):
        failures.append(ctx.event.data["reason"])

    @app.function(id="slow", trigger=durably.on_event("slow"), timeouts=durably.Timeouts(finish="500ms"),
                  on_failure=on_fail)
    async def slow(ctx):
        await ctx.step.sleep("long", "10s")

    with running_worker(app):
        rid = app.send(durably.Event("slow")).runs[0]
        run = wait_run(app, rid, timeout=10)
        wait_for(lambda: failures, 10, what="on_failure")
    assert run["status"] == "failed" and run["terminal_reason"] == "timeout"
    assert failures == ["timeout"]


def test_finish_timeout_while_running(app_factory):
    app = app_factory()
    import asyncio

    @app.function(id="busy", trigger=durably.on_event("busy"), timeouts=durably.Timeouts(finish="300ms"), retries=0)
    async def busy(ctx):
        await ctx.step.run("forever", asyncio.sleep, 30)

    with running_worker(app):
        rid = app.send(durably.Event("busy")).runs[0]
        run = wait_run(app, rid, timeout=10)
    assert run["status"] == "failed" and run["terminal_reason"] == "timeout"


def test_invalid_cel_fails_at_decoration(app_factory):
    app = app_factory()
    with pytest.raises(ExpressionError, match="Concurrency key"):
        app.function(id="bad", trigger=durably.on_event("x"),
                     concurrency=[durably.Concurrency(limit=1, key="event.data.(")])(lambda ctx: None)
    with pytest.raises(ExpressionError, match="idempotency"):
        app.function(id="bad2", trigger=durably.on_event("x"), idempotency="event +* 1")(lambda ctx: None)


def test_key_expression_failing_on_event_fails_that_run_only(app_factory):
    app = app_factory()

    @app.function(id="keyed", trigger=durably.on_event("keyed"),
                  concurrency=[durably.Concurrency(limit=1, key="event.data.clientId")])
    async def keyed(ctx):
        return ctx.event.data["clientId"]

    with running_worker(app):
        res = app.send([durably.Event("keyed", {"nope": 1}), durably.Event("keyed", {"clientId": "c1"})])
        bad, good = res.runs
        assert wait_run(app, good)["status"] == "completed"
    bad_run = get_run(app, bad)
    assert bad_run["status"] == "failed" and bad_run["terminal_reason"] == "expression_error"
    assert "clientId" in bad_run["error"]["message"]


def test_concurrency_key_serializes_in_process(app_factory):
    app = app_factory()
    active: dict[str, int] = {}
    peak: dict[str, int] = {}
    lock = threading.Lock()
    import asyncio

    @app.function(id="lim", trigger=durably.on_event("lim"),
                  concurrency=[durably.Concurrency(limit=1, key="event.data.k"), durably.Concurrency(limit=3)])
    async def lim(ctx):
        k = ctx.event.data["k"]
        with lock:
            active[k] = active.get(k, 0) + 1
            peak[k] = max(peak.get(k, 0), active[k])
            peak["*"] = max(peak.get("*", 0), sum(active.values()))
        await asyncio.sleep(0.02)
        with lock:
            active[k] -= 1

    app.send([durably.Event("lim", {"k": f"k{i % 5}"}) for i in range(40)])
    with running_worker(app, concurrency=16):
        wait_for(lambda: len([r for r in runs_of(app, function_id="lim") if r["status"] == "completed"]) == 40, 30,
                 what="40 runs")
    assert all(v == 1 for k, v in peak.items() if k != "*")
    assert peak["*"] <= 3


def test_blocked_key_does_not_starve_other_keys(app_factory):
    """200 queued runs of one key (limit 1) ahead of another key's run: the other key still runs."""
    app = app_factory()
    release = threading.Event()

    @app.function(id="hog", trigger=durably.on_event("hog"), concurrency=[durably.Concurrency(limit=1, key="event.data.k")])
    def hog(ctx):
        if ctx.event.data["k"] == "busy":
            release.wait(20)
        return ctx.event.data["k"]

    app.send([durably.Event("hog", {"k": "busy"}) for _ in range(200)])
    late = app.send(durably.Event("hog", {"k": "other"})).runs[0]
    try:
        with running_worker(app, concurrency=4):
            assert wait_run(app, late)["status"] == "completed"
            release.set()
    finally:
        release.set()


def test_env_scoped_concurrency_is_shared_across_functions(app_factory):
    app = app_factory()
    active, peak = [0], [0]
    lock = threading.Lock()
    import asyncio

    async def body(ctx):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        await asyncio.sleep(0.02)
        with lock:
            active[0] -= 1

    shared = durably.Concurrency(limit=2, key="'openai'", scope="env")
    app.function(id="a", trigger=durably.on_event("ab"), concurrency=[shared])(body)
    app.function(id="b", trigger=durably.on_event("ab"), concurrency=[shared])(body)
    app.send([durably.Event("ab") for _ in range(10)])
    with running_worker(app, concurrency=10):
        wait_for(lambda: sum(r["status"] == "completed" for r in runs_of(app)) == 20, 30, what="20 runs")
    assert peak[0] == 2
