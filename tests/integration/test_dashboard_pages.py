"""The dashboard's pages in process (``app.asgi()`` over httpx's ASGI transport), against the
real store: what they say and do without JavaScript."""

from __future__ import annotations

import html
import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest

import durably
from tests.helpers import asgi_client as client
from tests.helpers import make_app

pytestmark = pytest.mark.anyio

EVENT_KEY, ADMIN, CRON = "ek-dash-1", "at-dash-1", "cs-dash-1"


@pytest.fixture
def anyio_backend():
    return "asyncio"


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


async def test_a_csrf_field_that_is_a_file_or_not_ascii_is_refused_not_a_500(prod_app):
    async with client(prod_app.asgi()) as c:
        page = await c.get("/login")
        for files, data in (({"csrf": ("csrf.txt", b"x", "text/plain")}, {"token": ADMIN}),
                            (None, {"csrf": "t\u00e9st\u00a0", "token": ADMIN}),
                            (None, {"csrf": csrf_of(page.text) + "\u2028", "token": ADMIN})):
            r = await c.post("/login", data=data, files=files)
            assert r.status_code in (200, 401, 403) and "expired" in r.text.lower(), (r.status_code, r.text[:200])


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


@pytest.fixture
def wait_app(store_url):
    import threading

    app = make_app(store_url, "dashwait", env="dev")
    gate = threading.Event()
    app.gate = gate

    @app.function(id="gated", trigger=durably.on_event("gated"), retries=0,
                  concurrency=durably.Concurrency(limit=1, key="event.data.account"))
    async def gated(ctx):
        return await ctx.step.run("hold", lambda: gate.wait(30))

    @app.function(id="flaky", trigger=durably.on_event("flaky"),
                  retries=durably.Retry(attempts=3, initial="1h", max="1h", jitter=False))
    async def flaky(ctx):
        return await ctx.step.run("call", _refuse, "upstream said 503")

    @app.function(id="slow", trigger=durably.on_event("slow"), throttle=durably.Throttle(limit=1, period="1h"))
    async def slow(ctx):
        return 1

    app.register()
    yield app
    gate.set()
    app.close()


def _reasons(page: str) -> list[tuple[str, str]]:
    block = re.search(r'<ul class="waiting" data-testid="why-waiting">(.*?)</ul>', page, re.S)
    assert block, "the page says nothing about why the run waits"
    return [(k, re.sub(r"<[^>]+>", "", t)) for k, t in re.findall(r'<li data-reason="([^"]+)">(.*?)</li>',
                                                                  block.group(1), re.S)]


async def test_a_queued_run_says_why_it_waits(wait_app):
    from tests.helpers import get_run, running_worker, wait_for

    first, second = (wait_app.send(durably.Event("gated", {"account": "acme"})).runs[0] for _ in range(2))
    flaky = wait_app.send(durably.Event("flaky", {})).runs[0]
    slow1, slow2 = (wait_app.send(durably.Event("slow", {})).runs[0] for _ in range(2))
    async with client(wait_app.asgi()) as c:
        # No worker at all yet.
        assert _reasons((await c.get(f"/runs/{second}")).text)[0][0] == "no_worker"
        assert "no live worker" in _reasons((await c.get(f"/runs/{second}")).text)[0][1]
        with running_worker(wait_app):
            wait_for(lambda: (get_run(wait_app, first) or {}).get("status") == "running", 20, what="first to run")
            wait_for(lambda: any(s["status"] == "retrying" for s in get_run(wait_app, flaky)["steps"]), 20,
                     what="flaky's step to be in backoff")
            wait_for(lambda: get_run(wait_app, slow1)["status"] == "completed"
                     and get_run(wait_app, slow2)["available_at"] > get_run(wait_app, slow2)["created_at"] + 60,
                     20, what="the second slow run to be throttled")
            page = (await c.get(f"/runs/{second}")).text
            (kind, text), = _reasons(page)
            assert kind == "concurrency" and "acme" in text and "(1/1)" in text and first in text
            assert f'href="/runs/{first}"' in page
            (kind, text), = _reasons((await c.get(f"/runs/{flaky}")).text)
            assert kind == "backoff" and "step call failed attempt 1" in text and "upstream said 503" in text
            assert "in 59m" in text or "in 1h" in text
            (kind, text), = _reasons((await c.get(f"/runs/{slow2}")).text)
            assert kind == "throttled" and ("in 59m" in text or "in 1h" in text)
            # The runs list says it too, next to the status.
            runs = (await c.get("/runs?status=queued")).text
            row = re.search(rf'<tr data-run="{second}">(.*?)</tr>', runs, re.S).group(1)
            assert 'data-reason="concurrency"' in row
            wait_app.gate.set()
            wait_for(lambda: get_run(wait_app, second)["status"] == "completed", 20, what="second to complete")
        assert "why-waiting" not in (await c.get(f"/runs/{second}")).text


def test_trace_axis_fits_the_run_not_a_waits_timeout():
    from durably.server.dashboard import _timeline

    t0 = 1000.0
    step = {"step_id": "fetch", "kind": "run", "status": "completed", "attempts": 2, "started_at": t0,
            "finished_at": t0 + 2.1, "wake_at": None,
            "log": [{"attempt": 1, "started_at": t0, "finished_at": t0 + 0.1, "error": {"name": "E", "message": "x"}},
                    {"attempt": 2, "started_at": t0 + 2.0, "finished_at": t0 + 2.1, "error": None}]}
    wait = {"step_id": "approval", "kind": "wait", "status": "completed", "attempts": 0, "started_at": t0 + 2.2,
            "finished_at": t0 + 6.7, "wake_at": t0 + 62.2, "output": {"name": "ok"}, "log": []}
    run = {"created_at": t0, "started_at": t0, "finished_at": t0 + 6.8, "steps": [step, wait]}
    tl = _timeline(run, now=t0 + 500)
    assert tl["span_ms"] == 6800  # not 62 s
    fetch, approval = tl["bars"]
    assert [g["kind"] for g in fetch["segments"]] == ["work", "gap", "work"]
    assert fetch["segments"][0]["failed"] and not fetch["segments"][2]["failed"]
    assert fetch["segments"][1]["width"] > 25  # 1.9 s of backoff out of 6.8 s: a gap, not work
    (w,) = approval["segments"]
    assert w["kind"] == "idle" and abs(w["left"] + w["width"] - 100 * 6.7 / 6.8) < 0.01
    assert "ended early" in w["title"]
    assert [t["label"] for t in tl["ticks"]]== ["0 s", "2 s", "4 s", "6 s"]
    # Unfinished: the axis runs to now; a pending wait is drawn to now, not to its timeout.
    run = {"created_at": t0, "started_at": t0, "finished_at": None, "available_at": t0 + 62.2,
           "steps": [step, dict(wait, status="waiting", finished_at=None)]}
    tl = _timeline(run, now=t0 + 10)
    assert tl["span_ms"] == 10000 and tl["live"]
    w = tl["bars"][1]["segments"][0]
    assert w["pending"] and abs(w["left"] + w["width"] - 100) < 0.01


def test_flow_summary_says_1_attempt():
    from durably.server.dashboard import flow_summary

    assert flow_summary({"retry": {"attempts": 1}}) == ["1 attempt"]
    assert flow_summary({"retry": {"attempts": 4}}) == ["4 attempts"]


async def test_favicon_is_served(prod_app):
    async with client(prod_app.asgi()) as c:
        r = await c.get("/favicon.ico")  # no login needed for the icon
        assert r.status_code == 200 and r.headers["content-type"] == "image/x-icon"
        assert r.content[:4] == b"\x00\x00\x01\x00"
