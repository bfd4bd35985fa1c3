"""The functions ``durably chaos`` runs: its workers load ``durably.chaos.app:app``.

* ``chaos`` (event ``durably-chaos.go``): three steps, each applying an effect keyed by
  ``ctx.step_key`` in the side table (``effects.SideStore``), then taking a moment
  (``DURABLY_CHAOS_STEP_SECONDS``), so that a worker killed with -9 is often between an effect
  and the step's checkpoint. A step returns its attempt's id: the run's output names the
  executions the engine committed.
* ``chaos-keyed`` (event ``durably-chaos.keyed``): the same under ``Concurrency(limit=1,
  key="event.data.key")``; the attempt rows carry the key, so overlaps can be found.
* ``chaos-cron`` and ``chaos-dup`` (events ``durably-chaos.cron`` and ``durably-chaos.dup``):
  targets of the duplicate cron pings and event sends; they only return.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

import durably

from .effects import SideStore

APP_ID = "durably-chaos"
STEPS = ("one", "two", "three")
GO, KEYED, CRON, DUP = "durably-chaos.go", "durably-chaos.keyed", "durably-chaos.cron", "durably-chaos.dup"
_side: SideStore | None = None


def _side_store() -> SideStore:
    global _side
    if _side is None:
        _side = SideStore.from_environ()
    return _side


def effect(ctx: durably.Context, key: Any = None) -> str:
    """One execution of a step: its attempt row, its effect (once per step key), a pause."""
    side = _side_store()
    attempt = uuid.uuid4().hex
    step_key = ctx.step_key
    assert step_key is not None  # inside ctx.step.run
    side.begin(attempt, step_key, ctx.run_id, None if key is None else str(key))
    time.sleep(float(os.environ.get("DURABLY_CHAOS_STEP_SECONDS", "0.1")))
    side.end(attempt)
    return attempt


def build(settings: Any = None) -> durably.App:
    """The chaos app (with ``settings``: for the battery's own process)."""
    app = durably.App(APP_ID, settings=settings)

    @app.function(id="chaos", trigger=durably.on_event(GO), retries=20)
    def chaos(ctx: durably.Context) -> list:
        return [ctx.step.run(name, effect, ctx) for name in STEPS]

    @app.function(id="chaos-keyed", trigger=durably.on_event(KEYED), retries=20,
                  concurrency=[durably.Concurrency(limit=1, key="event.data.key")])
    def chaos_keyed(ctx: durably.Context) -> list:
        key = (ctx.event.data or {})["key"]
        return [ctx.step.run(name, effect, ctx, key) for name in STEPS]

    @app.function(id="chaos-cron", trigger=durably.on_event(CRON))
    def chaos_cron(ctx: durably.Context) -> str:
        return ctx.run_id

    @app.function(id="chaos-dup", trigger=durably.on_event(DUP))
    def chaos_dup(ctx: durably.Context) -> str:
        return ctx.run_id

    return app


app = build()
