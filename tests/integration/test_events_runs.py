"""Events: dedupe by id, fan-out, filters, send_event exactly once, on_failure."""

from __future__ import annotations

import durably
from durably.errors import InvalidInput
from tests.helpers import get_run, running_worker, runs_of, wait_for, wait_run
from tests.integration.support import steps_of, wait_status


def test_same_event_id_twice_yields_one_run(app_factory):
    """Done-when 6 (first half)."""
    app = app_factory()
    calls = []

    @app.function(id="once", trigger=durably.on_event("pay"))
    async def once(ctx):
        await ctx.step.run("pay", lambda: calls.append(ctx.event.id))

    first = app.send(durably.Event("pay", {"amount": 5}, id="payment-1"))
    second = app.send(durably.Event("pay", {"amount": 5}, id="payment-1"))
    assert len(first.runs) == 1 and first.duplicates == []
    assert second.runs == [] and second.duplicates == ["payment-1"] and list(second) == ["payment-1"]
    # A list holding the same id twice, and the id again in a later list: still one run.
    third = app.send([durably.Event("pay", id="payment-2"), durably.Event("pay", id="payment-2"),
                      durably.Event("pay", id="payment-1")])
    assert len(third.runs) == 1 and third.duplicates == ["payment-2", "payment-1"]
    with running_worker(app):
        for rid in first.runs + third.runs:
            wait_run(app, rid)
    assert sorted(calls) == ["payment-1", "payment-2"]
    assert len(runs_of(app, function_id="once")) == 2


def test_one_event_fans_out_to_every_function_it_triggers(app_factory):
    app = app_factory()
    seen: list[str] = []

    @app.function(id="email", trigger=durably.on_event("user.signup"))
    async def email(ctx):
        seen.append("email:" + ctx.event.data["user"])

    @app.function(id="crm", trigger=[durably.on_event("user.signup"), durably.on_event("user.updated")])
    def crm(ctx):
        seen.append("crm:" + ctx.event.data["user"])

    @app.function(id="test-only", trigger=durably.on_event("user.signup", if_="event.data.user == 'test'"))
    async def test_only(ctx):
        seen.append("test-only")

    with running_worker(app):
        res = app.send(durably.Event("user.signup", {"user": "ann"}))
        assert len(res.runs) == 2
        for rid in res.runs:
            assert wait_run(app, rid)["status"] == "completed"
        event = app.store.get_event(res[0]).result()
    assert sorted(seen) == ["crm:ann", "email:ann"]
    assert sorted(r["function_id"] for r in event["runs"]) == ["crm", "email"]
    assert sorted(r["id"] for r in event["runs"]) == sorted(res.runs)


def test_an_event_nobody_listens_to_is_recorded(app_factory):
    app = app_factory()
    res = app.send(durably.Event("nobody.cares", {"k": 1}, id="lonely"))
    assert res.runs == [] and res.ids == ["lonely"]
    stored = app.store.get_event("lonely").result()
    assert stored["event"]["data"] == {"k": 1} and stored["runs"] == []


def test_send_event_step_sends_exactly_once(app_factory):
    app = app_factory()
    received: list[str] = []

    @app.function(id="producer", trigger=durably.on_event("start"))
    async def producer(ctx):
        ids = await ctx.step.send_event("notify", [durably.Event("child", {"n": 1}), durably.Event("child", {"n": 2})])
        await ctx.step.sleep("nap", "50ms")  # the resume replays send_event from the memo
        again = await ctx.step.send_event("notify", durably.Event("child", {"n": 3}))  # a second step: notify:1
        return {"ids": ids, "again": again}

    @app.function(id="consumer", trigger=durably.on_event("child"))
    async def consumer(ctx):
        received.append(ctx.event.id)
        return ctx.event.data["n"]

    with running_worker(app):
        rid = app.send(durably.Event("start")).runs[0]
        run = wait_run(app, rid)
        consumers = wait_for(lambda: (lambda rs: rs if len(rs) == 3 and all(r["status"] == "completed" for r in rs)
                                      else None)(runs_of(app, function_id="consumer")), what="three consumer runs")
    assert run["status"] == "completed"
    ids = run["output"]["ids"] + run["output"]["again"]
    assert len(ids) == 3 and sorted(received) == sorted(ids)
    assert sorted(r["event_id"] for r in consumers) == sorted(ids)
    assert sorted(r["output"] for r in consumers) == [1, 2, 3]
    steps = steps_of(app, rid)
    assert steps["notify"]["output"] == run["output"]["ids"] and steps["notify:1"]["output"] == run["output"]["again"]


def test_send_async_and_list_in_one_call(app_factory):
    import asyncio

    app = app_factory()

    @app.function(id="f", trigger=durably.on_event("a"))
    async def f(ctx):
        return ctx.event.data["i"]

    res = asyncio.run(app.send_async([durably.Event("a", {"i": i}) for i in range(5)]))
    assert len(res) == 5 and len(res.runs) == 5
    with running_worker(app):
        outs = sorted(wait_run(app, rid)["output"] for rid in res.runs)
    assert outs == [0, 1, 2, 3, 4]


def test_trigger_filter_error_is_recorded_as_skipped(app_factory):
    app = app_factory()

    @app.function(id="picky", trigger=durably.on_event("x", if_="event.data.kind == 'a'"))
    async def picky(ctx):
        return "ran"

    res = app.send([durably.Event("x", {"kind": "a"}), durably.Event("x", {"kind": "b"}),
                    durably.Event("x", {}, id="no-kind")])
    assert len(res.runs) == 1
    assert [s["event_id"] for s in res.skipped] == ["no-kind"]
    assert "event.data.kind" in res.skipped[0]["reason"]
    stored = app.store.get_event("no-kind").result()
    assert stored["runs"] == [] and stored["skipped"][0]["function_id"] == "picky"


def test_key_expression_failing_on_an_event_gives_a_failed_run(app_factory):
    app = app_factory()

    @app.function(id="keyed", trigger=durably.on_event("k"), idempotency="event.data.clientId")
    async def keyed(ctx):
        return "ran"

    res = app.send(durably.Event("k", {"other": 1}))
    run = get_run(app, res.runs[0])
    assert run["status"] == "failed" and run["terminal_reason"] == "expression_error"
    assert "event.data.clientId" in run["error"]["message"]


def test_idempotency_key_gives_one_run_per_key(app_factory):
    app = app_factory()

    @app.function(id="idem", trigger=durably.on_event("i"), idempotency="event.data.clientId")
    async def idem(ctx):
        return ctx.event.data["clientId"]

    a = app.send([durably.Event("i", {"clientId": "c1"}), durably.Event("i", {"clientId": "c1"}),
                  durably.Event("i", {"clientId": "c2"})])
    assert len(a.runs) == 2 and len(a.skipped) == 1


def test_send_rejects_bad_values_before_writing(app_factory):
    app = app_factory()
    for bad in ("name", 3, [durably.Event("ok"), "x"]):
        try:
            app.send(bad)
        except InvalidInput:
            pass
        else:
            raise AssertionError(f"send({bad!r}) was accepted")
    assert app.store.list_events(limit=10).result() == []


def test_on_failure_runs_only_for_its_own_function(app_factory):
    app = app_factory()
    handled = []

    @app.function(id="a", trigger=durably.on_event("go"), retries=0, on_failure=lambda ctx: handled.append("a"))
    async def a(ctx):
        raise RuntimeError("a broke")

    @app.function(id="b", trigger=durably.on_event("go"), retries=0)
    async def b(ctx):
        raise RuntimeError("b broke")

    with running_worker(app):
        res = app.send(durably.Event("go"))
        for rid in res.runs:
            assert wait_run(app, rid)["terminal_reason"] == "retries_exhausted"
        handler = wait_for(lambda: runs_of(app, function_id="a-failure"), what="a's failure handler")
        wait_run(app, handler[0]["id"])
        wait_status(app, handler[0]["id"], "completed")
    # Both failures emitted durably/function.failed; only a's reached a's handler.
    assert handled == ["a"]
    assert len(runs_of(app, function_id="a-failure")) == 1
    failed_events = app.store.list_events(name="durably/function.failed", limit=10).result()
    assert sorted(e["event"]["data"]["function_id"] for e in failed_events) == ["a", "b"]
