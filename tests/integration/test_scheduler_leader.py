"""Scheduler leadership on both stores: one leader fires cron, a standby takes over at once
when the leader stops cleanly, and within the row's TTL when the leader vanishes."""

from __future__ import annotations

import asyncio
import threading

import durably
from durably.engine.scheduler import LEADER_TTL
from tests.helpers import runs_of, wait_for


class Running:
    """A Scheduler on its own thread and event loop."""

    def __init__(self, app):
        self.sched = app.runtime.scheduler()
        self.loop = asyncio.new_event_loop()
        self.stop_ev = asyncio.Event()
        self.thread = threading.Thread(target=lambda: self.loop.run_until_complete(self.sched.run(self.stop_ev)),
                                       daemon=True)
        self.thread.start()

    def stop(self):
        self.loop.call_soon_threadsafe(self.stop_ev.set)
        self.thread.join(20)
        self.loop.close()


def _apps(app_factory, n=2):
    apps = []
    for i in range(n):
        app = app_factory(f"s{i}", lease_seconds="1")

        @app.function(id="tick", trigger=durably.on_cron("*/1 * * * * *"))
        async def tick(ctx):
            return ctx.event.data["tick"]

        app.register()
        apps.append(app)
    return apps


def test_one_leader_fires_cron_and_a_clean_stop_hands_over_at_once(app_factory):
    a, b = _apps(app_factory)
    ra, rb = Running(a), Running(b)
    try:
        wait_for(lambda: ra.sched.leader != rb.sched.leader, 10, what="exactly one leader")
        leader, standby = (ra, rb) if ra.sched.leader else (rb, ra)
        wait_for(lambda: len(runs_of(a, function_id="tick")) >= 2, 10, what="two cron runs")
        assert leader.sched.leader and not standby.sched.leader
        assert not standby.sched._due  # a standby does not even compute ticks
        leader.stop()  # a clean stop gives the row up: no wait for its TTL
        assert not leader.sched.leader
        wait_for(lambda: standby.sched.leader, 0.1 * 1 + 1, interval=0.01, what="the standby to take over")
        n = len(runs_of(a, function_id="tick"))
        wait_for(lambda: len(runs_of(a, function_id="tick")) >= n + 1, 10, what="a tick by the new leader")
    finally:
        for r in (ra, rb):
            if not r.loop.is_closed():
                r.stop()
    ticks = [r["event"]["data"]["tick"] for r in runs_of(a, function_id="tick")]
    assert len(ticks) == len(set(ticks))


def test_a_vanished_leader_is_replaced_within_its_ttl(app_factory):
    (b,) = _apps(app_factory, 1)
    # Another scheduler took the lead and vanished: its row simply stops being renewed.
    assert b.store.acquire_leadership("scheduler", "gone:1:x", 1 * LEADER_TTL).result()
    rb = Running(b)
    try:
        wait_for(lambda: rb.sched.leader, 1.0 + 1, interval=0.01, what="the standby to take over")
        wait_for(lambda: runs_of(b, function_id="tick"), 10, what="a tick by the new leader")
    finally:
        rb.stop()
