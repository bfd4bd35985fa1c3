"""With Redis as the status sink, runs that end outside a worker's execution (a cancel from
the CLI or API, a key expression failing at creation) still publish their final blob."""

from __future__ import annotations

import json
import uuid

import pytest
import redis

import durably
from durably.config import Settings
from durably.runtime import open_store
from tests.conftest import CI, REDIS_URL
from tests.helpers import make_app, running_worker, wait_for, wait_run


@pytest.fixture
def rds():
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        if CI:
            pytest.fail(f"Redis at {REDIS_URL} is unreachable in CI: {exc}")
        pytest.skip(f"Redis unreachable: {exc}")
    prefix = f"t{uuid.uuid4().hex[:8]}"
    yield client, prefix
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    client.close()


def test_cancel_and_creation_failures_reach_redis(store_url, rds):
    client, prefix = rds
    template = f"{prefix}:{{tenant}}:{{function}}"
    # env "test" is production here: the template (no {env}) is written as given, unprefixed.
    app = make_app(store_url, redis_url=REDIS_URL, status_key=template, production_env="test")

    @app.function(id="nap", trigger=durably.on_event("nap"), tenant="event.data.who")
    async def nap(ctx):
        await ctx.step.sleep("long", "1h")

    def blob(tenant):
        raw = client.get(f"{prefix}:{tenant}:nap")
        return json.loads(raw) if raw else None

    try:
        with running_worker(app):
            rid = app.send(durably.Event("nap", {"who": "ada"})).runs[0]
            wait_run(app, rid, ("sleeping",))
            wait_for(lambda: (blob("ada") or {}).get("status") == "running", 10, what="the running blob")
        # Cancelled from another process's store handle (what `durably runs cancel` does).
        settings = Settings.load({"DURABLY_DATABASE_URL": store_url, "DURABLY_ENV": "test",
                                  "DURABLY_REDIS_URL": REDIS_URL, "DURABLY_STATUS_KEY": template,
                                  "DURABLY_PRODUCTION_ENV": "test"})
        other = open_store(settings)
        try:
            assert other.cancel_run(rid, "cancelled by user").result()
        finally:
            other.close()  # the sink writes what it holds before it closes
        wait_for(lambda: (blob("ada") or {}).get("status") == "cancelled", 10, what="the cancelled blob")
        assert blob("ada")["runId"] == rid and blob("ada")["finishedAt"]
        # A tenant expression that fails on the event fails that run at creation: no worker involved.
        bad = app.send(durably.Event("nap", {"nobody": 1})).runs[0]
        wait_for(lambda: (blob("global") or {}).get("status") == "failed", 10, what="the failed blob")
        assert blob("global")["runId"] == bad and "who" in blob("global")["lastError"]
    finally:
        app.close()
