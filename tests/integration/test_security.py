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
from durably.core.flow import TENANT_MAX
from durably.core.ids import new_id
from durably.core.records import NewRun
from durably.errors import InvalidInput
from durably.server.schemas import TENANT_FILTER_MAX
from tests.conftest import CI, REDIS_URL
from tests.helpers import asgi_client as client
from tests.helpers import cli_env, make_app, run_cli, running_worker, wait_for, wait_run

pytestmark = pytest.mark.anyio

EVENT_KEY, ADMIN, CRON = "ek-Sec-1", "at-Sec-1", "cs-Sec-1"
KEYS = {"event_key": EVENT_KEY, "admin_token": ADMIN, "cron_secret": CRON}


@pytest.fixture
def anyio_backend():
    return "asyncio"


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
        assert app.store.get_function("y:blob").result() is None
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
    # env "test" is production here: the template (no {env}) is written as given, unprefixed.
    app = make_app(store_url, redis_url=REDIS_URL, status_key=template, production_env="test", **KEYS)
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
        await _check_status_reads(app, runs, store_url, DURABLY_REDIS_URL=REDIS_URL, DURABLY_STATUS_KEY=template,
                                  DURABLY_PRODUCTION_ENV="test")
    finally:
        app.close()


async def test_colliding_tenants_keep_their_own_blob_in_the_store(store_url):
    app = make_app(store_url, **KEYS)
    try:
        runs = _run_blobs(app)
        for t, rid in runs.items():
            assert app.store.get_status(t, "blob").result()["runId"] == rid
        await _check_status_reads(app, runs, store_url)
    finally:
        app.close()


# --- one tenant rule ---------------------------------------------------------------------------

VALID_TENANTS = ["c1", "a:x", "*", "%", "a/b", "../../etc/passwd", "'; DROP TABLE durably_runs; --", "a\tb",
                 " lead", "é" * TENANT_MAX, "x" * TENANT_MAX, "🙂" * TENANT_MAX, "%3A", "global-ish"]
INVALID_TENANTS = ["", "x" * (TENANT_MAX + 1), "x" * 300, "x" * 5000, "é" * (TENANT_MAX + 1)]


@pytest.fixture
def tenant_app(store_url):
    app = make_app(store_url, env="production", **KEYS)

    @app.function(id="per-tenant", trigger=durably.on_event("tenant.go"), tenant="event.data.t")
    async def per_tenant(ctx):
        await ctx.step.sleep("long", "1h")

    yield app
    app.close()


async def test_every_accepted_tenant_is_found_by_every_filter_and_the_rest_are_skipped(tenant_app, store_url):
    app = tenant_app
    eh = bearer(EVENT_KEY.encode())
    async with client(app.asgi()) as c:
        created = {}
        for t in VALID_TENANTS:
            r = await c.post("/api/v1/events", json={"name": "tenant.go", "data": {"t": t}}, headers=eh)
            assert r.status_code == 200 and len(r.json()["runs"]) == 1 and r.json()["skipped"] == [], (t, r.text)
            created[t] = r.json()["runs"][0]
        r = await c.post("/api/v1/events", json={"name": "tenant.go", "data": {"t": None}}, headers=eh)
        created["global"] = r.json()["runs"][0]  # null: the default tenant
        for t in INVALID_TENANTS:
            r = await c.post("/api/v1/events", json={"name": "tenant.go", "data": {"t": t}}, headers=eh)
            assert r.status_code == 200 and r.json()["runs"] == [], (len(t), r.text)
            assert [s["reason"] for s in r.json()["skipped"]] == ["invalid_tenant"]
            detail = (await c.get(f"/api/v1/events/{r.json()['ids'][0]}", headers=ADMIN_H)).json()
            assert [s["reason"] for s in detail["skipped"]] == ["invalid_tenant"]
        stored = {r["tenant"] for r in app.store.list_runs(limit=1000).result()}
        assert stored == set(created)  # nothing was stored under another name
        for t, rid in created.items():
            r = await c.get("/api/v1/runs", params={"tenant": t}, headers=ADMIN_H)
            assert r.status_code == 200, (t, r.text)
            assert [x["id"] for x in r.json()["runs"]] == [rid], t
        # A filter longer than any tenant that can be created matches nothing; it is no error.
        r = await c.get("/api/v1/runs", params={"tenant": "x" * 5000}, headers=ADMIN_H)
        assert r.status_code == 200 and r.json()["runs"] == []
        _one_line_error(await c.get("/api/v1/runs", params={"tenant": "x" * (TENANT_FILTER_MAX + 1)},
                                    headers=ADMIN_H), 400)
        # A tenant stored before the creation limit existed stays findable.
        legacy = NewRun(id=new_id(), function_id="per-tenant", event={"name": "tenant.go", "data": {}}, tenant="y" * 300)
        app.store.create_runs([legacy]).result()
        r = await c.get("/api/v1/runs", params={"tenant": "y" * 300}, headers=ADMIN_H)
        assert [x["id"] for x in r.json()["runs"]] == [legacy.id]
        # The dashboard's filter too.
        await _login(c)
        page = await c.get("/runs", params={"tenant": "a:x"})
        assert page.status_code == 200 and created["a:x"] in page.text and created["c1"] not in page.text
    # The CLI: `durably runs --tenant` and `durably status` take the longest tenant there is.
    cenv = cli_env(store_url, env="production")
    longest = "🙂" * TENANT_MAX
    r = run_cli(["runs", "--tenant", longest, "--json"], cenv)
    assert r.returncode == 0, r.stderr
    assert [x["id"] for x in json.loads(r.stdout)] == [created[longest]]
    with running_worker(app):
        wait_run(app, created[longest], ("sleeping",))
    r = run_cli(["status", longest, "per-tenant"], cenv)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["runId"] == created[longest]


async def test_run_now_invoke_and_cron_apply_the_tenant_rule(store_url):
    app = make_app(store_url, **KEYS)

    @app.function(id="child", trigger=durably.on_event("child.go"), tenant="event.data.t")
    async def child(ctx):
        return "child ran"

    @app.function(id="parent", trigger=durably.on_event("parent.go"))
    async def parent(ctx):
        try:
            return await ctx.step.invoke("call", "child", {"t": ""})
        except durably.StepError as exc:
            return {"refused": str(exc)}

    @app.function(id="ticker", trigger=durably.on_cron("* * * * *"), tenant="''")
    async def ticker(ctx):
        return 1

    try:
        app.register()
        async with client(app.asgi()) as c:
            msg = _one_line_error(await c.post("/api/v1/functions/child/invoke", json={"data": {"t": ""}},
                                               headers=ADMIN_H), 400)
            assert "invalid_tenant" in msg
            ok = await c.post("/api/v1/functions/child/invoke", json={"data": {"t": "c1"}}, headers=ADMIN_H)
            assert ok.status_code == 201
        with running_worker(app, scheduler=False):
            rid = app.send(durably.Event("parent.go")).runs[0]
            run = wait_run(app, rid)
        assert run["status"] == "completed" and "invalid_tenant" in json.dumps(run["output"])
        # A cron tick whose tenant is empty is recorded as skipped, never stored as 'global'.
        _rewind_cron(store_url, "ticker", 3600)  # as if the last tick was an hour ago: one tick is due now
        assert app.store.fire_cron("ticker", "* * * * *", "UTC").result() is None
        skips = app.store.list_skips(function_id="ticker").result()
        assert skips and all(s["reason"] == "invalid_tenant" for s in skips), skips
        assert [r for r in app.store.list_runs(limit=100).result() if r["function_id"] == "ticker"] == []
    finally:
        app.close()


async def test_a_nul_in_a_tenant_filter_or_status_read_is_a_400_never_a_5xx(tenant_app):
    async with client(tenant_app.asgi()) as c:
        for url in ("/api/v1/runs?tenant=a%00b", "/api/v1/status/a%00b/per-tenant", "/api/v1/status/a/per%00tenant"):
            _one_line_error(await c.get(url, headers=ADMIN_H), 400)
        await _login(c)
        r = await c.get("/runs?tenant=a%00b")
        assert r.status_code == 400 and "NUL" in r.text
        # NUL in event data (so in the tenant it yields) is refused before anything is stored
        r = await c.post("/api/v1/events", json={"name": "tenant.go", "data": {"t": "a\u0000b"}},
                         headers=bearer(EVENT_KEY.encode()))
        _one_line_error(r, 400)


def _rewind_cron(store_url: str, function_id: str, seconds: float) -> None:
    sql = "UPDATE durably_cron SET last_tick = last_tick - %s WHERE function_id = %s"
    if store_url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(store_url[len("sqlite:///"):])) as conn:
            assert conn.execute(sql.replace("%s", "?"), (seconds, function_id)).rowcount == 1
            conn.commit()
        return
    import psycopg

    dsn, _, schema = store_url.rpartition("schema=")
    with psycopg.connect(dsn.rstrip("?&")) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        assert conn.execute(sql, (seconds, function_id)).rowcount == 1


# --- credentials: byte for byte ------------------------------------------------------------

NBSP_U8, NEL_U8, ZWSP_U8 = "\u00a0".encode(), "\u0085".encode(), "\u200b".encode()


def _wrong_variants(key: str) -> dict[str, bytes]:
    k = key.encode()
    return {
        "trailing NBSP (UTF-8)": k + NBSP_U8, "leading NBSP (UTF-8)": NBSP_U8 + k,
        "trailing NBSP (Latin-1 byte)": k + b"\xa0", "leading NBSP (Latin-1 byte)": b"\xa0" + k,
        "trailing NEL (UTF-8)": k + NEL_U8, "leading NEL (UTF-8)": NEL_U8 + k,
        "trailing NEL (Latin-1 byte)": k + b"\x85", "leading NEL (Latin-1 byte)": b"\x85" + k,
        "trailing zero-width space": k + ZWSP_U8, "leading zero-width space": ZWSP_U8 + k,
        "upper case": key.upper().encode(), "lower case": key.lower().encode(),
        "trailing vertical tab": k + b"\x0b",  # no HTTP whitespace either
    }


def _right_variants(key: str) -> dict[str, bytes]:
    k = key.encode()
    return {"exact": k, "space and tab around (HTTP OWS)": b" \t" + k + b"\t "}


@pytest.fixture
def prod_app(store_url):
    app = make_app(store_url, env="production", **KEYS)

    @app.function(id="job", trigger=durably.on_event("job.go"))
    async def job(ctx):
        return 1

    app.register()
    yield app
    app.close()


async def _admin_calls(c, token: bytes) -> list[int]:
    h = bearer(token)
    return [(await c.get("/api/v1/runs", headers=h)).status_code, (await c.get("/metrics", headers=h)).status_code,
            (await c.post("/api/v1/functions/job/invoke", json={}, headers=h)).status_code]


async def _event_calls(c, token: bytes) -> list[int]:
    ev = {"name": "job.go"}
    return [(await c.post("/api/v1/events", json=ev, headers=bearer(token))).status_code,
            (await c.post("/api/v1/events", json=ev, headers={"X-Durably-Event-Key": token})).status_code]


async def _cron_calls(c, token: bytes) -> list[int]:
    r = await c.post("/api/v1/cron/job.go?window=3600", headers=bearer(token))
    return [200 if r.status_code in (200, 202) else r.status_code]  # 202 first ping, 200 duplicate


async def test_credentials_are_compared_byte_for_byte(prod_app):
    results: dict[str, dict[str, list[int]]] = {}
    async with client(prod_app.asgi()) as c:
        for kind, key, calls, good in (("admin", ADMIN, _admin_calls, [200, 200, 201]),
                                       ("event", EVENT_KEY, _event_calls, [200, 200]),
                                       ("cron", CRON, _cron_calls, [200])):
            for name, token in _wrong_variants(key).items():
                got = await calls(c, token)
                results.setdefault(kind, {})[name] = got
                assert got == [401] * len(got), (kind, name, got)
            for name, token in _right_variants(key).items():
                got = await calls(c, token)
                assert got == good, (kind, name, got)
        r = await c.get("/api/v1/runs", headers=bearer(ADMIN.encode() + NBSP_U8))
        assert "DURABLY_ADMIN_TOKEN" in _one_line_error(r, 401)
    # Nothing was sent by a refused event key: only the accepted ones made runs.
    assert len(prod_app.store.list_runs(limit=100).result()) == 2 * 2 + 2 + 1


async def test_a_non_ascii_key_matches_its_own_utf8_bytes_only(store_url):
    token = "clé-тест"
    app = make_app(store_url, env="production", event_key=EVENT_KEY, admin_token=token, cron_secret=CRON)
    try:
        async with client(app.asgi()) as c:
            assert (await c.get("/api/v1/runs", headers=bearer(token.encode()))).status_code == 200
            assert (await c.get("/api/v1/runs", headers=bearer(token.encode("latin-1", "replace")))).status_code == 401
            assert (await c.get("/api/v1/runs", headers=bearer(token.encode() + NBSP_U8))).status_code == 401
    finally:
        app.close()


async def test_dashboard_login_trims_ascii_whitespace_only(prod_app):
    wrong = {"trailing NBSP": ADMIN + "\u00a0", "leading NBSP": "\u00a0" + ADMIN, "trailing NEL": ADMIN + "\u0085",
             "leading NEL": "\u0085" + ADMIN, "trailing zero-width space": ADMIN + "\u200b",
             "leading zero-width space": "\u200b" + ADMIN, "upper case": ADMIN.upper(), "lower case": ADMIN.lower(),
             "ideographic space": ADMIN + "\u3000"}
    for name, token in wrong.items():
        async with client(prod_app.asgi()) as c:
            r = await _login(c, token)
            assert r.status_code == 401 and "Wrong admin token" in r.text, name
            assert (await c.get("/")).status_code == 303, name  # still sent to the login page
    for name, token in {"exact": ADMIN, "pasted with a newline": f"  {ADMIN}\r\n", "tabs": f"\t{ADMIN}\t"}.items():
        async with client(prod_app.asgi()) as c:
            r = await _login(c, token)
            assert r.status_code == 303, name
            assert (await c.get("/")).status_code == 200, name


# --- nosniff on every response ---------------------------------------------------------------


async def test_every_response_says_nosniff(prod_app, monkeypatch):
    from durably.server.dashboard import Dashboard

    asgi = prod_app.asgi()
    async with client(asgi) as c:
        responses = [
            await c.get("/api/v1/health"), await c.get("/api/v1/runs", headers=ADMIN_H),
            await c.get("/api/v1/runs"), await c.get("/api/v1/runs", params={"limit": "x"}, headers=ADMIN_H),
            await c.get("/api/v1/runs/nope", headers=ADMIN_H), await c.get("/no/such/route"),
            await c.delete("/api/v1/events"), await c.get("/metrics", headers=ADMIN_H), await c.get("/openapi.json"),
            await c.post("/api/v1/events", content=b"x" * (6 * 1024 * 1024), headers=bearer(EVENT_KEY.encode())),
            await c.get("/login"), await c.get("/"), await c.get("/static/app.css"),
            await c.get("/api/v1/status/nobody/job", headers=ADMIN_H),
        ]
        await _login(c)
        responses += [await c.get("/"), await c.get("/runs"), await c.get("/runs/nope"), await c.get("/nope")]
    statuses = {r.status_code for r in responses}
    assert {200, 303, 400, 401, 404, 405, 413} <= statuses, statuses
    for r in responses:
        assert r.headers.get("x-content-type-options") == "nosniff", (r.request.url, r.status_code)
        assert r.headers.get("x-durably-env") == "production"
    # Even the 500 of an unexpected error (outside every handler's own error handling).
    async def boom(self, *a, **kw):
        raise RuntimeError("unexpected")

    monkeypatch.setattr(Dashboard, "store", boom)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi, raise_app_exceptions=False),
                                 base_url="http://testserver") as c:
        await _login(c)
        r = await c.get("/runs")
    assert r.status_code == 500 and r.headers.get("x-content-type-options") == "nosniff"
