"""Hostile input through every door (DESIGN §3: bad input never looks like an outage; §4:
event names have a grammar): the HTTP API, the dashboard and the CLI answer a value the store
cannot hold with a one-line 400 / exit 1 on both stores, write nothing, and keep the 503 for a
store that is really unreachable."""

from __future__ import annotations

import base64
import json
import re
import socket

import httpx
import pytest

import durably
from tests.helpers import cli_env, make_app, run_cli

pytestmark = pytest.mark.anyio

EVENT_KEY, ADMIN, CRON = "ek-hostile", "at-hostile", "cs-hostile"


@pytest.fixture
def anyio_backend():
    return "asyncio"


def _cursor(value: list) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.fixture
def app(store_url):
    app = make_app(store_url, "hostile", env="test", event_key=EVENT_KEY, admin_token=ADMIN, cron_secret=CRON)

    @app.function(id="echo", trigger=[durably.on_event("echo"), durably.on_event("background/process.requested")])
    async def echo(ctx):
        return ctx.event.data

    app.register()
    yield app
    app.close()


def _client(asgi) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://testserver")


def _creds(method: str, path: str) -> dict:
    if method == "POST" and path == "/api/v1/events":
        return {"Authorization": f"Bearer {EVENT_KEY}"}
    if path.startswith("/api/v1/cron/"):
        return {"Authorization": f"Bearer {CRON}"}
    return {"Authorization": f"Bearer {ADMIN}"}


NUL_CURSOR = _cursor([1.0, "a\u0000"])
HOSTILE = [
    # (method, path, JSON body, a fragment of the message)
    ("GET", "/api/v1/runs?function=%00", None, "query parameter 'function': must not hold NUL"),
    ("GET", "/api/v1/runs?tenant=a%00b", None, "query parameter 'tenant': must not hold NUL"),
    ("GET", "/api/v1/runs?status=%00", None, "query parameter 'status'"),
    ("GET", "/api/v1/runs?since=1h%00", None, "query parameter 'since'"),
    ("GET", f"/api/v1/runs?cursor={NUL_CURSOR}", None, "cursor: not a cursor this API returned"),
    ("GET", f"/api/v1/runs?cursor={_cursor([1.0, 'x' * 600])}", None, "cursor: not a cursor"),
    ("GET", "/api/v1/runs?cursor=%00", None, "query parameter 'cursor': must not hold NUL"),
    ("GET", f"/api/v1/runs?limit={10**30}", None, "query parameter 'limit'"),
    ("GET", "/api/v1/runs?limit=-9223372036854775809", None, "query parameter 'limit'"),
    ("GET", "/api/v1/runs/%00", None, "path parameter 'id': must not hold NUL"),
    ("GET", "/api/v1/runs/" + "x" * 5000, None, "path parameter 'id': 5,000 characters; at most 512"),
    ("POST", "/api/v1/runs/%00/cancel", None, "path parameter 'id': must not hold NUL"),
    ("POST", "/api/v1/runs/a%00/replay", None, "path parameter 'id': must not hold NUL"),
    ("GET", "/api/v1/events?name=%00", None, "query parameter 'name': must not hold NUL"),
    ("GET", f"/api/v1/events?cursor={NUL_CURSOR}", None, "cursor: not a cursor"),
    ("GET", "/api/v1/events/%00", None, "path parameter 'id': must not hold NUL"),
    ("GET", "/api/v1/status/%00/echo", None, "path parameter 'tenant': must not hold NUL"),
    ("GET", "/api/v1/status/global/ec%00ho", None, "path parameter 'function': must not hold NUL"),
    ("POST", "/api/v1/replay", {"function": "a\u0000b"}, "field 'function': must not hold NUL"),
    ("POST", "/api/v1/replay", {"function": "echo", "limit": 10**30}, "field 'limit'"),
    ("POST", "/api/v1/replay", {"function": "echo", "since": "\u0000"}, "field 'since'"),
    ("POST", "/api/v1/functions/a%00b/invoke", None, "path parameter 'id': must not hold NUL"),
    ("POST", "/api/v1/functions/echo/invoke", {"data": {"k": "a\u0000b"}}, "data.k holds a NUL character"),
    ("POST", "/api/v1/functions/echo/invoke", {"data": {"k\u0000": 1}}, "data (key 'k\\x00') holds a NUL"),
    ("POST", "/api/v1/events", {"name": "echo", "data": {"k": ["ok", "\u0000"]}}, "data.k[1] holds a NUL"),
    ("POST", "/api/v1/events", {"name": "echo", "user": {"u": "\u0000"}}, "user.u holds a NUL"),
    ("POST", "/api/v1/events", {"name": "echo", "id": "a\u0000"}, "field 'id'"),
    ("POST", "/api/v1/events", {"name": "echo", "id": "x" * 300}, "field 'id'"),
    ("POST", "/api/v1/events", {"name": "echo", "ts": 10**30}, "field 'ts'"),
    ("POST", "/api/v1/events", {"name": "echo", "ts": 2**63}, "field 'ts'"),
    ("POST", "/api/v1/events", {"name": "a\u0000b"}, "'\\x00' at position 1"),
    ("POST", "/api/v1/events", {"name": "../../../etc/passwd"}, "none may be empty, '.' or '..'"),
    ("POST", "/api/v1/events", {"name": "/etc/passwd"}, "none may be empty, '.' or '..'"),
    ("POST", "/api/v1/events", {"name": "x" * 257}, "257 characters; at most 256"),
    ("POST", "/api/v1/events", {"name": " echo"}, "whitespace"),
    ("POST", "/api/v1/cron/..%2F..%2F..%2Fetc%2Fpasswd", None, "event_name: event name '../../../etc/passwd'"),
    ("POST", "/api/v1/cron/%2E%2E/%2E%2E/etc/passwd", None, "event_name: event name '../../etc/passwd'"),
    ("POST", "/api/v1/cron/a%00b", None, "path parameter 'event_name': must not hold NUL"),
    ("POST", "/api/v1/cron/a%01b", None, "'\\x01' at position 1"),
    ("POST", "/api/v1/cron/back%5Cslash", None, "must not hold '\\'"),
]


def _one_line_400(r: httpx.Response, fragment: str) -> None:
    assert r.status_code == 400, (r.status_code, r.text)
    err = r.json()["error"]
    assert err["code"] == "invalid_input", err
    assert fragment in err["message"], err["message"]
    assert "\n" not in err["message"] and len(err["message"]) < 400


@pytest.mark.parametrize("method,path,body,fragment", HOSTILE, ids=[f"{m} {p[:48]}" for m, p, _b, _f in HOSTILE])
async def test_hostile_requests_are_one_line_400s_on_every_store(app, method, path, body, fragment):
    async with _client(app.asgi()) as c:
        r = await c.request(method, path, json=body, headers=_creds(method, path))
    _one_line_400(r, fragment)
    assert app.store.list_events(limit=10).result() == []  # nothing was written
    assert app.store.list_runs(limit=10).result() == []


async def test_a_request_with_one_bad_event_writes_nothing(app):
    async with _client(app.asgi()) as c:
        for bad in ({"name": "echo", "data": {"k": "\u0000"}}, {"name": "../x"}, {"name": "echo", "ts": 2**63}):
            r = await c.post("/api/v1/events", json=[{"name": "echo", "id": "good"}, bad], headers=_creds("POST", "/api/v1/events"))
            _one_line_400(r, "events[1]")
    assert app.store.get_event("good").result() is None
    assert app.store.list_runs(limit=10).result() == []


async def _raw(asgi, method: str, path: str, headers: dict) -> tuple[int, dict]:
    """One request with ``path`` exactly as given: no client normalizes its dot segments."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"", "server": ("t", 80),
             "client": ("127.0.0.1", 1), "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await asgi(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body)


async def test_the_cron_endpoint_refuses_a_path_traversal_and_keeps_names_with_slashes(app):
    asgi = app.asgi()
    async with asgi.router.lifespan_context(asgi):
        status, body = await _raw(asgi, "POST", "/api/v1/cron/../../../etc/passwd", _creds("POST", "/api/v1/cron/"))
        assert status == 400 and "'../../../etc/passwd'" in body["error"]["message"], body
        status, body = await _raw(asgi, "POST", "/api/v1/cron/background/process.requested", _creds("POST", "/api/v1/cron/"))
        assert status == 202 and body["eventId"].startswith("cron:background/process.requested:"), body
    assert [e["name"] for e in app.store.list_events(limit=10).result()] == ["background/process.requested"]


async def test_valid_edge_values_still_go_through(app):
    async with _client(app.asgi()) as c:
        ok = await c.post("/api/v1/events", json=[
            {"name": "echo", "id": "i" * 256, "ts": 253402300799999, "data": {"text": "back\\u0000slash"}},
            {"name": "background/process.requested"}], headers=_creds("POST", "/api/v1/events"))
        assert ok.status_code == 200, ok.text
        assert len(ok.json()["runs"]) == 2
        r = await c.get("/api/v1/events/" + "i" * 256, headers=_creds("GET", "/api/v1/events"))
        assert r.status_code == 200 and r.json()["data"] == {"text": "back\\u0000slash"}
        r = await c.get("/api/v1/runs?function=echo&tenant=global&limit=1000", headers=_creds("GET", "/api/v1/runs"))
        assert r.status_code == 200 and len(r.json()["runs"]) == 2


# --- the dashboard ---------------------------------------------------------------------------


@pytest.fixture
def dev_app(store_url):
    app = make_app(store_url, "hostile-dash", env="dev")

    @app.function(id="echo", trigger=durably.on_event("echo"))
    async def echo(ctx):
        return ctx.event.data

    app.register()
    yield app
    app.close()


DASHBOARD_NUL = ["/runs?function=%00", "/runs?tenant=%00", "/runs?status=%00", "/runs?since=%00",
                 f"/runs?cursor={NUL_CURSOR}", "/events?name=a%00", f"/events?cursor={NUL_CURSOR}", "/runs/%00",
                 "/events/%00", "/?x=%00"]


@pytest.mark.parametrize("path", DASHBOARD_NUL)
async def test_dashboard_pages_answer_bad_input_with_a_400_page(dev_app, path):
    async with _client(dev_app.asgi()) as c:
        r = await c.get(path)
    assert r.status_code == 400, (r.status_code, r.text[:300])
    assert "text/html" in r.headers["content-type"]
    assert re.search(r"must not hold NUL characters|not a cursor this API returned", r.text)
    assert "store is unavailable" not in r.text


async def test_dashboard_send_form_refuses_bad_names_and_data_and_writes_nothing(dev_app):
    async with _client(dev_app.asgi()) as c:
        page = await c.get("/events")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        for name, data, fragment in [("../../etc/passwd", "{}", "none may be empty"),
                                     ("a\u0000b", "{}", "position 1"),
                                     ("echo", '{"k": "\\u0000"}', "data.k holds a NUL character")]:
            r = await c.post("/events/send", data={"csrf": csrf, "name": name, "data": data})
            assert r.status_code == 400 and fragment in r.text, (name, r.status_code, r.text[:300])
        r = await c.post("/functions/echo/run", data={"csrf": csrf, "data": '{"k": "\\u0000"}'})
        assert r.status_code == 400 and "holds a NUL character" in r.text
    assert dev_app.store.list_events(limit=10).result() == []
    assert dev_app.store.list_runs(limit=10).result() == []


def _refused_port() -> int:
    with socket.socket() as s:  # bound, then closed: nothing listens there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(params=["sqlite", "postgres"])
def unreachable_url(request, tmp_path):
    if request.param == "sqlite":
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("")
        return f"sqlite:///{blocker}/durably.db"  # its directory cannot be made
    return f"postgresql://postgres@127.0.0.1:{_refused_port()}/test"


async def test_an_outage_is_a_503_page_not_a_400(unreachable_url):
    app = make_app(unreachable_url, "outage", env="production", event_key=EVENT_KEY, admin_token=ADMIN,
                   cron_secret=CRON)

    @app.function(id="echo", trigger=durably.on_event("echo"))
    async def echo(ctx):
        return 1

    try:
        async with _client(app.asgi()) as c:
            login = await c.get("/login")
            csrf = re.search(r'name="csrf" value="([^"]+)"', login.text).group(1)
            r = await c.post("/login", data={"csrf": csrf, "token": ADMIN, "next": "/"})
            assert r.status_code == 303
            for path in ("/", "/runs", "/runs?function=echo", "/events", "/failures", "/runs/01ABC", "/events/e1"):
                r = await c.get(path)
                assert r.status_code == 503, (path, r.status_code, r.text[:300])
                assert "The store is unavailable" in r.text and r.headers["retry-after"]
            csrf = re.search(r'name="csrf" value="([^"]+)"', r.text).group(1)  # the logout form's
            for path, form in (("/events/send", {"name": "echo", "data": "{}"}), ("/runs/01ABC/cancel", {}),
                               ("/functions/echo/run", {})):
                r = await c.post(path, data={"csrf": csrf, **form})
                assert r.status_code == 503 and "The store is unavailable" in r.text, (path, r.status_code, r.text[:300])
            api = await c.get("/api/v1/runs", headers={"Authorization": f"Bearer {ADMIN}"})
            assert api.status_code == 503 and api.json()["error"]["code"] == "store_unavailable"
            # Bad input is still bad input while the store is down: refused before the store.
            assert (await c.get("/runs?function=%00")).status_code == 400
    finally:
        app.close()


# --- the CLI ---------------------------------------------------------------------------------


CLI_HOSTILE = [
    (["send", "../../../etc/passwd"], "none may be empty, '.' or '..'"),
    (["send", "a\x01b"], "'\\x01' at position 1"),
    (["send", "\udcff"], "'\\udcff' at position 0"),
    (["send", "echo", "--data", '{"k": "\\u0000"}'], "data.k holds a NUL character"),
    (["send", "echo", "--data", '{"k\\u0000": 1}'], "holds a NUL character"),
    (["send", "echo", "--id", "x" * 600], "id is 600 characters; at most 512"),
    (["send", "echo", "--id", "\udcff"], "not valid Unicode"),
    (["runs", "--function", "\udcff"], "--function '\\udcff' is not valid UTF-8"),
    (["runs", "--tenant", "a\udcff"], "--tenant 'a\\udcff' is not valid UTF-8"),
    (["runs", "--limit", str(10**30)], "--limit"),
    (["runs", "show", "\udcff"], "RUN_ID '\\udcff' is not valid UTF-8"),
    (["runs", "cancel", "\udcff"], "RUN_ID '\\udcff' is not valid UTF-8"),
    (["status", "\udcff", "echo"], "TENANT '\\udcff' is not valid UTF-8"),
    (["replay", "--function", "\udcff"], "--function '\\udcff' is not valid UTF-8"),
]


def test_cli_answers_hostile_input_with_one_line_and_writes_nothing(app, store_url, tmp_path):
    env = cli_env(store_url, "test")
    for args, fragment in CLI_HOSTILE:
        p = run_cli(args, env, cwd=str(tmp_path))
        err = p.stderr.strip()
        assert p.returncode in (1, 2) and p.stdout == "", (args, p.returncode, p.stdout, err)
        assert len(err.splitlines()) == 1 and err.startswith("error: ") and fragment in err, (args, err)
        assert "Traceback" not in err and "store_unavailable" not in err and "cannot reach" not in err
        assert p.returncode == 1 or "--limit" in err  # 2 only for a usage error click reports itself
    assert app.store.list_events(limit=10).result() == []
