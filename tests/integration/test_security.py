"""Isolation and credentials (DESIGN §3, §4, §5): status-blob keys that cannot collide across
(tenant, function), one tenant rule from creation to every reader, credentials compared byte
for byte, and ``X-Content-Type-Options: nosniff`` on every response. On both stores."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import uuid
from urllib.parse import quote

import httpx
import pytest
import redis

import durably
from durably.core.blobs import redis_key
from durably.core.ids import new_id
from durably.core.records import NewRun
from durably.errors import InvalidInput
from tests.conftest import CI, REDIS_URL
from tests.helpers import cli_env, make_app, run_cli, running_worker, wait_for, wait_run

pytestmark = pytest.mark.anyio

EVENT_KEY, ADMIN, CRON = "ek-Sec-1", "at-Sec-1", "cs-Sec-1"
KEYS = {"event_key": EVENT_KEY, "admin_token": ADMIN, "cron_secret": CRON}


@pytest.fixture
def anyio_backend():
    return "asyncio"


def client(asgi) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://testserver")


def bearer(token: bytes) -> dict:
    return {"Authorization": b"Bearer " + token}


ADMIN_H = bearer(ADMIN.encode())


def _one_line_error(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    msg = r.json()["error"]["message"]
    assert "\n" not in msg
    return msg


async def _login(c, token: str = ADMIN) -> httpx.Response:
    """POST the login form as a browser does (its CSRF token first); the session cookie stays on ``c``."""
    page = await c.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    return await c.post("/login", data={"csrf": csrf, "token": token, "next": "/"})


@pytest.fixture
def rds():
    client_ = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        client_.ping()
    except redis.RedisError as exc:
        if CI:
            pytest.fail(f"Redis at {REDIS_URL} is unreachable in CI: {exc}")
        pytest.skip(f"Redis unreachable: {exc}")
    prefix = f"t{uuid.uuid4().hex[:8]}"
    yield client_, prefix
    for key in client_.scan_iter(f"{prefix}:*"):
        client_.delete(key)
    client_.close()


# --- keys that cannot collide ----------------------------------------------------------------


def test_a_function_id_with_a_colon_is_refused_at_declaration_and_registration(store_url):
    app = make_app(store_url)
    try:
        with pytest.raises(InvalidInput) as exc:
            @app.function(id="x:blob", trigger=durably.on_event("go"))
            async def bad(ctx):
                return 1
        assert "':'" in str(exc.value) and "\n" not in str(exc.value)
        # A registry entry written by anything else (another SDK, an old worker) is refused too.
        config = {"id": "y:blob", "name": "y:blob", "triggers": [{"event": "go"}]}
        with pytest.raises(InvalidInput):
            app.store.register("other", [config]).result()
        assert app.store.read("get_function", "y:blob").result() is None
    finally:
        app.close()


def test_keys_encode_percent_and_colon_in_the_tenant_only():
    seeds = "job:v1:{clientId}:{jobName}"
    assert redis_key(seeds, "production", "c1", "inbox-counts-recompute") == "job:v1:c1:inbox-counts-recompute"
    tmpl = "durably:{env}:job:v1:{tenant}:{function}"
    assert redis_key(tmpl, "production", "a:x", "blob") == "durably:production:job:v1:a%3Ax:blob"
    assert redis_key(tmpl, "production", "a%3Ax", "blob") == "durably:production:job:v1:a%253Ax:blob"
    assert redis_key(tmpl, "production", "a/b é", "blob") == "durably:production:job:v1:a/b é:blob"


# Tenants chosen to collide: before the fix `a:x` of `blob` and `a` of `x:blob` shared one key;
# encoding only ':' would make `a:x` and `a%3Ax` share one.
COLLIDING = ["a:x", "a%3Ax", "a", "a/b", "%"]


def _run_blobs(app, fn_id: str = "blob") -> dict[str, str]:
    @app.function(id=fn_id, trigger=durably.on_event("blob.go"), tenant="event.data.t")
    async def blob(ctx):
        return ctx.tenant

    runs = {}
    with running_worker(app):
        for t in COLLIDING:
            runs[t] = app.send(durably.Event("blob.go", {"t": t})).runs[0]
        for t, rid in runs.items():
            assert wait_run(app, rid)["status"] == "completed"
    return runs


async def _check_status_reads(app, runs: dict[str, str], store_url: str, **env: str) -> None:
    async with client(app.asgi()) as c:
        for t, rid in runs.items():
            r = await c.get(f"/api/v1/status/{quote(t, safe='')}/blob", headers=ADMIN_H)
            assert r.status_code == 200, (t, r.text)
            assert r.json()["runId"] == rid and r.json()["status"] == "completed", t
        _one_line_error(await c.get("/api/v1/status/nobody/blob", headers=ADMIN_H), 404)
    cenv = cli_env(store_url, **env)
    for t in ("a:x", "a%3Ax"):
        r = run_cli(["status", t, "blob"], cenv)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["runId"] == runs[t]
    r = run_cli(["status", "", "blob"], cenv)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1


async def test_colliding_tenants_keep_their_own_blob_in_redis(store_url, rds):
    rc, prefix = rds
    template = f"{prefix}:{{tenant}}:{{function}}"
    app = make_app(store_url, redis_url=REDIS_URL, status_key=template, **KEYS)
    try:
        runs = _run_blobs(app)
        want = {f"{prefix}:a%3Ax:blob", f"{prefix}:a%253Ax:blob", f"{prefix}:a:blob", f"{prefix}:a/b:blob",
                f"{prefix}:%25:blob"}
        assert app.status_sink.flush(10)
        keys = wait_for(lambda: (lambda ks: ks if ks == want else None)(
            {k.decode() for k in rc.scan_iter(f"{prefix}:*")}), 10, what="one key per tenant")
        for t in COLLIDING:
            assert json.loads(rc.get(f"{prefix}:{t.replace('%', '%25').replace(':', '%3A')}:blob"))["runId"] == runs[t]
        assert len(keys) == len(COLLIDING)
        await _check_status_reads(app, runs, store_url, DURABLY_REDIS_URL=REDIS_URL, DURABLY_STATUS_KEY=template)
    finally:
        app.close()


async def test_colliding_tenants_keep_their_own_blob_in_the_store(store_url):
    app = make_app(store_url, **KEYS)
    try:
        runs = _run_blobs(app)
        for t, rid in runs.items():
            assert app.store.read("get_status", t, "blob").result()["runId"] == rid
        await _check_status_reads(app, runs, store_url)
    finally:
        app.close()


