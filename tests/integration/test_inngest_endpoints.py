"""The Inngest SDKs' endpoints on both stores: sync (mapping, modified flag, refusals, keys)
and event ingest (ids, event key), through the real ASGI app."""

from __future__ import annotations

import hashlib

import pytest

import durably
from durably.config import Settings
from durably.server import create_app
from tests.helpers import asgi_client as client
from tests.helpers import make_app

pytestmark = pytest.mark.anyio

KEY = "signkey-prod-" + "0123456789abcdef" * 4
BEARER = {"Authorization": "Bearer " + hashlib.sha256(bytes.fromhex("0123456789abcdef" * 4)).hexdigest()}
URL = "http://127.0.0.1:9/api/inngest"


@pytest.fixture
def anyio_backend():
    return "asyncio"


def sync_payload(*fids: str) -> dict:
    return {"appname": "demo", "deploy_type": "ping", "framework": "fast_api", "sdk": "py:v0.5.19", "url": URL,
            "v": "0.1", "functions": [
                {"id": f, "name": f, "triggers": [{"event": "demo/go", "expression": "event.data.ok == true"}],
                 "steps": {"step": {"id": "step", "name": "step", "retries": {"attempts": 1},
                                    "runtime": {"type": "http", "url": f"{URL}?fnId={f}&stepId=step"}}}}
                for f in fids]}


def asgi_for(store_url: str, env: str = "dev", **extra: str):
    values = {"DURABLY_DATABASE_URL": store_url, "DURABLY_ENV": env, **extra}
    if env != "dev":
        values.update(DURABLY_EVENT_KEY="ek", DURABLY_ADMIN_TOKEN="at", CRON_SECRET="cs")
    return create_app(Settings.load(values))


async def test_sync_registers_answers_modified_and_events_start_runs(store_url):
    asgi = asgi_for(store_url)
    async with client(asgi) as c:
        r = await c.post("/fn/register", json=sync_payload("demo-a", "demo-b"))
        assert r.status_code == 200 and r.json() == {"ok": True, "status": 200, "modified": True, "app_id": "demo"}
        again = await c.post("/fn/register", json=sync_payload("demo-a", "demo-b"))
        assert again.json()["modified"] is False
        funcs = {f["id"]: f for f in (await c.get("/api/v1/functions")).json()["functions"]}
        assert {"demo-a", "demo-b"} <= set(funcs)
        r = await c.post("/e/NO_EVENT_KEY_SET", json=[{"name": "demo/go", "data": {"ok": True}, "id": ""},
                                                      {"name": "demo/go", "data": {"ok": False}}])
        assert r.status_code == 200 and r.json()["status"] == 200 and len(r.json()["ids"]) == 2
        first = (await c.get(f"/api/v1/events/{r.json()['ids'][0]}")).json()
        assert sorted(run["function_id"] for run in first["runs"]) == ["demo-a", "demo-b"]
        second = (await c.get(f"/api/v1/events/{r.json()['ids'][1]}")).json()
        assert second["runs"] == []  # the trigger's expression is false
        bad = await c.post("/e/k", json={"name": "durably/function.failed", "data": {}})
        assert bad.status_code == 400 and "reserved" in bad.json()["error"]
    asgi.state.durably.runtime.close()


async def test_a_sync_never_takes_a_native_function_s_id(store_url):
    app = make_app(store_url, "native", env="dev")

    @app.function(id="demo-a", trigger=durably.on_event("native/x"))
    async def native(ctx):
        return 1

    app.register()
    app.close()
    asgi = asgi_for(store_url)
    async with client(asgi) as c:
        r = await c.post("/fn/register", json=sync_payload("demo-a"))
        assert r.status_code == 400 and "belong to a durably app's own functions" in r.json()["error"]
        funcs = {f["id"]: f for f in (await c.get("/api/v1/functions")).json()["functions"]}
        assert "native/x" in str(funcs["demo-a"]) and "demo/go" not in str(funcs["demo-a"])  # untouched
    asgi.state.durably.runtime.close()


async def test_outside_dev_the_signing_key_and_the_event_key_are_required(store_url):
    unsigned = asgi_for(store_url, env="production")
    async with client(unsigned) as c:
        r = await c.post("/fn/register", json=sync_payload("demo-a"))
        assert r.status_code == 401 and "DURABLY_INNGEST_SIGNING_KEY" in r.json()["error"]
    unsigned.state.durably.runtime.close()
    signed = asgi_for(store_url, env="production", DURABLY_INNGEST_SIGNING_KEY=KEY)
    async with client(signed) as c:
        wrong = await c.post("/fn/register", json=sync_payload("demo-a"), headers={"Authorization": "Bearer 00"})
        assert wrong.status_code == 401 and "not DURABLY_INNGEST_SIGNING_KEY" in wrong.json()["error"]
        ok = await c.post("/fn/register", json=sync_payload("demo-a"), headers=BEARER)
        assert ok.status_code == 200 and ok.json()["ok"] is True
        prefixed = {"Authorization": BEARER["Authorization"].replace("Bearer ", "Bearer signkey-prod-")}
        assert (await c.post("/fn/register", json=sync_payload("demo-a"), headers=prefixed)).status_code == 200
        bad = await c.post("/e/wrong", json={"name": "demo/go", "data": {"ok": True}})
        assert bad.status_code == 401 and bad.json() == {"ids": [], "status": 401, "error": "Event key not found"}
        events = (await c.get("/api/v1/events", headers={"Authorization": "Bearer at"})).json()["events"]
        assert events == []
        good = await c.post("/e/ek", json={"name": "demo/go", "data": {"ok": True}})
        assert good.status_code == 200 and len(good.json()["ids"]) == 1
        assert (await c.get("/v0/runs/nope/batch")).status_code == 401
        assert (await c.get("/v0/runs/nope/batch", headers=BEARER)).status_code == 404
    signed.state.durably.runtime.close()


async def test_a_checkpoint_reaches_only_the_call_in_flight_and_is_checked(store_url):
    """``POST /v1/checkpoint/{run}/async``: steps for a call this process is not making are a
    404 (the SDK then reports them in its answer), a malformed body a 400, and outside dev the
    app's bearer is required."""
    from durably.inngest.driver import CHECKPOINTS

    got: list[list[dict]] = []

    async def record(steps: list[dict]) -> None:
        got.append(steps)

    signed = asgi_for(store_url, env="production", DURABLY_INNGEST_SIGNING_KEY=KEY)
    qi_id = CHECKPOINTS.open("run-1", record)
    try:
        async with client(signed) as c:
            steps = [{"op": "StepRun", "id": "a"}, {"op": "StepRun", "id": "b"}]
            body = {"run_id": "run-1", "fn_id": "f", "qi_id": qi_id, "steps": steps}
            assert (await c.post("/v1/checkpoint/run-1/async", json=body)).status_code == 401
            r = await c.post("/v1/checkpoint/run-1/async", json=body, headers=BEARER)
            assert r.status_code == 200 and got == [steps], r.text
            other = await c.post("/v1/checkpoint/run-2/async", json=body, headers=BEARER)
            assert other.status_code == 404 and got == [steps]
            gone = await c.post("/v1/checkpoint/run-1/async", json={**body, "qi_id": "another"}, headers=BEARER)
            assert gone.status_code == 404
            for bad in ({"qi_id": qi_id}, {"qi_id": qi_id, "steps": [1]}, {"steps": []}, [1]):
                r = await c.post("/v1/checkpoint/run-1/async", json=bad, headers=BEARER)
                assert r.status_code == 400, (bad, r.text)
            assert got == [steps]
    finally:
        CHECKPOINTS.close(qi_id)
        signed.state.durably.runtime.close()
    unsigned = asgi_for(store_url, env="production")
    async with client(unsigned) as c:  # no signing key outside dev
        assert (await c.post("/v1/checkpoint/run-1/async", json={})).status_code == 401
    unsigned.state.durably.runtime.close()
