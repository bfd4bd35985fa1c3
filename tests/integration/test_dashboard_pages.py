"""The dashboard's pages in process (``app.asgi()`` over httpx's ASGI transport), against the
real store: what they say and do without JavaScript."""

from __future__ import annotations

import html
import json
import re
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

import durably
from tests.helpers import make_app

pytestmark = pytest.mark.anyio

EVENT_KEY, ADMIN, CRON = "ek-dash-1", "at-dash-1", "cs-dash-1"


@pytest.fixture
def anyio_backend():
    return "asyncio"


def client(asgi) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://testserver")


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


@pytest.fixture
def prod_app(store_url):
    app = make_app(store_url, "dashprod", env="production", event_key=EVENT_KEY, admin_token=ADMIN,
                   cron_secret=CRON)

    @app.function(id="noop", trigger=durably.on_event("noop"))
    async def noop(ctx):
        return 1

    app.register()
    yield app
    app.close()


async def test_login_keeps_the_deep_links_query(prod_app):
    async with client(prod_app.asgi()) as c:
        r = await c.get("/runs?status=completed&function=noop")
        assert r.status_code == 303
        loc = urlsplit(r.headers["location"])
        assert loc.path == "/login"
        assert parse_qs(loc.query)["next"] == ["/runs?status=completed&function=noop"]
        page = await c.get(r.headers["location"])
        assert 'name="next" value="/runs?status=completed&amp;function=noop"' in page.text
        r = await c.post("/login", data={"csrf": csrf_of(page.text), "token": ADMIN,
                                         "next": "/runs?status=completed&function=noop"})
        assert r.status_code == 303 and r.headers["location"] == "/runs?status=completed&function=noop"
        r = await c.get(r.headers["location"])
        assert r.status_code == 200 and "Runs" in r.text


@pytest.mark.parametrize("evil", ["https://evil.example/", "//evil.example/x", "/\\evil.example/x",
                                  "/\t/evil.example", "javascript:alert(1)", "evil"])
async def test_login_next_stays_on_this_site(prod_app, evil):
    async with client(prod_app.asgi()) as c:
        page = await c.get("/login", params={"next": evil})
        assert 'name="next" value="/"' in page.text
        r = await c.post("/login", data={"csrf": csrf_of(page.text), "token": ADMIN, "next": evil})
        assert r.status_code == 303 and r.headers["location"] == "/"


@pytest.fixture
def dev_app(store_url):
    app = make_app(store_url, "dashdev", env="dev")

    @app.function(id="charge", trigger=durably.on_event("charge"), retries=0)
    async def charge(ctx):
        order = ctx.event.data["order"]
        await ctx.step.run("charge", lambda: _refuse(f"card declined for order {order} (request {order * 7}abc)"))

    @app.function(id="ship", trigger=durably.on_event("ship"), retries=0)
    async def ship(ctx):
        raise KeyError(f"no parcel {ctx.event.data['parcel']}")

    @app.function(id="sync", trigger=durably.on_event("sync.requested"), tenant="event.data.client",
                  concurrency=durably.Concurrency(limit=1, key="event.data.account.id"))
    async def sync(ctx):
        return ctx.event.data

    app.register()
    yield app
    app.close()


def _refuse(message: str):
    raise ValueError(message)


def test_mask_message():
    from durably.server.dashboard import mask_message

    assert mask_message("card declined for order 1234") == "card declined for order <n>"
    assert mask_message("no row 550e8400-e29b-41d4-a716-446655440000") == "no row <uuid>"
    assert mask_message("run 01M8WNHYGVM7WZ35RJJ3HZG75Q lost") == "run <id> lost"
    assert mask_message("user ord_8f3k2 missing at 0xdeadbeef") == "user <id> missing at <hex>"
    assert mask_message("digest 9f86d081884c7d65 differs") == "digest <hex> differs"
    assert mask_message("Mallory is refused") == "Mallory is refused"


async def test_failures_group_one_bug_with_different_ids(dev_app):
    from tests.helpers import running_worker, wait_run

    ids = []
    for order in (1234, 98, 5550001):
        ids += dev_app.send(durably.Event("charge", {"order": order})).runs
    ids += dev_app.send(durably.Event("ship", {"parcel": "p-77"})).runs
    with running_worker(dev_app):
        for rid in ids:
            assert wait_run(dev_app, rid)["status"] == "failed"
    async with client(dev_app.asgi()) as c:
        r = await c.get("/failures")
        assert r.status_code == 200
        rows = re.findall(r'<tr data-group="([^"]+)" data-key="([^"]+)">(.*?)</tr>', r.text, re.S)
        assert [(g, re.search(r'data-testid="count">(\d+)<', body).group(1)) for g, _, body in rows] == \
            [("charge", "3"), ("ship", "1")]
        assert "card declined for order &lt;n&gt; (request &lt;hex&gt;)" in rows[0][2]
        assert "e.g." in rows[0][2]  # the real messages are shown too
        assert 'data-live' in r.text  # refreshed live like the other lists
        # The group's key is stable (not its position), so a selection survives a refresh.
        key = rows[0][1]
        assert key in (await c.get("/failures")).text
        r = await c.post("/failures/replay", data={"csrf": csrf_of(r.text), "group": key, "dry_run": "1",
                                                   "limit": "10"})
        assert "3 run(s) would be replayed" in r.text


async def test_event_page_refreshes_live(dev_app):
    rid = dev_app.send(durably.Event("ship", {"parcel": "p-1"})).runs[0]
    async with client(dev_app.asgi()) as c:
        events = await c.get("/events")
        eid = re.search(r'<tr data-event="([^"]+)"', events.text).group(1)
        r = await c.get(f"/events/{eid}")
        assert r.status_code == 200 and 'id="live" data-live' in r.text and rid in r.text


async def test_run_now_asks_for_the_data_its_keys_read(dev_app):
    from tests.helpers import runs_of

    async with client(dev_app.asgi()) as c:
        home = await c.get("/")
        row = re.search(r'<tr data-function="sync">(.*?)</tr>', home.text, re.S).group(1)
        assert 'href="/functions/sync/run"' in row and "Run now…" in row
        row = re.search(r'<tr data-function="ship">(.*?)</tr>', home.text, re.S).group(1)
        assert 'method="post" action="/functions/ship/run"' in row  # keys read no data: one click
        # No event yet: the form is pre-filled with the paths the keys read.
        form = await c.get("/functions/sync/run")
        assert form.status_code == 200
        assert "event.data.client" in form.text and "event.data.account.id" in form.text
        text = re.search(r'<textarea name="data"[^>]*>(.*?)</textarea>', form.text, re.S).group(1)
        assert json.loads(html.unescape(text)) == {"client": "", "account": {"id": ""}}
        # A POST without data (the old one-click form, or no JavaScript) asks instead of failing.
        r = await c.post("/functions/sync/run", data={"csrf": csrf_of(home.text)})
        assert r.status_code == 200 and '<textarea name="data"' in r.text
        # Data the keys cannot read is refused before any run exists.
        r = await c.post("/functions/sync/run", data={"csrf": csrf_of(home.text), "data": '{"client": "c1"}'})
        assert r.status_code == 400 and "no such key" in r.text and "account" in r.text
        assert runs_of(dev_app, function_id="sync") == []
        r = await c.post("/functions/sync/run", data={"csrf": csrf_of(home.text), "data": "{nope"})
        assert r.status_code == 400 and "not valid JSON" in r.text and "{nope" in r.text
        # After an event, the form is pre-filled from the function's last event.
        dev_app.send(durably.Event("sync.requested", {"client": "c9", "account": {"id": "a-1"}}))
        form = await c.get("/functions/sync/run")
        text = re.search(r'<textarea name="data"[^>]*>(.*?)</textarea>', form.text, re.S).group(1)
        assert json.loads(html.unescape(text)) == {"client": "c9", "account": {"id": "a-1"}}
        assert "pre-filled from the function" in form.text
        r = await c.post("/functions/sync/run", data={"csrf": csrf_of(home.text), "data": html.unescape(text)})
        assert r.status_code == 303
        started = parse_qs(urlsplit(r.headers["location"]).query)["started"][0]
        run = next(x for x in runs_of(dev_app, function_id="sync") if x["id"] == started)
        assert run["status"] == "queued" and run["tenant"] == "c9" and run["trigger"] == "manual"
