"""Dispatch answers in bounded time (DESIGN §3): every path that hands work to the store gives
up after DURABLY_DISPATCH_TIMEOUT whether the store refuses connections, is black-holed
(accepts TCP and never answers) or is an SQLite file locked by another process. The answer is
a 503 ``store_unavailable`` with ``Retry-After`` (``app.send``: ``StoreUnavailable``; the CLI:
one line, exit 1), or the cron endpoint's inline fallback, once per window; and what was given
up on is never written later, when the store answers again.

PostgreSQL is reached through a loopback proxy (tests/tcp_proxy.py) that refuses or black-holes;
SQLite is locked by another process holding a write transaction. Every answer is asserted to
come within the deadline plus 0.5 s.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import uuid
from typing import Iterator

import pytest

import durably
from durably.config import Settings
from durably.errors import StoreUnavailable
from tests.helpers import asgi_client as client
from tests.helpers import cli_env, run_cli, runs_of, wait_for

pytestmark = pytest.mark.anyio

TIMEOUT = 1.0  # DURABLY_DISPATCH_TIMEOUT in these tests (the default is 2)
SLACK = 0.5  # what the contract allows past the deadline
EVENT_KEY, ADMIN, CRON = "ek-deadline", "at-deadline", "cs-deadline"
EVENT_H = {"Authorization": f"Bearer {EVENT_KEY}"}
ADMIN_H = {"Authorization": f"Bearer {ADMIN}"}
CRON_H = {"Authorization": f"Bearer {CRON}"}
TICK = "background/process.requested"


@pytest.fixture
def anyio_backend():
    return "asyncio"


def settings(url: str, env: str = "test", **extra: str) -> Settings:
    return Settings.load({"DURABLY_DATABASE_URL": url, "DURABLY_ENV": env, "DURABLY_EVENT_KEY": EVENT_KEY,
                          "DURABLY_ADMIN_TOKEN": ADMIN, "CRON_SECRET": CRON,
                          "DURABLY_DISPATCH_TIMEOUT": str(TIMEOUT), **extra})


def make(url: str, name: str = "deadline", **extra: str) -> tuple[durably.App, list[str]]:
    """An App whose function records the events it runs inline (a worker never runs here)."""
    app = durably.App(name, settings=settings(url, **extra))
    ran: list[str] = []

    @app.function(id="process", trigger=durably.on_event(TICK))
    async def process(ctx):
        ran.append(ctx.event.id)
        return "done"

    @app.function(id="greet", trigger=durably.on_event("deadline.greet"))
    async def greet(ctx):
        return "hi"

    return app, ran


class Clock:
    """Measures one answer; ``check`` asserts it came within the deadline plus the slack."""

    def __init__(self) -> None:
        self.times: list[float] = []

    @contextlib.contextmanager
    def answer(self) -> Iterator[None]:
        started = time.monotonic()
        yield
        took = time.monotonic() - started
        self.times.append(took)
        assert took < TIMEOUT + SLACK, f"answered after {took:.2f} s; the deadline is {TIMEOUT} s + {SLACK} s"


def _not_near_window_end(window: int) -> None:
    wait_for(lambda: time.time() % window < window - 30, window, interval=0.2, what="the start of a fresh window")


# --- the ways a store can be down ------------------------------------------------------------


class SqliteLock:
    """Another process holding the SQLite file's write lock until ``release()``."""

    def __init__(self, path: str):
        code = ("import sqlite3, sys\n"
                f"c = sqlite3.connect({path!r}, isolation_level=None)\n"
                "c.execute('BEGIN EXCLUSIVE')\n"
                "print('locked', flush=True)\n"
                "sys.stdin.read()\n"
                "c.execute('ROLLBACK')\n")
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        assert line.strip() == "locked", line

    def release(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()  # type: ignore[union-attr]
            self.proc.wait(10)


@pytest.fixture
def outage(request, tmp_path):
    """(store URL, take_down(), bring_back()) for each way a store can be down."""
    kind = request.param
    if kind == "sqlite-locked":
        path = str(tmp_path / "durably.db")
        locks: list[SqliteLock] = []

        def down() -> None:
            locks.append(SqliteLock(path))

        def back() -> None:
            for lock in locks:
                lock.release()

        yield f"sqlite:///{path}", down, back
        back()
        return
    from tests.tcp_proxy import TcpProxy

    pg = request.getfixturevalue("pg_url")
    proxy = TcpProxy(5432)
    proxy.start()
    url = pg.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    down = proxy.refuse if kind == "pg-refused" else proxy.black_hole
    yield url, down, proxy.restore
    proxy.cut()


OUTAGES = ["sqlite-locked", "pg-refused", "pg-black-holed"]


# --- every path answers within the deadline -------------------------------------------------


@pytest.mark.parametrize("outage", OUTAGES, indirect=True)
@pytest.mark.parametrize("opened", [True, False], ids=["store-opened", "store-never-opened"])
async def test_every_send_path_gives_up_within_the_deadline(outage, opened):
    url, down, back = outage
    app, ran = make(url)
    clock = Clock()
    gone = f"gone-{uuid.uuid4().hex[:8]}"
    try:
        if opened:
            app.send(durably.Event("deadline.greet", {"n": 0}))  # store opened, functions registered
        else:
            durably.App("prep", settings=settings(url)).runtime.close()  # the schema exists; this app never opened
        down()
        asgi = app.asgi()
        async with client(asgi) as c:
            with clock.answer():
                r = await c.post("/api/v1/events", json={"name": "deadline.greet", "id": gone}, headers=EVENT_H)
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "store_unavailable" and r.headers["retry-after"].isdigit()

            with clock.answer():
                r = await c.post(f"/api/v1/cron/{TICK}?window=3600", headers=CRON_H)
            assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable", r.text
            assert r.headers["retry-after"].isdigit()

            with clock.answer():
                r = await c.post("/api/v1/functions/greet/invoke", json={"data": {}}, headers=ADMIN_H)
            assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable", r.text

        with clock.answer(), pytest.raises(StoreUnavailable):
            app.send(durably.Event("deadline.greet", {"n": 1}, id=gone + "-sync"))
        with clock.answer(), pytest.raises(StoreUnavailable):
            await app.send_async(durably.Event("deadline.greet", {"n": 2}, id=gone + "-async"))
        assert ran == []  # no inline work without the fallback

        back()
        # What was given up on is never written once the store answers again: a send now
        # runs after everything queued before it, and none of those events exists.
        done = wait_for(lambda: _try_send(app), 30, interval=0.2, what="the store to answer again")
        assert done.runs
        for event_id in (gone, gone + "-sync", gone + "-async"):
            assert app.store.get_event(event_id).result() is None, event_id
        assert not [r for r in runs_of(app) if r["event_id"].startswith("cron:")]
    finally:
        back()
        app.close()


def _try_send(app: durably.App):
    try:
        return app.send(durably.Event("deadline.greet", {"n": "after"}))
    except StoreUnavailable:
        return None


# --- the cron endpoint's inline fallback ------------------------------------------------------


@pytest.mark.parametrize("outage", OUTAGES, indirect=True)
async def test_inline_fallback_runs_a_window_once_and_the_store_never_dispatches_it(outage):
    url, down, back = outage
    app, ran = make(url, DURABLY_INLINE_FALLBACK="true")
    clock = Clock()
    try:
        app.send(durably.Event("deadline.greet"))
        _not_near_window_end(3600)
        down()
        asgi = app.asgi()
        async with client(asgi) as c:
            with clock.answer():
                first = await c.post(f"/api/v1/cron/{TICK}?window=3600", headers=CRON_H)
            assert first.status_code == 200, first.text
            body = first.json()
            assert body["mode"] == "inline" and body["duplicate"] is False
            assert [x["status"] for x in body["inline"]] == ["completed"]
            with clock.answer():
                again = await c.post(f"/api/v1/cron/{TICK}?window=3600", headers=CRON_H)
            assert again.status_code == 200 and again.json()["duplicate"] is True
            assert ran == [body["eventId"]]

            back()
            # The store answers again: the window is recorded as dispatched in the store as
            # soon as it does, so no process dispatches it (no Redis here to tell them).
            wait_for(lambda: not asgi.state.durably.inline_unrecorded, 30, interval=0.05,
                     what="the inline window to be recorded in the store")
            other, other_ran = make(url, "other-process")
            try:
                async with client(other.asgi()) as oc:
                    r = await oc.post(f"/api/v1/cron/{TICK}?window=3600", headers=CRON_H)
                assert r.status_code == 200 and r.json()["duplicate"] is True, r.text
                assert r.json()["eventId"] == body["eventId"]
            finally:
                other.close()
            r = await c.post(f"/api/v1/cron/{TICK}?window=3600", headers=CRON_H)
            assert r.status_code == 200 and r.json()["duplicate"] is True, r.text
        assert ran == [body["eventId"]] and other_ran == []
        assert app.store.get_event(body["eventId"]).result() is None
        assert runs_of(app, function_id="process") == []
    finally:
        back()
        app.close()


async def test_inline_runs_once_across_processes_with_redis(pg_url):
    """Two processes (two Apps, each its own memory of inline windows) share Redis: a
    black-holed store makes both fall back, and the window's work runs once between them."""
    import redis

    from tests.conftest import REDIS_URL
    from tests.tcp_proxy import TcpProxy

    proxy = TcpProxy(5432)
    proxy.start()
    url = pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    env = f"t{uuid.uuid4().hex[:8]}"
    extra = {"DURABLY_INLINE_FALLBACK": "true", "DURABLY_REDIS_URL": REDIS_URL}
    apps = [make(url, f"p{i}", **extra) for i in range(2)]
    for app, _ in apps:
        app._settings = app.settings.replace(env=env)
    clock = Clock()
    try:
        for app, _ in apps:
            app.send(durably.Event("deadline.greet"))
        _not_near_window_end(3600)
        proxy.black_hole()
        answers = []
        for app, _ in apps * 2:
            async with client(app.asgi()) as c:
                with clock.answer():
                    r = await c.post(f"/api/v1/cron/{TICK}?window=3600", headers=CRON_H)
            assert r.status_code == 200, r.text
            answers.append(r.json())
        assert [a["duplicate"] for a in answers] == [False, True, True, True]
        assert sum(len(ran) for _, ran in apps) == 1
        assert redis.Redis.from_url(REDIS_URL).exists(f"durably:{env}:inline:{answers[0]['dispatchKey']}")
    finally:
        proxy.cut()
        for app, _ in apps:
            app.close()
        r = redis.Redis.from_url(REDIS_URL)
        for key in r.scan_iter(f"durably:{env}:*"):
            r.delete(key)


# --- the CLI -----------------------------------------------------------------------------------


@pytest.mark.parametrize("outage", OUTAGES, indirect=True)
def test_durably_send_exits_1_with_one_line_within_the_deadline(outage):
    url, down, back = outage
    env = cli_env(url, DURABLY_DISPATCH_TIMEOUT=str(TIMEOUT))
    assert run_cli(["migrate"], env).returncode == 0  # `durably send` sends to a store, never creates one
    started = time.monotonic()
    ok = run_cli(["send", "deadline.cli", "--data", "{}"], env)
    healthy = time.monotonic() - started  # start-up, imports, opening the store: the baseline
    assert ok.returncode == 0, ok.stderr
    down()
    try:
        started = time.monotonic()
        r = run_cli(["send", "deadline.cli", "--data", "{}", "--id", "cli-gone"], env)
        took = time.monotonic() - started
    finally:
        back()
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "store" in lines[0], r.stderr
    assert took < healthy + TIMEOUT + SLACK, f"took {took:.2f} s; healthy {healthy:.2f} s"
    ok = run_cli(["send", "deadline.cli", "--data", "{}"], env)
    assert ok.returncode == 0, ok.stderr
    shown = run_cli(["runs", "--json"], env)
    assert "cli-gone" not in shown.stdout
