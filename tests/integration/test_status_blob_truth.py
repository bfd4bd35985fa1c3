"""Status blobs that tell the truth (DESIGN §5), in real Redis: written at every failed attempt,
``attempt`` 1-based and equal to the ledger's at the end, ``retrying`` with ``lastError`` while a
retry waits out its backoff; a template without ``{env}`` is prefixed with the env outside
DURABLY_PRODUCTION_ENV; ``durably status`` and the API read with the template the function
registered."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
import redis

import durably
from durably.config import Settings
from durably.runtime import Runtime
from durably.testing import TestClock
from tests.conftest import REDIS_URL
from tests.helpers import cli_env, run_cli, running_worker, wait_for, wait_run

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def env():
    """A fresh env name; its keys in the shared Redis are deleted after the test."""
    name = f"t{uuid.uuid4().hex[:8]}"
    yield name
    r = redis.Redis.from_url(REDIS_URL)
    for pattern in (f"*{name}*",):
        for key in r.scan_iter(pattern):
            r.delete(key)


def _blob(key: str) -> dict | None:
    raw = redis.Redis.from_url(REDIS_URL).get(key)
    return json.loads(raw) if raw is not None else None


def _wait_blob(key: str, want, what: str) -> dict:
    return wait_for(lambda: (lambda b: b if b is not None and want(b) else None)(_blob(key)), 20, what=what)


def test_every_failed_attempt_is_written_retrying_with_its_error(tmp_path, env):
    """A step fails twice, then succeeds, with a backoff of an hour on a clock the test moves:
    during each backoff the blob reads ``retrying`` with that attempt's number and error."""
    s = Settings.load({"DURABLY_DATABASE_URL": f"sqlite:///{tmp_path}/d.db", "DURABLY_ENV": env,
                       "DURABLY_REDIS_URL": REDIS_URL})
    app = durably.App("truth", settings=s)
    tries = {"n": 0}

    @app.function(id="flaky", trigger=durably.on_event("truth.go"), tenant="event.data.client",
                  retries=durably.Retry(attempts=5, initial="1h", max="1h", jitter=False))
    async def flaky(ctx):
        def work():
            tries["n"] += 1
            if tries["n"] <= 2:
                raise RuntimeError(f"boom {tries['n']}")
            return "ok"

        return await ctx.step.run("work", work)

    clock = TestClock()
    app.bind(Runtime.open(s, clock=clock, app_id=app.id, functions=app.functions))
    key = f"durably:{env}:job:v1:c1:flaky"
    try:
        with running_worker(app, poll_interval=0.2):
            rid = app.send(durably.Event("truth.go", {"client": "c1"})).runs[0]
            for n in (1, 2):
                b = _wait_blob(key, lambda b, n=n: b["status"] == "retrying" and b["attempt"] == n,
                               f"the blob of failed attempt {n}")
                assert b["runId"] == rid and b["lastError"] == f"RuntimeError: boom {n}", b
                assert b["finishedAt"] is None
                clock.advance(3601)
                app.store.wake()
            b = _wait_blob(key, lambda b: b["status"] == "completed", "the blob of the end")
            run = wait_run(app, rid)
        assert run["status"] == "completed"
        step_attempts = max(st["attempts"] for st in run["steps"])
        assert step_attempts == 3 and b["attempt"] == 3 and b["lastError"] is None
    finally:
        app.close()


def test_at_the_end_the_blob_attempt_is_the_ledgers(store_url, env):
    """On both stores: a step that fails twice (fast retries) and a run that fails for good;
    the blob's attempt is the largest attempts of the run's steps, never 0."""
    s = Settings.load({"DURABLY_DATABASE_URL": store_url, "DURABLY_ENV": env, "DURABLY_REDIS_URL": REDIS_URL})
    app = durably.App("truth", settings=s)
    tries = {"ok": 0, "bad": 0}
    fast = durably.Retry(attempts=4, initial="10ms", max="20ms", jitter=False)

    @app.function(id="recovers", trigger=durably.on_event("truth.recovers"), retries=fast)
    async def recovers(ctx):
        await ctx.step.run("first", lambda: 1)

        def second():
            tries["ok"] += 1
            if tries["ok"] <= 2:
                raise RuntimeError("not yet")
            return 2

        return await ctx.step.run("second", second)

    @app.function(id="gives-up", trigger=durably.on_event("truth.gives-up"), retries=fast)
    async def gives_up(ctx):
        def never():
            tries["bad"] += 1
            raise RuntimeError(f"no {tries['bad']}")

        return await ctx.step.run("never", never)

    @app.function(id="no-steps", trigger=durably.on_event("truth.no-steps"))
    async def no_steps(ctx):
        return "done"

    try:
        with running_worker(app):
            runs = {fid: app.send(durably.Event(f"truth.{fid}")).runs[0] for fid in ("recovers", "gives-up", "no-steps")}
            ended = {fid: wait_run(app, rid) for fid, rid in runs.items()}
            sink = app.status_sink
            assert sink.flush(10)
        for fid, run in ended.items():
            b = _blob(f"durably:{env}:job:v1:global:{fid}")
            assert b is not None and b["runId"] == run["id"] and b["status"] == run["status"], (fid, b)
            want = max((st["attempts"] for st in run["steps"]), default=(run["attempt"] or 0) + 1)
            assert b["attempt"] == want, (fid, b, want)
        assert [ended[f]["status"] for f in ("recovers", "gives-up", "no-steps")] == ["completed", "failed", "completed"]
        assert _blob(f"durably:{env}:job:v1:global:recovers")["attempt"] == 3
        failed = _blob(f"durably:{env}:job:v1:global:gives-up")
        assert failed["attempt"] == 4 and failed["lastError"].startswith("StepError") and "no 4" in failed["lastError"]
        assert _blob(f"durably:{env}:job:v1:global:no-steps")["attempt"] == 1
    finally:
        app.close()


# --- env prefix and registered templates ----------------------------------------------------------


SEED_TEMPLATE = "job:v1:{tenant}:{function}"  # the seeds' key: no {env}


@pytest.mark.parametrize("production", [False, True], ids=["preview", "production"])
def test_a_template_without_env_is_prefixed_outside_production(tmp_path, env, production):
    extra = {"DURABLY_PRODUCTION_ENV": env} if production else {}
    s = Settings.load({"DURABLY_DATABASE_URL": f"sqlite:///{tmp_path}/d.db", "DURABLY_ENV": env,
                       "DURABLY_REDIS_URL": REDIS_URL, "DURABLY_STATUS_KEY": SEED_TEMPLATE, **extra})
    app = durably.App("prefix", settings=s)
    tenant = f"c-{env}"

    @app.function(id="recompute", trigger=durably.on_event("prefix.go"), tenant="event.data.client")
    async def recompute(ctx):
        return 1

    try:
        with running_worker(app):
            wait_run(app, app.send(durably.Event("prefix.go", {"client": tenant})).runs[0])
            assert app.status_sink.flush(10)
        exact = f"job:v1:{tenant}:recompute"
        if production:
            assert _blob(exact)["status"] == "completed"  # the seeds' exact name in production
            assert _blob(f"{env}:{exact}") is None
        else:
            assert _blob(exact) is None  # a preview process never writes the key production reads
            assert _blob(f"{env}:{exact}")["status"] == "completed"
    finally:
        app.close()
        redis.Redis.from_url(REDIS_URL).delete(f"job:v1:{tenant}:recompute")


async def test_status_readers_use_the_template_the_function_registered(tmp_path, env):
    """The worker writes with DURABLY_STATUS_KEY=job:v1:...; `durably status` and the API, run
    without that variable, find the key through the registry."""
    url = f"sqlite:///{tmp_path}/d.db"
    s = Settings.load({"DURABLY_DATABASE_URL": url, "DURABLY_ENV": env, "DURABLY_REDIS_URL": REDIS_URL,
                       "DURABLY_STATUS_KEY": SEED_TEMPLATE, "DURABLY_ADMIN_TOKEN": "adm"})
    app = durably.App("registered", settings=s)

    @app.function(id="recompute", trigger=durably.on_event("registered.go"), tenant="event.data.client")
    async def recompute(ctx):
        return 1

    try:
        with running_worker(app):
            rid = app.send(durably.Event("registered.go", {"client": "p1"})).runs[0]
            wait_run(app, rid)
            assert app.status_sink.flush(10)
        assert _blob(f"{env}:job:v1:p1:recompute")["runId"] == rid
        r = run_cli(["status", "p1", "recompute"], cli_env(url, env=env, DURABLY_REDIS_URL=REDIS_URL))
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["runId"] == rid
        reader = Settings.load({"DURABLY_DATABASE_URL": url, "DURABLY_ENV": env, "DURABLY_REDIS_URL": REDIS_URL,
                                "DURABLY_ADMIN_TOKEN": "adm", "DURABLY_EVENT_KEY": "ek", "CRON_SECRET": "cs"})
        from durably.server import create_app

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(reader)),
                                     base_url="http://t") as c:
            got = await c.get("/api/v1/status/p1/recompute", headers={"Authorization": "Bearer adm"})
        assert got.status_code == 200 and got.json()["runId"] == rid, got.text
    finally:
        app.close()
