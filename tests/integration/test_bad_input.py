"""Bad input gets one clear error and loses nothing: other runs are not affected."""

from __future__ import annotations

import datetime

import pytest

import durably
from durably.errors import NotSerializable, PayloadTooLarge
from durably.core.jsonutil import EVENT_MAX_BYTES, STEP_OUTPUT_MAX_BYTES
from tests.helpers import running_worker, runs_of, wait_run
from tests.integration.support import steps_of


@pytest.fixture
def app(app_factory):
    app = app_factory()

    @app.function(id="echo", trigger=durably.on_event("echo"))
    async def echo(ctx):
        return await ctx.step.run("echo", lambda: ctx.event.data)

    @app.function(id="bad-output", trigger=durably.on_event("bad-output"), retries=3)
    async def bad_output(ctx):
        kind = ctx.event.data["kind"]
        if kind == "object":
            await ctx.step.run("produce", lambda: {"when": datetime.time(12, 0), "obj": object()})
        elif kind == "huge":
            await ctx.step.run("produce", lambda: "x" * (STEP_OUTPUT_MAX_BYTES + 1))
        elif kind == "return":
            return {1, 2, 3}
        elif kind == "send":
            await ctx.step.send_event("emit", durably.Event("echo", {"oops": object()}))
        return "unreachable"

    return app


def test_event_data_not_serializable(app):
    with pytest.raises(NotSerializable) as exc:
        app.send(durably.Event("echo", {"when": object()}))
    assert "not JSON-serializable" in str(exc.value) and "'echo'" in str(exc.value)
    # A batch holding one bad event writes nothing at all.
    with pytest.raises(NotSerializable):
        app.send([durably.Event("echo", {"ok": 1}, id="good"), durably.Event("echo", {"bad": {1, 2}})])
    assert app.store.get_event("good").result() is None
    assert runs_of(app) == []


def test_event_over_1_mib(app):
    with pytest.raises(PayloadTooLarge) as exc:
        app.send(durably.Event("echo", {"blob": "x" * EVENT_MAX_BYTES}))
    assert "1,048,576" in str(exc.value)
    with pytest.raises(PayloadTooLarge):
        app.send([durably.Event("echo", {"ok": 1}, id="good"), durably.Event("echo", {"blob": "x" * EVENT_MAX_BYTES})])
    assert app.store.get_event("good").result() is None
    ok = app.send(durably.Event("echo", {"blob": "x" * (EVENT_MAX_BYTES - 1000)}))  # just under: fine
    with running_worker(app):
        assert wait_run(app, ok.runs[0])["status"] == "completed"


@pytest.mark.parametrize("kind,fragment", [
    ("object", "step 'produce' output is not JSON-serializable"),
    ("huge", "step 'produce' output is 4,194,30"),
    ("return", "the function's return value is not JSON-serializable"),
    ("send", "not JSON-serializable"),
])
def test_bad_output_fails_its_run_alone_with_a_clear_error(app, kind, fragment):
    res = app.send([durably.Event("echo", {"n": 1}), durably.Event("bad-output", {"kind": kind}),
                    durably.Event("echo", {"n": 2})])
    assert len(res.runs) == 3
    with running_worker(app):
        runs = [wait_run(app, rid) for rid in res.runs]
    good1, bad, good2 = runs
    assert good1["status"] == good2["status"] == "completed"
    assert good1["output"] == {"n": 1} and good2["output"] == {"n": 2}
    assert bad["status"] == "failed" and bad["terminal_reason"] == "non_retriable"
    assert fragment in bad["error"]["message"]
    assert "\n" not in bad["error"]["message"]
    if kind in ("object", "huge"):
        step = steps_of(app, bad["id"])["produce"]
        assert step["status"] == "failed" and step["attempts"] == 1  # not retried: it cannot get better
