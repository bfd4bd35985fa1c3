"""Fairness (DESIGN §2): claims take the oldest ready run of each key in turn, so a key with a
large backlog delays another key's run by at most one run per other active key; concurrency
limits and priorities still hold; functions without fairness are claimed as before."""

from __future__ import annotations

import durably
from durably.core.options import FunctionConfig


def _claim_order(app, functions: str, batch: int, total: int) -> list:
    """Claim (and finish) runs batch by batch until ``total`` were claimed; their claim order."""
    order = []
    while len(order) < total:
        runs, _next, _now = app.store.claim_runs("w", functions, batch, 60.0).result()
        assert runs, f"nothing claimable after {len(order)} of {total}"
        for r in runs:
            order.append(r)
            app.store.finish_run(r, status="completed", output="null", error=None, reason="completed").result()
    return order


def test_a_backlog_of_one_key_delays_other_keys_by_one_run_per_key(app_factory):
    app = app_factory()

    @app.function(id="f", trigger=durably.on_event("e"), tenant="event.data.t", fairness=durably.Fairness())
    async def f(ctx):
        return None

    app.register()
    app.send([durably.Event("e", {"t": "big"}) for _ in range(300)])
    small = [f"s{i}" for i in range(5)]
    app.send([durably.Event("e", {"t": t}) for t in small for _ in range(2)])  # sent after the backlog

    order = _claim_order(app, '["f"]', 4, 20)
    tenants = [r.tenant for r in order]
    # Round-robin across claims (batches of 4): the least recently served key first, each key's
    # oldest run first; a small key's run waits for at most one run of each other key.
    assert tenants[:12] == ["big", *small] * 2, tenants
    assert tenants[12:] == ["big"] * 8
    # Within a key, the oldest first.
    big = [r for r in order if r.tenant == "big"]
    assert [r.created_at for r in big] == sorted(r.created_at for r in big)


def test_fairness_by_a_cel_key_keeps_concurrency_limits_and_priority(app_factory):
    app = app_factory()

    @app.function(id="g", trigger=durably.on_event("e"), fairness=durably.Fairness(key="event.data.k"),
                  concurrency=durably.Concurrency(limit=1, key="event.data.k"),
                  priority=durably.Priority(run="event.data.p"))
    async def g(ctx):
        return None

    app.register()
    app.send([durably.Event("e", {"k": "a", "p": 0}) for _ in range(20)])
    app.send([durably.Event("e", {"k": "b", "p": 0}), durably.Event("e", {"k": "b", "p": 300})])
    runs, _n, _t = app.store.claim_runs("w", '["g"]', 8, 60.0).result()
    # One per key (limit 1 per key), b's high-priority run ahead of its older one.
    assert sorted(r.event["data"]["k"] for r in runs) == ["a", "b"]
    b = next(r for r in runs if r.event["data"]["k"] == "b")
    assert b.event["data"]["p"] == 300
    again, _n, _t = app.store.claim_runs("w2", '["g"]', 8, 60.0).result()
    assert again == []  # both keys are at their limit


def test_fair_and_plain_functions_share_a_worker(app_factory):
    app = app_factory()

    @app.function(id="fair", trigger=durably.on_event("a"), fairness=durably.Fairness(key="event.data.k"))
    async def fair(ctx):
        return None

    @app.function(id="plain", trigger=durably.on_event("b"))
    async def plain(ctx):
        return None

    app.register()
    app.send([durably.Event("a", {"k": "x"}) for _ in range(10)])
    app.send([durably.Event("b", {}) for _ in range(10)])
    order = _claim_order(app, '["fair", "plain"]', 4, 20)
    assert sorted(r.function_id for r in order[:8]) == ["fair"] * 4 + ["plain"] * 4  # neither starves the other


def test_a_long_key_is_stored_by_its_digest_and_the_option_round_trips(app_factory):
    app = app_factory()

    @app.function(id="h", trigger=durably.on_event("e"), fairness=durably.Fairness(key="event.data.k"))
    async def h(ctx):
        return "done"

    app.register()
    res = app.send(durably.Event("e", {"k": "x" * 5000}))
    (run,) = _claim_order(app, '["h"]', 4, 1)
    assert run.id == res.runs[0]
    cfg = FunctionConfig.from_json(app.functions["h"].config())
    assert cfg.fairness == durably.Fairness(key="event.data.k")
    assert "fair share per event.data.k" in cfg.flow_control()


def test_a_paused_fair_function_is_not_claimed_and_its_next_run_time_is_known(app_factory):
    import asyncio
    import time

    from durably import admin
    from durably.core.records import StepWrite

    app = app_factory()

    @app.function(id="p", trigger=durably.on_event("e"), fairness=durably.Fairness(key="event.data.k"))
    async def p(ctx):
        return None

    app.register()
    app.send([durably.Event("e", {"k": k}) for k in "ab"])
    (first,), _n, _t = app.store.claim_runs("w", '["p"]', 1, 60.0).result()
    wake = time.time() + 3600
    app.store.suspend_run(first, steps=[StepWrite("nap", "sleep", "sleeping", 0, 0, wake_at=wake)], waits=[],
                          children=[], status="sleeping", available_at=wake, lease=60.0).result()
    asyncio.run(admin.pause(app.store, "p"))
    runs, next_at, _now = app.store.claim_runs("w", '["p"]', 4, 60.0).result()
    assert runs == [] and next_at is None  # paused: nothing claimable, nothing to wake for
    asyncio.run(admin.resume(app.store, "p"))
    runs, next_at, _now = app.store.claim_runs("w", '["p"]', 4, 60.0).result()
    assert [r.event["data"]["k"] for r in runs] == ["b"]
    assert next_at is not None and abs(next_at - wake) < 1  # the sleeping fair run's wake-up
