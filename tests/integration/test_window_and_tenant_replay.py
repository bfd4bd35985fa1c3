"""The cron endpoint answers ``duplicate: true`` when the window's event id exists already,
however it got there; bulk replay by tenant (DESIGN §4: ``durably replay --tenant``, the API's
``{"tenant"}``). On both stores."""

from __future__ import annotations

import json
import time

import pytest

import durably
from tests.helpers import asgi_client as client
from tests.helpers import cli_env, make_app, run_cli, runs_of, wait_for, wait_run

pytestmark = pytest.mark.anyio

EVENT_KEY, ADMIN, CRON = "ek-w", "at-w", "cs-w"
ADMIN_H = {"Authorization": f"Bearer {ADMIN}"}
CRON_H = {"Authorization": f"Bearer {CRON}"}
TICK = "background/process.requested"


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_a_window_whose_event_exists_already_is_a_duplicate(store_url):
    app = make_app(store_url, "window", event_key=EVENT_KEY, admin_token=ADMIN, cron_secret=CRON)

    @app.function(id="tick", trigger=durably.on_event(TICK))
    async def tick(ctx):
        return 1

    try:
        wait_for(lambda: time.time() % 3600 < 3600 - 30, 3600, interval=0.2, what="the start of a fresh window")
        window_start = int(time.time() // 3600) * 3600
        event_id = f"cron:{TICK}:{window_start}"
        sent = app.send(durably.Event(TICK, id=event_id))  # the window's event, sent some other way
        assert len(sent.runs) == 1
        async with client(app.asgi()) as c:
            r = await c.post(f"/api/v1/cron/{TICK}?window=3600", headers=CRON_H)
            assert r.status_code == 200, r.text
            assert r.json()["duplicate"] is True and r.json()["eventId"] == event_id and r.json()["runs"] == []
            again = await c.post(f"/api/v1/cron/{TICK}?window=3600", headers=CRON_H)
            assert again.status_code == 200 and again.json()["duplicate"] is True
        assert [r["id"] for r in runs_of(app, function_id="tick")] == sent.runs
    finally:
        app.close()


async def test_bulk_replay_by_tenant(store_url):
    app = make_app(store_url, "replay", event_key=EVENT_KEY, admin_token=ADMIN, cron_secret=CRON)

    @app.function(id="sync", trigger=durably.on_event("replay.sync"), tenant="event.data.client")
    async def sync(ctx):
        raise durably.NonRetriableError("upstream down")

    try:
        sent = {c: [app.send(durably.Event("replay.sync", {"client": c})).runs[0] for _ in range(n)]
                for c, n in (("c1", 2), ("c2", 1), ("c3", 1))}
        from tests.helpers import running_worker

        with running_worker(app):
            for rids in sent.values():
                for rid in rids:
                    assert wait_run(app, rid)["status"] == "failed"
        async with client(app.asgi()) as c:
            dry = await c.post("/api/v1/replay", json={"function": "sync", "tenant": "c1", "dry_run": True},
                               headers=ADMIN_H)
            assert dry.status_code == 200, dry.text
            assert sorted(r["id"] for r in dry.json()["runs"]) == sorted(sent["c1"])
            done = await c.post("/api/v1/replay", json={"function": "sync", "tenant": "c1"}, headers=ADMIN_H)
            assert done.status_code == 201, done.text
            replays = [r["replay_id"] for r in done.json()["runs"]]
            assert len(replays) == 2 and all(replays)
            bad = await c.post("/api/v1/replay", json={"function": "sync", "tenant": "a\x00b"}, headers=ADMIN_H)
            assert bad.status_code == 400
        assert {app.store.get_run(r).result()["tenant"] for r in replays} == {"c1"}
        cli = run_cli(["replay", "--function", "sync", "--tenant", "c2", "--json"], cli_env(store_url))
        assert cli.returncode == 0, cli.stderr
        out = json.loads(cli.stdout)
        assert [r["id"] for r in out["runs"]] == sent["c2"]
        assert app.store.get_run(out["runs"][0]["replay_id"]).result()["tenant"] == "c2"
        # c3 was never asked for: nothing of it was replayed.
        assert len(runs_of(app, tenant="c3")) == 1
    finally:
        app.close()
