"""``App.dispatch_async`` / ``record_dispatch_async``: a web app's own cron route on the same
window ledger as ``POST /api/v1/cron/{event}``."""

from __future__ import annotations

import asyncio

import pytest

import durably
from tests.helpers import runs_of


def test_dispatch_sends_once_per_window_and_a_recorded_window_is_never_sent(app_factory):
    app = app_factory()

    @app.function(id="tick", trigger=durably.on_event("app/tick"))
    async def tick(ctx: durably.Context) -> None:
        return None

    async def main() -> None:
        first = await app.dispatch_async("app/tick", window=3600, data={"source": "cron"})
        assert first["duplicate"] is False and len(first["runs"]) == 1
        assert first["eventId"] == f"cron:app/tick:{first['windowStart']}" == f"cron:{first['dispatchKey']}"
        again = await app.dispatch_async("app/tick", window=3600)
        assert again["duplicate"] is True and again["runs"] == [] and again["eventId"] == first["eventId"]
        # A window whose work ran elsewhere (inline), recorded: never dispatched.
        other = await app.dispatch_async("app/other", window=7200)
        assert other["duplicate"] is False
        start = (await app.dispatch_async("app/tock", window=1800))["windowStart"]
        assert await app.record_dispatch_async("app/late", start) is True
        assert await app.record_dispatch_async("app/late", start) is False
        late = await app.dispatch_async("app/late", window=1800)
        assert late["windowStart"] != start or (late["duplicate"] is True and late["runs"] == [])
        with pytest.raises(durably.InvalidInput):
            await app.dispatch_async("app/tick", window=0)

    asyncio.run(main())
    runs = runs_of(app, function_id="tick")
    assert len(runs) == 1
