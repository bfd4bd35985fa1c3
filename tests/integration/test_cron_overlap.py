"""on_cron(..., overlap=...): a tick that comes while the previous tick's run is open starts
anyway (allow), is recorded as skipped with reason ``overlap`` (skip), or waits for the open run
to end, one tick at most (buffer_one). On both stores, through the store's own fire_cron."""

from __future__ import annotations

import pytest

import durably
from durably.errors import InvalidInput
from tests.helpers import make_app, running_worker, wait_for, wait_run

EVERY_SECOND = "* * * * * *"


def overlap_app(store_url: str) -> durably.App:
    app = make_app(store_url, "overlap", env="test")
    for mode in ("allow", "skip", "buffer_one"):
        @app.function(id=f"tick-{mode}", trigger=durably.on_cron(EVERY_SECOND, overlap=mode))
        async def tick(ctx):
            return ctx.event.data["tick"]
    return app


def ticks(app: durably.App, fid: str) -> list[dict]:
    return [e for e in app.store.list_events(name="durably/cron", limit=100).result()
            if e["id"].startswith(f"cron:{fid}:")]


def next_tick(app: durably.App, fid: str) -> str | None:
    """Fire the schedule until its next tick is recorded; the run it started, if any."""
    before = len(ticks(app, fid))
    fired: list[str | None] = []

    def due() -> bool:
        fired.append(app.store.fire_cron(fid, EVERY_SECOND, "UTC").result())
        return len(ticks(app, fid)) > before

    wait_for(due, timeout=10, interval=0.05, what=f"the next tick of {fid}")
    return next((r for r in fired if r), None)


def skipped(app: durably.App, fid: str) -> list[str]:
    return [s["reason"] for s in app.store.list_skips(function_id=fid).result()]


def test_skip_records_the_overlapping_tick(store_url):
    app = overlap_app(store_url)
    app.runtime.registry.register().result()
    app.store.fire_cron("tick-skip", EVERY_SECOND, "UTC").result()  # the schedule's state starts now
    first = next_tick(app, "tick-skip")
    assert first is not None  # no worker: the run stays queued, open
    assert next_tick(app, "tick-skip") is None and next_tick(app, "tick-skip") is None
    assert skipped(app, "tick-skip") == ["overlap", "overlap"]
    assert app.store.cancel_run(first, "cancelled").result()
    assert next_tick(app, "tick-skip") is not None  # nothing open: it starts
    app.close()


def test_buffer_one_starts_one_waiting_tick_when_the_open_run_ends(store_url):
    app = overlap_app(store_url)
    app.runtime.registry.register().result()
    app.store.fire_cron("tick-buffer_one", EVERY_SECOND, "UTC").result()
    first = next_tick(app, "tick-buffer_one")
    second = next_tick(app, "tick-buffer_one")
    assert first and second
    assert next_tick(app, "tick-buffer_one") is None  # one waits at most; this one is skipped
    assert skipped(app, "tick-buffer_one") == ["overlap"]
    assert app.store.get_run(second).result()["status"] == "queued"
    with running_worker(app, scheduler=False):
        assert wait_run(app, first)["status"] == "completed"
        assert wait_run(app, second)["status"] == "completed"  # released when the first ended
    app.close()


def test_allow_starts_every_tick(store_url):
    app = overlap_app(store_url)
    app.runtime.registry.register().result()
    app.store.fire_cron("tick-allow", EVERY_SECOND, "UTC").result()
    assert next_tick(app, "tick-allow") and next_tick(app, "tick-allow")
    assert skipped(app, "tick-allow") == []
    app.close()


def test_overlap_is_checked_and_kept_in_the_registry():
    with pytest.raises(InvalidInput, match="overlap must be one of allow, skip, buffer_one"):
        durably.on_cron("0 * * * *", overlap="queue")
    app = durably.App("overlap-config")

    @app.function(id="f", trigger=durably.on_cron("0 * * * *", overlap="skip"))
    async def f(ctx):
        return None

    from durably.core.options import FunctionConfig

    config = app.functions["f"].config()
    assert config["triggers"] == [{"cron": "0 * * * *", "tz": "UTC", "overlap": "skip"}]
    assert FunctionConfig.from_json(config).to_json()["triggers"] == config["triggers"]


def test_the_api_cli_and_dashboard_show_the_overlap_policy(store_url):
    from starlette.testclient import TestClient

    app = make_app(store_url, "overlap-show", env="dev")

    @app.function(id="hourly", trigger=durably.on_cron("0 * * * *", overlap="buffer_one"))
    async def hourly(ctx):
        return None

    app.runtime.registry.register().result()
    with TestClient(app.asgi()) as c:
        (f,) = c.get("/api/v1/functions").json()["functions"]
        assert f["triggers"][0]["overlap"] == "buffer_one"
        page = c.get("/")
        assert page.status_code == 200 and "overlap: buffer_one" in page.text, page.text[:500]
    app.close()
