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
