"""Rerun from a step (a new run whose memo holds the original's steps before that step, with
optional new event data) and cron backfill (each tick of a range once, under the scheduler's
tick key), through admin and the HTTP API, on both stores."""

from __future__ import annotations

import asyncio

import pytest

import durably
from durably import admin
from durably.errors import InvalidInput, NotFound, UnknownFunction
from tests.helpers import asgi_client, make_app, running_worker, wait_for, wait_run

pytestmark = pytest.mark.anyio

EVERY_SECOND = "* * * * * *"


@pytest.fixture
def anyio_backend():
    return "asyncio"


def three_steps(store_url: str, calls: dict[str, int], env: str = "test") -> durably.App:
    app = make_app(store_url, "rerun", env=env)

    def count(name: str, value):
        calls[name] = calls.get(name, 0) + 1
        return value

    @app.function(id="three", trigger=durably.on_event("three.go"), tenant="event.data.client")
    async def three(ctx):
        a = await ctx.step.run("load", count, "load", {"loaded": ctx.event.data["n"]})
        b = await ctx.step.run("double", count, "double", ctx.event.data["n"] * 2)
        c = await ctx.step.run("report", count, "report", f"{a['loaded']}/{b}")
        return {"a": a, "b": b, "c": c}

    @app.function(id="ticker", trigger=durably.on_cron(EVERY_SECOND))
    async def ticker(ctx):
        return ctx.event.data["tick"]

    return app


def finished(app: durably.App, data: dict) -> dict:
    (rid,) = app.send(durably.Event("three.go", data)).runs
    return wait_run(app, rid)


async def test_rerun_from_a_step_replays_the_steps_before_it_and_sees_new_data(store_url):
    calls: dict[str, int] = {}
    app = three_steps(store_url, calls)
    with running_worker(app, scheduler=False):
        first = await asyncio.to_thread(finished, app, {"n": 1, "client": "c1"})
        assert first["output"] == {"a": {"loaded": 1}, "b": 2, "c": "1/2"}
        res = await admin.rerun_from_step(app.store, first["id"], "double", data={"n": 5, "client": "c2"})
        assert res["replay_of"] == first["id"] and res["memo"] == ["load"] and res["from_step"] == "double"
        new = await asyncio.to_thread(wait_run, app, res["id"])
    assert new["status"] == "completed", new.get("error")
    # "load" came from the memo (its old output), "double" and "report" ran again on the new data.
    assert new["output"] == {"a": {"loaded": 1}, "b": 10, "c": "1/10"}
    assert calls == {"load": 1, "double": 2, "report": 2}
    assert new["trigger"] == "replay" and new["replay_of"] == first["id"] and new["tenant"] == "c2"
    assert new["event"]["data"] == {"n": 5, "client": "c2"} and new["event"]["id"] == first["event"]["id"]
    steps = {s["step_id"]: s for s in new["steps"]}
    assert set(steps) == {"load", "double", "report"} and steps["load"]["output"] == {"loaded": 1}
    assert app.store.get_run(first["id"]).result()["output"] == first["output"]  # the original is untouched
    app.close()


async def test_rerun_without_data_and_from_the_first_step(store_url):
    calls: dict[str, int] = {}
    app = three_steps(store_url, calls)
    with running_worker(app, scheduler=False):
        first = await asyncio.to_thread(finished, app, {"n": 3, "client": "c1"})
        again = await admin.rerun_from_step(app.store, first["id"], "report")
        whole = await admin.rerun_from_step(app.store, first["id"], "load")
        assert again["memo"] == ["load", "double"] and whole["memo"] == []
        for rid in (again["id"], whole["id"]):
            assert (await asyncio.to_thread(wait_run, app, rid))["output"] == first["output"]
    assert calls == {"load": 2, "double": 2, "report": 3}
    app.close()


async def test_rerun_bad_input(store_url):
    calls: dict[str, int] = {}
    app = three_steps(store_url, calls)
    with running_worker(app, scheduler=False):
        first = await asyncio.to_thread(finished, app, {"n": 1, "client": "c1"})
    with pytest.raises(InvalidInput, match="no step 'nope'.*'load', 'double', 'report'"):
        await admin.rerun_from_step(app.store, first["id"], "nope")
    for bad in ([1], "x", 3):
        with pytest.raises(InvalidInput, match="data: must be a JSON object"):
            await admin.rerun_from_step(app.store, first["id"], "load", data=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="NUL"):
        await admin.rerun_from_step(app.store, first["id"], "load", data={"n": "a\u0000"})
    with pytest.raises(NotFound):
        await admin.rerun_from_step(app.store, "01NOSUCHRUN", "load")
    assert len(app.store.list_runs(function_id="three").result()) == 1  # nothing was created
    app.close()


def _fire_one_tick(app: durably.App) -> str:
    """Let the scheduler's own verb fire a tick of the ticker; that tick's event id."""
    app.store.fire_cron("ticker", EVERY_SECOND, "UTC").result()  # the schedule's state starts now
    rid = wait_for(lambda: app.store.fire_cron("ticker", EVERY_SECOND, "UTC").result(), timeout=10, interval=0.05,
                   what="a tick of the scheduler")
    return app.store.get_run(rid).result()["event_id"]


async def test_backfill_fires_each_tick_once(store_url):
    app = three_steps(store_url, {})
    app.runtime.registry.register().result()
    store = app.store
    scheduler_tick = _fire_one_tick(app)  # cron:ticker:<ISO time>
    at = admin.parse_time(scheduler_tick.split(":", 2)[2], name="tick", now=0)
    assert at is not None
    start, end = at - 3, at + 1 - 0.001  # 4 ticks: at-3, at-2, at-1 and the scheduler's tick at

    dry = await admin.backfill(store, "ticker", start, end, dry_run=True)
    assert dry["dry_run"] and len(dry["ticks"]) == 4 and dry["fired"] == 0 and dry["runs"] == []
    cron_runs = lambda: [r for r in store.list_runs(function_id="ticker", limit=100).result()]  # noqa: E731
    assert len(cron_runs()) == 1  # a dry run writes nothing

    done = await admin.backfill(store, "ticker", start, end)
    assert (done["fired"], done["skipped"], len(done["runs"])) == (3, 1, 3)
    skipped = [t for t in done["ticks"] if not t["fired"]]
    assert [t["event_id"] for t in skipped] == [scheduler_tick]  # the scheduler's tick: same key, skipped
    assert len(cron_runs()) == 4 and all(r["trigger"] == "cron" for r in cron_runs())

    again = await admin.backfill(store, "ticker", start - 2, end)
    assert (again["fired"], again["skipped"]) == (2, 4)  # only the two ticks not fired before
    assert len(cron_runs()) == 6
    ticks = sorted(r["event"]["data"]["tick"] for r in cron_runs())
    assert len(set(ticks)) == 6  # one run per tick
    app.close()


async def test_backfill_bad_input(store_url):
    app = three_steps(store_url, {})
    app.runtime.registry.register().result()
    store = app.store
    now = store.now().result()
    with pytest.raises(InvalidInput, match="no cron trigger"):
        await admin.backfill(store, "three", now - 60, now)
    with pytest.raises(InvalidInput, match="more than 1000 ticks"):
        await admin.backfill(store, "ticker", now - 3600, now)
    with pytest.raises(InvalidInput, match="is after to"):
        await admin.backfill(store, "ticker", now, now - 10)
    with pytest.raises(InvalidInput, match="in the future"):
        await admin.backfill(store, "ticker", now - 10, now + 3600)
    with pytest.raises(InvalidInput, match="required"):
        await admin.backfill(store, "ticker", None, now)
    with pytest.raises(UnknownFunction):
        await admin.backfill(store, "nope", now - 10, now)
    assert store.list_runs(function_id="ticker").result() == []
    app.close()


async def test_the_http_api(store_url):
    calls: dict[str, int] = {}
    app = three_steps(store_url, calls, env="dev")
    with running_worker(app, scheduler=False):
        first = await asyncio.to_thread(finished, app, {"n": 2, "client": "c1"})
        async with asgi_client(app.asgi()) as c:
            r = await c.post(f"/api/v1/runs/{first['id']}/replay", json={"from_step": "double", "data": {"n": 4, "client": "c1"}})
            assert r.status_code == 201, r.text
            body = r.json()
            assert body["replay_of"] == first["id"] and body["memo"] == ["load"]
            plain = await c.post(f"/api/v1/runs/{first['id']}/replay")  # no body: the plain replay
            assert plain.status_code == 201 and "memo" not in plain.json()
            whole = await c.post(f"/api/v1/runs/{first['id']}/replay", json={"data": {"n": 3, "client": "c1"}})
            assert whole.status_code == 201 and whole.json()["memo"] == []  # new data, every step afresh
            for bad in ({"from_step": "nope"}, {"from_step": "load", "data": [1]}, {"from_step": ""},
                        {"from_step": "load", "x": 1}, {"from_step": 3}, {"data": {"n": "a\u0000"}}):
                res = await c.post(f"/api/v1/runs/{first['id']}/replay", json=bad)
                assert res.status_code == 400 and res.json()["error"]["code"] == "invalid_input", (bad, res.text)
            missing = await c.post("/api/v1/runs/01NOSUCHRUN/replay", json={"from_step": "load"})
            assert missing.status_code == 404
            new = await asyncio.to_thread(wait_run, app, body["id"])
            assert new["output"]["b"] == 8 and new["output"]["a"] == {"loaded": 2}
            await asyncio.to_thread(wait_run, app, plain.json()["id"])
            assert (await asyncio.to_thread(wait_run, app, whole.json()["id"]))["output"]["a"] == {"loaded": 3}

            r = await c.post("/api/v1/functions/ticker/backfill", json={"from": "5s", "to": "2s", "dry_run": True})
            assert r.status_code == 200, r.text
            assert len(r.json()["ticks"]) in (3, 4) and r.json()["fired"] == 0
            r = await c.post("/api/v1/functions/ticker/backfill", json={"from": "5s", "to": "2s"})
            assert r.status_code == 201 and r.json()["fired"] == len(r.json()["ticks"]) == len(r.json()["runs"])
            for bad in ({"from": "5s"}, {"from": "nonsense", "to": "1s"}, {"from": "1s", "to": "5s"},
                        {"from": "2h", "to": "1s"}, {"from": "5s", "to": "1s", "x": 1}):
                res = await c.post("/api/v1/functions/ticker/backfill", json=bad)
                assert res.status_code == 400 and res.json()["error"]["code"] == "invalid_input", (bad, res.text)
            res = await c.post("/api/v1/functions/three/backfill", json={"from": "5s", "to": "1s"})
            assert res.status_code == 400 and "no cron trigger" in res.json()["error"]["message"]
            res = await c.post("/api/v1/functions/nope/backfill", json={"from": "5s", "to": "1s"})
            assert res.status_code == 404
    assert calls["load"] == 3  # the original, the plain replay and the one with new data; not the rerun
    app.close()


async def test_the_dashboard_forms_refuse_bad_input_with_a_400_page(store_url):
    import re

    calls: dict[str, int] = {}
    app = three_steps(store_url, calls, env="dev")
    with running_worker(app, scheduler=False):
        first = await asyncio.to_thread(finished, app, {"n": 2, "client": "c1"})
    async with asgi_client(app.asgi()) as c:
        page = await c.get(f"/runs/{first['id']}")
        assert page.status_code == 200 and page.text.count("Rerun from here") == 3
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        for form, message in (({"step": "nope", "data": ""}, "no step"),
                              ({"step": "load", "data": "{"}, "not valid JSON"),
                              ({"step": "load", "data": "[1]"}, "must be a JSON object")):
            r = await c.post(f"/runs/{first['id']}/rerun", data={"csrf": csrf, **form})
            assert r.status_code == 400 and message in r.text, (form, r.status_code)
        r = await c.post(f"/runs/{first['id']}/rerun", data={"step": "load"})
        assert r.status_code == 403  # no CSRF token
        r = await c.post(f"/runs/{first['id']}/rerun", data={"csrf": csrf, "step": "double", "data": ""})
        assert r.status_code == 303 and r.headers["location"].startswith("/runs/")  # the run's own data
        new_id = r.headers["location"].rsplit("/", 1)[1]
        assert app.store.get_run(new_id).result()["event"]["data"] == {"n": 2, "client": "c1"}
        runs = await c.get("/runs")
        assert runs.status_code == 200 and "Cancel selected" in runs.text
        for form, message in (({}, "select at least one run"), ({"action": "matching"}, "needs a function filter"),
                              ({"action": "matching", "filter_function": "three", "filter_status": "completed"},
                               "cannot be cancelled"),
                              ({"action": "matching", "filter_function": "three", "filter_since": "soon"}, "since"),
                              ({"run": "a\u0000b"}, "not a run id")):
            r = await c.post("/runs/cancel", data={"csrf": csrf, **form})
            assert r.status_code == 400 and message in r.text, (form, r.status_code, r.text[:300])
        r = await c.post("/runs/cancel", data={"csrf": csrf, "run": first["id"]})  # finished: not cancelled
        assert r.status_code == 200 and "Cancelled 0 run(s)" in r.text and "1 had already ended" in r.text
    assert app.store.get_run(first["id"]).result()["status"] == "completed"
    app.close()


async def test_the_copied_memo_holds_every_kind_of_step_in_order(store_url):
    """Sleeps, waits and patch markers before the step are copied too, so the new run replays
    them in the original's order (no nondeterminism) and does not sleep or wait again."""
    calls: dict[str, int] = {}
    app = make_app(store_url, "rerun-kinds")

    def count(name: str) -> str:
        calls[name] = calls.get(name, 0) + 1
        return name

    @app.function(id="mixed", trigger=durably.on_event("mixed.go"))
    async def mixed(ctx):
        a = await ctx.step.run("a", count, "a")
        v2 = ctx.patched("v2")
        await ctx.step.sleep("nap", "2s")
        heard = await ctx.step.wait_for_event("hear", "mixed.heard", timeout="1s")  # times out: None
        b = await ctx.step.run("b", count, "b")
        return [a, v2, heard, b]

    with running_worker(app, scheduler=False):
        (rid,) = app.send(durably.Event("mixed.go", {})).runs
        first = await asyncio.to_thread(wait_run, app, rid)
        assert first["output"] == ["a", True, None, "b"]
        res = await admin.rerun_from_step(app.store, rid, "b")
        assert res["memo"] == ["a", "patched:v2", "nap", "hear"]
        new = await asyncio.to_thread(wait_run, app, res["id"])
    assert new["status"] == "completed", new.get("error")
    assert new["output"] == ["a", True, None, "b"] and calls == {"a": 1, "b": 2}
    old = {s["step_id"]: s for s in first["steps"]}
    for s in new["steps"]:
        if s["step_id"] != "b":  # copied as they were: the sleep and the wait did not happen again
            assert (s["kind"], s["status"], s["finished_at"]) == (old[s["step_id"]]["kind"], old[s["step_id"]]["status"],
                                                                  old[s["step_id"]]["finished_at"])
    assert new["finished_at"] - new["started_at"] < 2.0  # no 2 s sleep, no 1 s wait this time
    assert first["finished_at"] - first["started_at"] >= 3.0
    app.close()
