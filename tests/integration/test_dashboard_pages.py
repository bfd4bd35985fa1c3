"""The dashboard's pages in process (``app.asgi()`` over httpx's ASGI transport), against the
real store: what they say and do without JavaScript."""

from __future__ import annotations

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
