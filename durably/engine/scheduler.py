"""Scheduler duties: cron ticks, timeouts, lease recovery and retention.

Any number of schedulers may run (every worker has one unless ``--no-scheduler``). One of
them leads: it holds a leased row in ``durably_leaders`` (renewed well within its TTL on the
store's clock) and alone fires cron ticks and prunes; the others stay hot standby and try
to take the row over, which they can as soon as it expires, so a dead leader is replaced
within one lease period (``DURABLY_LEASE_SECONDS``); a leader that stops cleanly hands the
row over at once. Leadership only saves work: a tick advances by compare-and-set and its
event id is unique, so even two schedulers that both believe they lead fire each tick
once. Requeueing an expired lease and enforcing timeouts are conditional updates, safe to
run everywhere, so every scheduler does them. Timers (sleeps, waits, backoffs) need no
scheduler: a suspended run carries the time it becomes claimable.

Why a leased row rather than a PostgreSQL advisory lock: it works the same on SQLite and
PostgreSQL, through connection poolers, and on the store's clock; a leader that is paused
or cut off loses it when the TTL runs out instead of holding it for as long as its
connection looks alive.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import TYPE_CHECKING

from ..core.cron import next_tick
from ..core.durations import parse_duration
from ..core.ids import new_id
from ..store.base import aw

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger("durably.scheduler")

REGISTRY_REFRESH = 5.0
LEADERSHIP = "scheduler"
# As fractions of the lease period: the leader's row lives for LEADER_TTL and is renewed
# every LEADER_RENEW (so two renewals may fail before it expires); a standby tries to take
# it every STANDBY_RETRY. A dead leader is replaced within TTL + STANDBY_RETRY < 1 lease.
LEADER_TTL = 0.6
LEADER_RENEW = 0.2
STANDBY_RETRY = 0.1


class Scheduler:
    def __init__(self, app: "App", *, owner: str | None = None):
        self.app = app
        self.lease = app.settings.lease_seconds
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{new_id()[-8:]}"
        self.leader = False
        self._lead_until = 0.0  # monotonic: past it, leadership is not trusted without a renewal
        self._due: dict[tuple[str, str, str], float] = {}
        self._configs: dict[str, dict] = {}
        after = app.settings.prune_after
        self.prune_after = parse_duration(after, name="DURABLY_PRUNE_AFTER") if after else None

    async def _elect(self) -> float:
        """Take or renew leadership; returns seconds until the next attempt."""
        ttl = self.lease * LEADER_TTL
        asked = time.monotonic()
        try:
            leader = bool(await aw(self.app.store.acquire_leadership(LEADERSHIP, self.owner, ttl)))
        except Exception as exc:  # noqa: BLE001 - cannot renew: step down at once
            log.warning("scheduler %s: leadership check failed: %s", self.owner, exc)
            leader = False
        if leader != self.leader:
            log.info("scheduler %s: %s", self.owner, "leader" if leader else "standby")
            if leader:
                self._due.clear()  # fire what is due now (a tick missed during the hand-over fires once)
        self.leader = leader
        self._lead_until = asked + ttl * 0.9 if leader else 0.0
        return self.lease * (LEADER_RENEW if leader else STANDBY_RETRY)

    @property
    def leading(self) -> bool:
        return self.leader and time.monotonic() < self._lead_until

    async def _resign(self) -> None:
        if not self.leader:
            return
        self.leader = False
        try:
            await aw(self.app.store.release_leadership(LEADERSHIP, self.owner))
        except Exception as exc:  # noqa: BLE001 - the row expires on its own
            log.info("scheduler %s: could not hand leadership over: %s", self.owner, exc)

    def _now(self) -> float:
        """The store's clock, read at the top of the loop and advanced by this host's monotonic clock."""
        at, mono = self._clock_at
        return at + (time.monotonic() - mono)

    async def run(self, stop: asyncio.Event) -> None:
        from .. import retention

        store = self.app.store
        next_registry = 0.0
        next_recover = 0.0
        next_expire = 0.0
        next_elect = 0.0
        next_prune = 0.0
        self._clock_at = (self.app.clock(), time.monotonic())
        try:
            while not stop.is_set():
                try:
                    # Cron and leases run on the store's clock (the database's, on PostgreSQL),
                    # never on this host's, which may be skewed.
                    self._clock_at = (await aw(store.now()), time.monotonic())
                    now = self._now()
                    if now >= next_elect:
                        next_elect = now + await self._elect()
                    if now >= next_registry:
                        self._configs = await aw(store.read("registry"))
                        next_registry = now + REGISTRY_REFRESH
                    if self.leading:
                        await self._fire_due(now)
                    if now >= next_expire:
                        expired = await aw(store.expire_runs())
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
                    if self.prune_after and self.leading and now >= next_prune:
                        pruned = await retention.prune_async(store, self.prune_after)
                        if any(pruned.values()):
                            log.info("retention: pruned %s", ", ".join(f"{v} {k}" for k, v in pruned.items() if v))
                        next_prune = now + retention.interval_for(self.prune_after)
                except Exception as exc:  # noqa: BLE001 - a scheduler duty failed: log, go on
                    log.warning("scheduler: %s", exc)
                due = list(self._due.values()) if self.leading else []
                wait = min([next_registry, next_recover, next_expire, next_elect, *due]) - self._now()
                try:
                    await asyncio.wait_for(stop.wait(), timeout=max(0.01, min(wait, 1.0)))
                except asyncio.TimeoutError:
                    pass
        finally:
            await self._resign()

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
                run_id = await aw(store.fire_cron(fid, t["cron"], t["tz"]))
                if run_id:
                    log.info("cron %s (%s %s): run %s", fid, t["cron"], t["tz"], run_id)
                self._due[key] = next_tick(t["cron"], t["tz"], self._now())
        for key in list(self._due):
            if key not in live:
                del self._due[key]
