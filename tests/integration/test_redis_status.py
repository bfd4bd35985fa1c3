"""Status blobs in Redis (DESIGN §5): written on start and end; a Redis outage never fails
or blocks a run, and the blobs catch up once Redis is back. Uses a private redis-server,
killed and restarted on the same port."""

from __future__ import annotations

import json
import threading

import pytest

import durably
from durably.health import collect
from durably.status import RedisStatusSink
from tests.helpers import running_worker, wait_for, wait_run
from tests.redis_server import RedisServer


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(str(tmp_path))
    server.start()
    yield server
    server.kill()


def _get(server: RedisServer, key: str):
    raw = server.client().get(key)
    return json.loads(raw) if raw is not None else None


def test_sink_keeps_the_latest_blob_per_key_through_an_outage(redis_server):
    sink = RedisStatusSink(redis_server.url, env="test", template="durably:{env}:job:v1:{tenant}:{function}",
                           retry_interval=0.05)
    errors: list[BaseException] = []
    sink.on_error = errors.append
    try:
        sink.put("c1", "f", {"status": "running"})
        assert sink.flush(5)
        assert _get(redis_server, "durably:test:job:v1:c1:f") == {"status": "running"}
        redis_server.kill()
        for i in range(50):  # returns at once: nothing waits for Redis
            sink.put("c1", "f", {"status": "running", "i": i})
        sink.put("c2", "f", {"status": "completed"})
        wait_for(lambda: sink.failures > 0, 10, what="a failed write")
        assert not sink.flush(0.2) and sink.pending == 2 and errors and not sink.healthy
        redis_server.start()
        assert sink.flush(10)
        assert _get(redis_server, "durably:test:job:v1:c1:f") == {"status": "running", "i": 49}
        assert _get(redis_server, "durably:test:job:v1:c2:f") == {"status": "completed"}
        assert sink.healthy and sink.pending == 0
    finally:
        sink.close()


def test_sink_pending_map_is_bounded(redis_server):
    redis_server.kill()
    sink = RedisStatusSink(redis_server.url, env="e", template="{tenant}:{function}", max_pending=3, retry_interval=5)
    try:
        for i in range(5):
            sink.put(f"t{i}", "f", {"i": i})
        assert sink.pending == 3 and sink.dropped == 2
        redis_server.start()
        assert sink.flush(10)
        assert [_get(redis_server, f"t{i}:f") for i in range(5)] == [None, None, {"i": 2}, {"i": 3}, {"i": 4}]
    finally:
        sink.close()


def test_runs_complete_while_redis_is_down_and_blobs_catch_up(app_factory, redis_server):
    app = app_factory(redis_url=redis_server.url, status_key="job:v1:{tenant}:{function}")
    gate = threading.Event()

    @app.function(id="recompute", trigger=durably.on_event("go"), tenant="event.data.clientId")
    async def recompute(ctx):
        await ctx.step.run("hold", lambda: gate.wait(20))
        return "done"

    key = "test:job:v1:c1:recompute"  # a template without {env}, outside production: prefixed with the env
    with running_worker(app):
        rid = app.send(durably.Event("go", {"clientId": "c1"})).runs[0]
        running = wait_for(lambda: _get(redis_server, key), 10, what="the running blob in Redis")
        assert running["status"] == "running" and running["runId"] == rid
        redis_server.kill()  # Redis stopped mid-run
        gate.set()
        run = wait_run(app, rid)
        assert run["status"] == "completed"
        wait_for(lambda: app.status_sink.failures > 0, 10, what="the sink to notice Redis is down")
        report = collect(app.settings, app.store)
        assert report["redis"]["ok"] is False and report["ok"] is False
        redis_server.start()
        done = wait_for(lambda: (lambda b: b if b and b["status"] == "completed" else None)(_get(redis_server, key)),
                        10, what="the final blob to catch up")
        assert done["runId"] == rid and done["finishedAt"] and done["durationMs"] is not None
    # With Redis configured, the store keeps no blobs.
    assert app.store.get_status("c1", "recompute").result() is None


def test_failed_and_retrying_blobs_go_to_redis(app_factory, redis_server):
    app = app_factory(redis_url=redis_server.url)
    attempts: list[int] = []

    @app.function(id="flaky", trigger=durably.on_event("go"),
                  retries=durably.Retry(attempts=2, initial="300ms", jitter=False))
    async def flaky(ctx):
        attempts.append(ctx.attempt)
        raise RuntimeError(f"boom {len(attempts)}")

    key = "durably:test:job:v1:global:flaky"
    seen: list[str] = []
    with running_worker(app):
        rid = app.send(durably.Event("go")).runs[0]
        wait_for(lambda: (lambda b: b and (seen.append(b["status"]) or b["status"] == "retrying"))(
            _get(redis_server, key)), 10, interval=0.005, what="a retrying blob")
        wait_run(app, rid)
        final = wait_for(lambda: (lambda b: b if b and b["status"] == "failed" else None)(_get(redis_server, key)), 10,
                         what="the failed blob")
    assert final["runId"] == rid and "boom 2" in final["lastError"] and final["attempt"] == 2  # 1-based: the second attempt


def test_status_cli_reads_redis(app_factory, redis_server, store_url):
    from tests.helpers import cli_env, run_cli

    app = app_factory(redis_url=redis_server.url)

    @app.function(id="job", trigger=durably.on_event("go"))
    async def job(ctx):
        return 1

    with running_worker(app):
        rid = app.send(durably.Event("go")).runs[0]
        wait_run(app, rid)
        wait_for(lambda: (_get(redis_server, "durably:test:job:v1:global:job") or {}).get("status") == "completed", 10,
                 what="the final blob")
    env = cli_env(store_url, DURABLY_REDIS_URL=redis_server.url)
    r = run_cli(["status", "global", "job"], env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["runId"] == rid
    redis_server.kill()
    r = run_cli(["status", "global", "job"], env)
    assert r.returncode == 1 and r.stderr.startswith("error: Redis at ") and len(r.stderr.strip().splitlines()) == 1
