"""Bulk cancel by filter (status, tenant, time, a CEL `if` over the event, limit, dry run)
through admin, the HTTP API and the CLI, on both stores."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

import durably
from durably import admin
from durably.errors import InvalidInput, UnknownFunction
from tests.helpers import cli_env, make_app, run_cli

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def plans_app(store_url: str, env: str = "test") -> durably.App:
    app = make_app(store_url, "bulk", env=env)

    @app.function(id="sync-plan", trigger=durably.on_event("plan.sync"), tenant="event.data.client")
    async def sync_plan(ctx):
        await ctx.step.sleep("later", "1h")

    @app.function(id="other", trigger=durably.on_event("other"))
    async def other(ctx):
        return None

    return app


def seed(app: durably.App) -> dict[str, str]:
    runs = {}
    for client, plan in (("a", "free"), ("b", "free"), ("c", "pro"), ("a", "pro")):
        (rid,) = app.send(durably.Event("plan.sync", {"client": client, "plan": plan})).runs
        runs[f"{client}-{plan}"] = rid
    app.send(durably.Event("other"))
    return runs


async def test_filters_dry_run_and_cancel(store_url):
    app = plans_app(store_url)
    runs = seed(app)
    store = app.store
    dry = await admin.bulk_cancel(store, function_id="sync-plan", if_="event.data.plan == 'free'", dry_run=True)
    assert dry["dry_run"] and dry["count"] == 2
    assert {r["id"] for r in dry["runs"]} == {runs["a-free"], runs["b-free"]}
    assert all(store.get_run(r).result()["status"] == "queued" for r in runs.values())  # a dry run changes nothing

    by_tenant = await admin.bulk_cancel(store, function_id="sync-plan", tenant="a", if_="event.data.plan == 'pro'")
    assert by_tenant["count"] == 1 and by_tenant["runs"][0]["id"] == runs["a-pro"]
    assert store.get_run(runs["a-pro"]).result()["status"] == "cancelled"

    rest = await admin.bulk_cancel(store, function_id="sync-plan", status="queued", limit=2)
    assert rest["count"] == 2  # newest first: c-pro, b-free
    assert {r["id"] for r in rest["runs"]} == {runs["c-pro"], runs["b-free"]}
    again = await admin.bulk_cancel(store, function_id="sync-plan")
    assert again["count"] == 1 and again["runs"][0]["id"] == runs["a-free"]
    assert (await admin.bulk_cancel(store, function_id="sync-plan"))["count"] == 0
    others = store.list_runs(function_id="other").result()
    assert [r["status"] for r in others] == ["queued"]  # another function's runs are untouched
    app.close()


async def test_bad_filters_are_clear_errors(store_url):
    app = plans_app(store_url)
    app.runtime.registry.register().result()
    for kwargs, match in (({"status": "completed"}, "cannot be cancelled"), ({"limit": 0}, "limit"),
                          ({"if_": "event.data.plan =="}, "CEL|expression"), ({"if_": " "}, "if:")):
        with pytest.raises(InvalidInput, match=match):
            await admin.bulk_cancel(app.store, function_id="sync-plan", **kwargs)
    with pytest.raises(UnknownFunction, match="no function .nope."):
        await admin.bulk_cancel(app.store, function_id="nope")
    app.close()


async def test_the_http_api(store_url):
    app = plans_app(store_url, env="dev")
    runs = seed(app)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app.asgi()), base_url="http://t") as c:
        r = await c.post("/api/v1/cancellations", json={"function": "sync-plan", "if": "event.data.plan == 'pro'",
                                                         "dry_run": True})
        assert r.status_code == 200 and r.json()["count"] == 2 and r.json()["dry_run"] is True
        r = await c.post("/api/v1/cancellations", json={"function": "sync-plan", "tenant": "c"})
        assert r.status_code == 200 and r.json()["count"] == 1 and r.json()["runs"][0]["id"] == runs["c-pro"]
        for body in ({"function": "sync-plan", "status": "failed"}, {"function": "sync-plan", "limit": 5000},
                     {"function": "sync-plan", "if": "event.data.plan =="}, {}, {"function": "sync-plan", "x": 1},
                     {"function": "a\u0000b"}):
            bad = await c.post("/api/v1/cancellations", json=body)
            assert bad.status_code == 400 and bad.json()["error"]["code"] in ("invalid_input", "expression_error"), body
        missing = await c.post("/api/v1/cancellations", json={"function": "nope"})
        assert missing.status_code == 404
    assert app.store.get_run(runs["c-pro"]).result()["status"] == "cancelled"
    app.close()


def test_the_cli(store_url):
    app = plans_app(store_url)
    runs = seed(app)
    env = cli_env(store_url)
    dry = run_cli(["runs", "cancel", "--function", "sync-plan", "--if", "event.data.plan == 'free'", "--dry-run",
                   "--json"], env)
    assert dry.returncode == 0, dry.stderr
    assert {r["id"] for r in json.loads(dry.stdout)["runs"]} == {runs["a-free"], runs["b-free"]}
    done = run_cli(["runs", "cancel", "--function", "sync-plan", "--tenant", "a"], env)
    assert done.returncode == 0 and "cancelled 2 run(s) of sync-plan" in done.stdout, done.stdout + done.stderr
    both = run_cli(["runs", "cancel", runs["b-free"], "--function", "sync-plan"], env)
    assert both.returncode != 0 and "not both" in both.stderr
    one = run_cli(["runs", "cancel", runs["b-free"]], env)
    assert one.returncode == 0 and f"cancelled {runs['b-free']}" in one.stdout
    statuses = {k: app.store.get_run(v).result()["status"] for k, v in runs.items()}
    assert statuses == {"a-free": "cancelled", "b-free": "cancelled", "c-pro": "queued", "a-pro": "cancelled"}
    app.close()
    asyncio.set_event_loop(None)
