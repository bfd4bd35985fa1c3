"""Scheduler duties: cron ticks and lease recovery.

Any number of schedulers may run (every worker has one unless ``--no-scheduler``): a
cron tick advances by compare-and-set and its event id is unique, so each tick fires
once; requeueing an expired lease is a conditional update, so a double recovery is a
no-op. Timers (sleeps, waits, backoffs) need no scheduler: a suspended run carries the
time it becomes claimable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from ..cron import next_tick
from ..store.base import NewRun, aw
from . import flow

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger("durably.scheduler")

REGISTRY_REFRESH = 5.0


class Scheduler:
    def __init__(self, app: "App"):
        self.app = app
        self.lease = app.settings.lease_seconds
        self._due: dict[tuple[str, str, str], float] = {}
        self._configs: dict[str, dict] = {}

    async def run(self, stop: asyncio.Event) -> None:
        store = self.app.store
        next_registry = 0.0
        next_recover = 0.0
        next_expire = 0.0
        while not stop.is_set():
            now = self.app.clock()
            try:
                if now >= next_registry:
                    self._configs = await aw(store.read("registry"))
                    next_registry = now + REGISTRY_REFRESH
                await self._fire_due(now)
                if now >= next_expire:
                    expired = await aw(store.expire_runs(self.app.planner, flow.match))
                    if expired["cancelled"] or expired["failed"]:
                        log.warning("timeouts: cancelled %d run(s) not started in time, failed %d run(s) not "
                                    "finished in time", len(expired["cancelled"]), len(expired["failed"]))
                    next_expire = now + 1.0
                if now >= next_recover:
                    recovered = await aw(store.recover_leases())
                    if recovered:
                        log.warning("requeued %d run(s) whose worker stopped heartbeating: %s", len(recovered),
                                    ", ".join(recovered[:10]))
                    next_recover = now + max(0.2, min(self.lease / 3, 5.0))
            except Exception as exc:  # noqa: BLE001 - a scheduler duty failed: log, go on
                log.warning("scheduler: %s", exc)
            wait = min([next_registry, next_recover, next_expire, *self._due.values()], default=now + 1) - self.app.clock()
            try:
                await asyncio.wait_for(stop.wait(), timeout=max(0.01, min(wait, 1.0)))
            except asyncio.TimeoutError:
                pass

    async def _fire_due(self, now: float) -> None:
        store = self.app.store
        live = set()
        for fid, config in self._configs.items():
            for t in config.get("triggers", []):
                if "cron" not in t:
                    continue
                key = (fid, t["cron"], t["tz"])
                live.add(key)
                if self._due.get(key, 0.0) > now:
                    continue

                def make_run(event: dict, config: dict = config) -> NewRun:
                    planned = flow.plan(config, event, None, self.app.clock(), trigger="cron")
                    assert isinstance(planned, NewRun)
                    return planned

                run_id = await aw(store.fire_cron(fid, t["cron"], t["tz"], make_run))
                if run_id:
                    log.info("cron %s (%s %s): run %s", fid, t["cron"], t["tz"], run_id)
                self._due[key] = next_tick(t["cron"], t["tz"], self.app.clock())
        for key in list(self._due):
            if key not in live:
                del self._due[key]
