"""The HTTP API in process (``app.asgi()`` over httpx's ASGI transport), against the real store."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import durably
from durably.config import Settings
from durably.errors import ConfigError
from durably.server import create_app
from tests.helpers import asgi_client as client
from tests.helpers import get_run, make_app, running_worker, runs_of, wait_for, wait_run
from tests.integration.support import FAST

pytestmark = pytest.mark.anyio

EVENT_KEY, ADMIN, CRON = "ek-test-1", "at-test-1", "cs-test-1"
EVENT_H = {"Authorization": f"Bearer {EVENT_KEY}"}
ADMIN_H = {"Authorization": f"Bearer {ADMIN}"}
CRON_H = {"Authorization": f"Bearer {CRON}"}


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def api_app(store_url):
    app = make_app(store_url, "api", env="test", event_key=EVENT_KEY, admin_token=ADMIN, cron_secret=CRON)

    @app.function(id="greet", trigger=durably.on_event("api.greet"), retries=FAST)
    async def greet(ctx):
        def fetch():
            if ctx.attempt == 0:  # inside a step: that step's attempt
                raise RuntimeError("flaky the first time")
            return "hello " + ctx.event.data.get("name", "world")

        text = await ctx.step.run("fetch", fetch)
        return {"text": text}

    @app.function(id="nap", trigger=durably.on_event("api.nap"), tenant="event.data.client")
    async def nap(ctx):
        await ctx.step.sleep("long", "1h")

    @app.function(id="tick", trigger=[durably.on_cron("0 9 * * *", tz="Europe/Berlin"),
                                      durably.on_event("background/process.requested")])
    async def tick(ctx):
        return await ctx.step.run("work", lambda: 1)

    yield app
    app.close()


def _err(r: httpx.Response) -> dict:
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return body["error"]


# --- startup and auth ------------------------------------------------------------------------


def test_outside_dev_a_missing_key_stops_the_server(tmp_path):
    s = Settings.load({"DURABLY_DATABASE_URL": f"sqlite:///{tmp_path}/d.db", "DURABLY_ENV": "production",
                       "DURABLY_ADMIN_TOKEN": "x"})
    with pytest.raises(ConfigError) as exc:
        create_app(s)
    msg = str(exc.value)
    assert "DURABLY_EVENT_KEY" in msg and "CRON_SECRET" in msg and "DURABLY_ADMIN_TOKEN" not in msg
    assert "\n" not in msg


async def test_dev_without_keys_is_open_and_a_configured_key_is_required(tmp_path):
    s = Settings.load({"DURABLY_DATABASE_URL": f"sqlite:///{tmp_path}/d.db", "DURABLY_ENV": "dev",
                       "DURABLY_ADMIN_TOKEN": "only-admin"})
    asgi = create_app(s)
    async with client(asgi) as c:
        r = await c.post("/api/v1/events", json={"name": "x"})
        assert r.status_code == 200 and r.headers["x-durably-env"] == "dev"
        assert (await c.get("/api/v1/runs")).status_code == 401  # configured in dev: still required
        assert (await c.get("/api/v1/runs", headers={"Authorization": "Bearer only-admin"})).status_code == 200
        doc = (await c.get("/openapi.json")).json()
        assert doc["paths"]["/api/v1/events"]["post"]["security"] == []
        assert doc["paths"]["/api/v1/runs"]["get"]["security"] == [{"adminToken": []}]
    asgi.state.durably.runtime.close()


async def test_each_route_takes_only_its_own_credential(api_app):
    async with client(api_app.asgi()) as c:
        ev = {"name": "api.other"}
        assert (await c.post("/api/v1/events", json=ev)).status_code == 401
        assert (await c.post("/api/v1/events", json=ev, headers=ADMIN_H)).status_code == 401
        assert (await c.post("/api/v1/events", json=ev, headers={"Authorization": f"Basic {EVENT_KEY}"})).status_code == 401
        assert (await c.post("/api/v1/events", json=ev, headers=EVENT_H)).status_code == 200
        assert (await c.post("/api/v1/events", json=ev, headers={"X-Durably-Event-Key": EVENT_KEY})).status_code == 200
        assert (await c.post("/api/v1/cron/api.other", headers=EVENT_H)).status_code == 401
        assert (await c.post("/api/v1/cron/api.other", headers=ADMIN_H)).status_code == 401
        for path in ("/api/v1/runs", "/api/v1/events", "/api/v1/functions", "/metrics"):
            r = await c.get(path, headers=EVENT_H)
            assert r.status_code == 401 and _err(r)["code"] == "unauthorized", path
            assert r.headers["www-authenticate"] == "Bearer"
            assert (await c.get(path, headers=ADMIN_H)).status_code == 200, path
        r = await c.get("/api/v1/health")
        assert r.status_code == 200 and r.json()["store"]["ok"] is True
        r = await c.get("/nowhere")
        assert r.status_code == 404 and _err(r)["code"] == "not_found" and r.headers["x-durably-env"] == "test"
        r = await c.delete("/api/v1/runs", headers=ADMIN_H)
        assert r.status_code == 405 and _err(r)["code"] == "method_not_allowed"


async def test_a_request_for_another_env_is_refused_and_writes_nothing(api_app):
    async with client(api_app.asgi()) as c:
        other = {**EVENT_H, "X-Durably-Env": "production"}
        r = await c.post("/api/v1/events", json={"name": "api.greet"}, headers=other)
        assert r.status_code == 409 and _err(r)["code"] == "env_mismatch"
        r = await c.post("/api/v1/cron/api.greet", headers={**CRON_H, "X-Durably-Env": "production"})
        assert r.status_code == 409
        same = await c.post("/api/v1/events", json={"name": "api.other"}, headers={**EVENT_H, "X-Durably-Env": "test"})
        assert same.status_code == 200
        events = (await c.get("/api/v1/events", headers=ADMIN_H)).json()["events"]
    assert [e["name"] for e in events] == ["api.other"]
    assert runs_of(api_app) == []


# --- validation and limits -------------------------------------------------------------------


@pytest.mark.parametrize("body, expect", [
    ({"data": {}}, "field 'name' is required"),
    ({"name": "x", "ts": "soon"}, "field 'ts'"),
    ({"name": "x", "data": [1]}, "field 'data'"),
    ({"name": "x", "bad": 1}, "unknown field 'bad'"),
    ({"name": "   "}, "field 'name'"),
    ([{"name": "ok"}, {"name": "x", "id": 5}], "events[1]: field 'id'"),
    ([], "empty list"),
    ("text", "must be an event object or a list"),
    ({"name": "durably/function.failed"}, "reserved"),
])
async def test_invalid_events_are_400_naming_the_field(api_app, body, expect):
    async with client(api_app.asgi()) as c:
        r = await c.post("/api/v1/events", json=body, headers=EVENT_H)
    assert r.status_code == 400, r.text
    assert expect in _err(r)["message"]
    assert runs_of(api_app) == []


async def test_malformed_json_bad_queries_and_list_limits(api_app):
    async with client(api_app.asgi()) as c:
        r = await c.post("/api/v1/events", content=b'{"name": "x",', headers=EVENT_H)
        assert r.status_code == 400 and "malformed JSON" in _err(r)["message"]
        r = await c.post("/api/v1/events", json=[{"name": "x"}] * 1001, headers=EVENT_H)
        assert r.status_code == 400 and "at most 1000" in _err(r)["message"]
        for query, name in [("limit=0", "limit"), ("limit=1001", "limit"), ("limit=ten", "limit"),
                            ("status=done", "status"), ("colour=red", "colour"), ("cursor=zzz", "cursor"),
                            ("since=yesterday", "since"), ("limit=5&limit=6", "limit")]:
            r = await c.get(f"/api/v1/runs?{query}", headers=ADMIN_H)
            assert r.status_code == 400 and name in _err(r)["message"], (query, r.text)
        r = await c.post("/api/v1/cron/api.greet?window=0", headers=CRON_H)
        assert r.status_code == 400 and "window" in _err(r)["message"]
        r = await c.post("/api/v1/replay", json={"function": "greet", "limit": "5"}, headers=ADMIN_H)
        assert r.status_code == 400 and "limit" in _err(r)["message"]
        r = await c.post("/api/v1/replay", json={"function": "greet", "status": "running"}, headers=ADMIN_H)
        assert r.status_code == 400 and "status" in _err(r)["message"]
        r = await c.post("/api/v1/replay", json={"limit": 5}, headers=ADMIN_H)
        assert r.status_code == 400 and "function" in _err(r)["message"]
        r = await c.post("/api/v1/functions/greet/invoke", json={"data": {}, "extra": 1}, headers=ADMIN_H)
        assert r.status_code == 400 and "extra" in _err(r)["message"]


async def test_payloads_over_the_limits_are_413(api_app):
    async with client(api_app.asgi()) as c:
        big = "x" * (1024 * 1024)
        r = await c.post("/api/v1/events", json=[{"name": "ok"}, {"name": "api.greet", "data": {"blob": big}}],
                         headers=EVENT_H)
        assert r.status_code == 413 and "events[1]" in _err(r)["message"]
        r = await c.post("/api/v1/events", content=b"[" + b" " * (6 * 1024 * 1024) + b"]", headers=EVENT_H)
        assert r.status_code == 413 and _err(r)["code"] == "payload_too_large"
        events = (await c.get("/api/v1/events", headers=ADMIN_H)).json()["events"]
    assert events == []


# --- events, runs, pagination ----------------------------------------------------------------


async def test_an_event_runs_its_function_and_the_run_shows_steps_and_attempts(api_app):
    async with client(api_app.asgi()) as c:
        with running_worker(api_app):
            r = await c.post("/api/v1/events", json={"name": "api.greet", "data": {"name": "Ada"}}, headers=EVENT_H)
            assert r.status_code == 200
            body = r.json()
            assert len(body["ids"]) == 1 and len(body["runs"]) == 1 and body["duplicates"] == []
            run_id = body["runs"][0]
            await asyncio.to_thread(wait_run, api_app, run_id)
        r = await c.get(f"/api/v1/runs/{run_id}", headers=ADMIN_H)
        assert r.status_code == 200
        run = r.json()
        assert run["status"] == "completed" and run["output"] == {"text": "hello Ada"}
        assert run["event"]["data"] == {"name": "Ada"} and run["trigger"] == "event"
        (step,) = run["steps"]
        assert step["id"] == "fetch" and step["status"] == "completed" and step["attempts"] == 2
        assert [e["message"] for e in step["errors"]] == ["flaky the first time"]
        assert [a["attempt"] for a in step["attempt_log"]] == [1, 2]
        again = await c.post("/api/v1/events", json={"name": "api.greet", "id": body["ids"][0]}, headers=EVENT_H)
        assert again.json()["duplicates"] == body["ids"] and again.json()["runs"] == []
        ev = (await c.get(f"/api/v1/events/{body['ids'][0]}", headers=ADMIN_H)).json()
        assert [x["id"] for x in ev["runs"]] == [run_id] and ev["skipped"] == []
        r = await c.get("/api/v1/runs/nope", headers=ADMIN_H)
        assert r.status_code == 404 and _err(r)["code"] == "not_found"


async def test_cursor_pagination_walks_every_run_once(api_app):
    async with client(api_app.asgi()) as c:
        r = await c.post("/api/v1/events", json=[{"name": "api.nap", "data": {"client": f"c{i % 2}"}}
                                                 for i in range(7)], headers=EVENT_H)
        created = set(r.json()["runs"])
        seen, pages, cursor = [], 0, None
        while True:
            params = {"limit": 3, "function": "nap"} | ({"cursor": cursor} if cursor else {})
            page = (await c.get("/api/v1/runs", params=params, headers=ADMIN_H)).json()
            pages += 1
            seen += [x["id"] for x in page["runs"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert pages == 3 and len(seen) == 7 and set(seen) == created
        assert seen == sorted(seen, reverse=True)  # newest first (ids are time-ordered)
        c0 = (await c.get("/api/v1/runs", params={"tenant": "c0"}, headers=ADMIN_H)).json()["runs"]
        assert len(c0) == 4 and {x["tenant"] for x in c0} == {"c0"}
        future = (await c.get("/api/v1/runs", params={"since": "2999-01-01T00:00:00Z"}, headers=ADMIN_H)).json()
        assert future["runs"] == []
        recent = (await c.get("/api/v1/runs", params={"since": "1h", "status": "queued"}, headers=ADMIN_H)).json()
        assert len(recent["runs"]) == 7
        evs = (await c.get("/api/v1/events", params={"limit": 5}, headers=ADMIN_H)).json()
        more = (await c.get("/api/v1/events", params={"limit": 5, "cursor": evs["next_cursor"]}, headers=ADMIN_H)).json()
        assert len(evs["events"]) == 5 and len(more["events"]) == 2 and more["next_cursor"] is None


# --- Run now, cancel, replay -----------------------------------------------------------------


async def test_run_now_cancel_and_replay_one(api_app):
    api_app.register()
    async with client(api_app.asgi()) as c:
        r = await c.post("/api/v1/functions/nap/invoke", json={"data": {"client": "c9"}}, headers=ADMIN_H)
        assert r.status_code == 201
        run_id = r.json()["id"]
        run = (await c.get(f"/api/v1/runs/{run_id}", headers=ADMIN_H)).json()
        assert run["trigger"] == "manual" and run["tenant"] == "c9" and run["status"] == "queued"
        r = await c.post(f"/api/v1/runs/{run_id}/replay", headers=ADMIN_H)
        assert r.status_code == 409 and _err(r)["code"] == "conflict"  # not finished yet
        r = await c.post(f"/api/v1/runs/{run_id}/cancel", headers=ADMIN_H)
        assert r.status_code == 200 and r.json() == {"id": run_id, "status": "cancelled"}
        r = await c.post(f"/api/v1/runs/{run_id}/cancel", headers=ADMIN_H)
        assert r.status_code == 409 and "already cancelled" in _err(r)["message"]
        r = await c.post(f"/api/v1/runs/{run_id}/replay", headers=ADMIN_H)
        assert r.status_code == 201
        replay = (await c.get(f"/api/v1/runs/{r.json()['id']}", headers=ADMIN_H)).json()
        assert replay["trigger"] == "replay" and replay["replay_of"] == run_id and replay["status"] == "queued"
        assert replay["event"] == run["event"] and replay["tenant"] == "c9"
        r = await c.post("/api/v1/functions/naps/invoke", headers=ADMIN_H)
        assert r.status_code == 404 and _err(r)["code"] == "unknown_function" and "did you mean 'nap'" in r.text
        assert (await c.post("/api/v1/runs/missing/cancel", headers=ADMIN_H)).status_code == 404
        assert (await c.post("/api/v1/runs/missing/replay", headers=ADMIN_H)).status_code == 404
        r = await c.post("/api/v1/functions/nap/invoke", headers=ADMIN_H)  # no body: empty data
        assert r.status_code == 201


async def test_bulk_replay_dry_run_limit_and_concurrency(store_url, tmp_path):
    app = make_app(store_url, "replays", env="test", admin_token=ADMIN, event_key=EVENT_KEY, cron_secret=CRON)
    state = {"fail": True}
    spans: list[tuple[float, float]] = []

    @app.function(id="fragile", trigger=durably.on_event("fragile"), retries=0)
    async def fragile(ctx):
        if state["fail"]:
            raise durably.NonRetriableError("not yet")
        start = time.monotonic()
        await asyncio.sleep(0.05)
        spans.append((start, time.monotonic()))
        return "ok"

    try:
        with running_worker(app, concurrency=8):
            res = app.send([durably.Event("fragile", {"i": i}) for i in range(5)])
            for rid in res.runs:
                await asyncio.to_thread(wait_run, app, rid)
            assert all(get_run(app, rid)["status"] == "failed" for rid in res.runs)
            state["fail"] = False
            async with client(app.asgi()) as c:
                dry = await c.post("/api/v1/replay", json={"function": "fragile", "limit": 3, "dry_run": True},
                                   headers=ADMIN_H)
                assert dry.status_code == 200
                d = dry.json()
                assert d["dry_run"] is True and d["count"] == 3 and d["batch_id"] is None
                assert [x["id"] for x in d["runs"]] == res.runs[:3]  # oldest first
                assert all(x["replay_id"] is None and x["error"]["message"] == "not yet" for x in d["runs"])
                assert len(runs_of(app)) == 5  # a dry run creates nothing
                real = await c.post("/api/v1/replay", json={"function": "fragile", "limit": 3, "concurrency": 1},
                                    headers=ADMIN_H)
                assert real.status_code == 201
                body = real.json()
                assert body["count"] == 3 and body["batch_id"]
                replays = [x["replay_id"] for x in body["runs"]]
                for rid in replays:
                    await asyncio.to_thread(wait_run, app, rid)
                assert [get_run(app, rid)["status"] for rid in replays] == ["completed"] * 3
                assert [get_run(app, rid)["replay_of"] for rid in replays] == res.runs[:3]
                # concurrency=1: the three replays never ran at the same time, on an 8-slot worker
                spans.sort()
                assert len(spans) == 3
                assert all(b[0] >= a[1] for a, b in zip(spans, spans[1:])), spans
                # already replayed runs are left out of the next bulk replay
                left = (await c.post("/api/v1/replay", json={"function": "fragile", "dry_run": True},
                                     headers=ADMIN_H)).json()
                assert [x["id"] for x in left["runs"]] == res.runs[3:]
                r = await c.post("/api/v1/replay", json={"function": "fragil", "dry_run": True}, headers=ADMIN_H)
                assert r.status_code == 404 and "did you mean 'fragile'" in r.text
    finally:
        app.close()


# --- cron dispatch ---------------------------------------------------------------------------


def _not_near_window_end(window: int) -> None:
    # Two pings meant for one window must not straddle its end.
    wait_for(lambda: time.time() % window < window - 5, window, interval=0.2, what="the start of a fresh window")


async def test_cron_pings_in_one_window_send_one_event(api_app):
    api_app.register()
    _not_near_window_end(60)
    async with client(api_app.asgi()) as c:
        r = await c.post("/api/v1/cron/background/process.requested")
        assert r.status_code == 401
        assert (await c.get("/api/v1/events", headers=ADMIN_H)).json()["events"] == []
        first, second = await asyncio.gather(*[c.post("/api/v1/cron/background/process.requested", headers=CRON_H)
                                               for _ in range(2)])
        pings = sorted([first, second], key=lambda r: r.status_code, reverse=True)
        assert [p.status_code for p in pings] == [202, 200]
        a, b = pings[0].json(), pings[1].json()
        assert a["duplicate"] is False and b["duplicate"] is True and a["mode"] == b["mode"] == "dispatch"
        window_start = int(a["dispatchKey"].rsplit(":", 1)[1])
        assert window_start % 60 == 0 and a["eventId"] == f"cron:background/process.requested:{window_start}"
        assert b["eventId"] == a["eventId"] and b["dispatchKey"] == a["dispatchKey"] and b["pings"] == 2
        assert len(a["runs"]) == 1 and b["runs"] == []
        third = (await c.post("/api/v1/cron/background/process.requested?window=60", headers=CRON_H)).json()
        assert third["pings"] == 3
        runs = (await c.get("/api/v1/runs", params={"function": "tick"}, headers=ADMIN_H)).json()["runs"]
        assert [x["id"] for x in runs] == a["runs"] and runs[0]["event_id"] == a["eventId"]
        ev = (await c.get(f"/api/v1/events/{a['eventId']}", headers=ADMIN_H)).json()
        assert ev["name"] == "background/process.requested" and ev["data"]["window"] == 60


async def test_many_concurrent_pings_of_one_window_make_one_run(api_app):
    api_app.register()
    _not_near_window_end(3600)
    async with client(api_app.asgi()) as c:
        replies = await asyncio.gather(*[c.post("/api/v1/cron/background/process.requested?window=3600",
                                                headers=CRON_H) for _ in range(12)])
    assert sorted(r.status_code for r in replies) == [200] * 11 + [202]
    assert max(r.json()["pings"] for r in replies) == 12
    assert len(runs_of(api_app, function_id="tick")) == 1


# --- emergency inline fallback ---------------------------------------------------------------


def _unreachable_app(tmp_path, fallback: bool) -> durably.App:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the store's directory should be")
    s = Settings.load({"DURABLY_DATABASE_URL": f"sqlite:///{blocker}/durably.db", "DURABLY_ENV": "test",
                       "CRON_SECRET": CRON, "DURABLY_EVENT_KEY": EVENT_KEY, "DURABLY_ADMIN_TOKEN": ADMIN,
                       "DURABLY_INLINE_FALLBACK": "true" if fallback else "false"})
    return durably.App("inline", settings=s)


async def test_inline_fallback_runs_the_tick_when_the_store_is_down(tmp_path, caplog):
    app = _unreachable_app(tmp_path, fallback=True)
    calls: list[str] = []
    flaky = {"left": 1}

    @app.function(id="process", trigger=durably.on_event("background/process.requested"), retries=FAST)
    async def process(ctx):
        def work():
            calls.append(ctx.event.id)
            if flaky["left"]:
                flaky["left"] -= 1
                raise RuntimeError("transient")
            return len(calls)

        n = await ctx.step.run("work", work)
        await ctx.step.sleep("breathe", "10ms")
        return {"attempts": n, "tenant": ctx.tenant}

    @app.function(id="sync-one", trigger=durably.on_event("background/process.requested", if_="event.data.window == 60"))
    def sync_one(ctx):
        return ctx.step.run("double", lambda: 21 * 2)

    @app.function(id="other", trigger=durably.on_event("something.else"))
    async def other(ctx):
        calls.append("other")

    _not_near_window_end(60)
    caplog.set_level(logging.ERROR, logger="durably.server")
    async with client(app.asgi()) as c:
        r = await c.post("/api/v1/cron/background/process.requested", headers=CRON_H)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["mode"] == "inline" and body["duplicate"] is False
        results = {x["function_id"]: x for x in body["inline"]}
        assert set(results) == {"process", "sync-one"}
        assert results["process"]["status"] == "completed" and results["process"]["output"] == {
            "attempts": 2, "tenant": "global"}
        assert results["sync-one"]["output"] == 42
        assert calls == [body["eventId"], body["eventId"]]  # one failed attempt, one retry; "other" never ran
        again = await c.post("/api/v1/cron/background/process.requested", headers=CRON_H)
        assert again.status_code == 200 and again.json()["duplicate"] is True and again.json()["inline"] == []
        assert len(calls) == 2
        assert (await c.post("/api/v1/cron/background/process.requested")).status_code == 401
    logged = [json.loads(rec.getMessage()) for rec in caplog.records if "inline_fallback" in rec.getMessage()]
    assert len(logged) == 1 and logged[0]["dispatchKey"] == body["dispatchKey"] and logged[0]["error"]


async def test_without_the_fallback_or_the_code_an_unreachable_store_is_503(tmp_path):
    app = _unreachable_app(tmp_path, fallback=False)

    @app.function(id="process", trigger=durably.on_event("background/process.requested"))
    async def process(ctx):
        raise AssertionError("must not run")

    async with client(app.asgi()) as c:
        r = await c.post("/api/v1/cron/background/process.requested", headers=CRON_H)
        assert r.status_code == 503 and _err(r)["code"] == "store_unavailable"
        h = await c.get("/api/v1/health")
        assert h.status_code == 503 and h.json()["store"]["ok"] is False
    s = Settings.load({"DURABLY_DATABASE_URL": app.settings.database_url, "DURABLY_ENV": "test", "CRON_SECRET": CRON,
                       "DURABLY_EVENT_KEY": EVENT_KEY, "DURABLY_ADMIN_TOKEN": ADMIN, "DURABLY_INLINE_FALLBACK": "true"})
    async with client(create_app(s)) as c:  # `durably server`: no app code, so no inline fallback
        r = await c.post("/api/v1/cron/background/process.requested", headers=CRON_H)
        assert r.status_code == 503


# --- registry, status, health, metrics -------------------------------------------------------


async def test_functions_status_and_metrics(api_app):
    async with client(api_app.asgi()) as c:
        with running_worker(api_app):
            r = await c.post("/api/v1/events", json=[{"name": "api.greet"}, {"name": "api.nap", "data": {"client": "a"}}],
                             headers=EVENT_H)
            greet_run, nap_run = r.json()["runs"]
            await asyncio.to_thread(wait_run, api_app, greet_run)
            await asyncio.to_thread(wait_run, api_app, nap_run, ("sleeping",))
        fns = {f["id"]: f for f in (await c.get("/api/v1/functions", headers=ADMIN_H)).json()["functions"]}
        assert set(fns) == {"greet", "nap", "tick"}
        assert fns["greet"]["last_status"] == "completed" and fns["greet"]["last_run"]["id"] == greet_run
        assert fns["greet"]["triggers"] == [{"event": "api.greet", "if": None}]
        cron = fns["tick"]["triggers"][0]
        assert cron["cron"] == "0 9 * * *" and cron["tz"] == "Europe/Berlin" and "09:00" in cron["description"]
        assert fns["tick"]["next_run_at"] == cron["next_run_at"] and cron["next_run_at"].endswith("Z")
        assert fns["tick"]["last_cron_run"] is None and fns["nap"]["stats_24h"] == {"sleeping": 1}
        blob = (await c.get("/api/v1/status/global/greet", headers=ADMIN_H)).json()
        assert blob["status"] == "completed" and blob["runId"] == greet_run and blob["finishedAt"].endswith("Z")
        assert (await c.get("/api/v1/status/a/nap", headers=ADMIN_H)).json()["runId"] == nap_run
        r = await c.get("/api/v1/status/global/nobody", headers=ADMIN_H)
        assert r.status_code == 404
        await c.post("/api/v1/events", json={"name": "api.nap", "data": {"client": "b"}}, headers=EVENT_H)
        text = (await c.get("/metrics", headers=ADMIN_H)).text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in text_string_to_metric_families(text) for s in fam.samples}
    assert samples[("durably_store_up", ())] == 1
    assert samples[("durably_runs_finished_total", (("function", "greet"), ("status", "completed")))] == 1
    assert samples[("durably_runs_started_total", (("function", "nap"),))] == 1
    assert samples[("durably_retries_total", (("function", "greet"),))] == 1
    assert samples[("durably_runs", (("function", "nap"), ("status", "sleeping")))] == 1
    assert samples[("durably_queue_depth", (("function", "nap"),))] == 1
    assert samples[("durably_step_duration_seconds_count", (("function", "greet"),))] == 1
    assert samples[("durably_step_duration_seconds_bucket", (("function", "greet"), ("le", "+Inf")))] == 1
    # greet's step failed once, then succeeded: one finished step of 2 attempts
    assert samples[("durably_step_attempts_bucket", (("function", "greet"), ("le", "1.0")))] == 0
    assert samples[("durably_step_attempts_bucket", (("function", "greet"), ("le", "2.0")))] == 1
    assert samples[("durably_step_attempts_count", (("function", "greet"),))] == 1
    assert samples[("durably_step_attempts_sum", (("function", "greet"),))] == 2
    assert samples[("durably_http_requests_total", (("method", "POST"), ("route", "/api/v1/events"),
                                                    ("status", "200")))] == 2


async def test_dead_letters_and_status_sink_errors_in_metrics(api_app):
    @api_app.function(id="doomed", trigger=durably.on_event("doomed"), retries=0)
    async def doomed(ctx):
        raise durably.NonRetriableError("no")

    asgi = api_app.asgi()
    asgi.state.durably.metrics.cache_seconds = 0
    async with client(asgi) as c:
        with running_worker(api_app):
            rid = (await c.post("/api/v1/events", json={"name": "doomed"}, headers=EVENT_H)).json()["runs"][0]
            await asyncio.to_thread(wait_run, api_app, rid)
        api_app._status_sink_failed("redis", ConnectionError("down"))

        def sample(text: str, name: str, labels: dict) -> float | None:
            for fam in text_string_to_metric_families(text):
                for s in fam.samples:
                    if s.name == name and s.labels == labels:
                        return s.value
            return None

        text = (await c.get("/metrics", headers=ADMIN_H)).text
        assert sample(text, "durably_dead_letters", {"function": "doomed"}) == 1
        assert sample(text, "durably_status_sink_errors_total", {"sink": "redis"}) == 1
        await c.post(f"/api/v1/runs/{rid}/replay", headers=ADMIN_H)
        text = (await c.get("/metrics", headers=ADMIN_H)).text
        assert sample(text, "durably_dead_letters", {"function": "doomed"}) is None  # replayed: no longer dead


# --- mounted in a web app --------------------------------------------------------------------


async def test_app_asgi_mounted_under_durably_in_fastapi(api_app):
    from fastapi import FastAPI

    web = FastAPI()

    @web.get("/hello")
    def hello():
        return {"app": "web"}

    web.mount("/durably", api_app.asgi())
    async with client(web) as c:
        assert (await c.get("/hello")).json() == {"app": "web"}
        with running_worker(api_app):
            r = await c.post("/durably/api/v1/events", json={"name": "api.greet", "data": {"name": "Bo"}},
                             headers=EVENT_H)
            assert r.status_code == 200 and r.headers["x-durably-env"] == "test"
            run_id = r.json()["runs"][0]
            await asyncio.to_thread(wait_run, api_app, run_id)
        run = (await c.get(f"/durably/api/v1/runs/{run_id}", headers=ADMIN_H)).json()
        assert run["status"] == "completed" and run["output"] == {"text": "hello Bo"} and run["steps"]
        doc = (await c.get("/durably/openapi.json")).json()
        assert doc["servers"] == [{"url": "/durably"}] and "/api/v1/cron/{event_name}" in doc["paths"]
        r = await c.post("/durably/api/v1/cron/api.greet", headers=CRON_H)
        assert r.status_code == 202
        r = await c.get("/durably/api/v1/nothing", headers=ADMIN_H)
        assert r.status_code == 404 and _err(r)["code"] == "not_found"
