"""The scheduler: one loop that runs the scheduler's duties, each in its own module.

- ``leader``: one scheduler of all that run leads (a leased row); alone it fires cron
  ticks and prunes. Leadership only saves work: ticks are unique keys in the store.
- ``crons``: fire the due cron ticks of the store's registry (leader only).
- ``timeouts``: cancel runs not started in time, fail runs not finished in time.
- ``recovery``: requeue runs whose worker stopped heartbeating.
- ``retention``: prune finished runs past ``DURABLY_PRUNE_AFTER`` (leader only).

Any number of schedulers may run (every worker has one unless ``--no-scheduler``).
Requeueing an expired lease and enforcing timeouts are conditional updates, safe to run
everywhere, so every scheduler does them. Timers (sleeps, waits, backoffs) need no
scheduler: a suspended run carries the time it becomes claimable.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import Any, Callable

from ..core.ids import new_id
from ..store.base import aw
from . import recovery, retention, timeouts
from .crons import CronTicks
from .leader import LEADER_RENEW, LEADER_TTL, LEADERSHIP, STANDBY_RETRY, Leadership
from .registry import Registry

__all__ = ["Scheduler", "LEADER_TTL", "LEADER_RENEW", "STANDBY_RETRY", "LEADERSHIP", "REGISTRY_REFRESH"]

log = logging.getLogger("durably.scheduler")

REGISTRY_REFRESH = 5.0  # seconds between two reads of the store's registry (new cron schedules)


class Scheduler:
    """Runs the scheduler's duties on ``store`` until stopped.

    ``clock`` is the store's clock as this process knows it (read once before the first
    ``store.now()``), ``lease`` the lease period in seconds, ``registry`` where the cron
    schedules come from, ``prune_after`` the retention in seconds (None: never prune).
    """

    def __init__(self, store: Any, clock: Callable[[], float], lease: float, registry: Registry, *,
                 prune_after: float | None = None, owner: str | None = None):
        self.store = store
        self.clock = clock
        self.lease = lease
        self.registry = registry
        self.prune_after = prune_after
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{new_id()[-8:]}"
        self.crons = CronTicks(store)
        # A new leader fires what is due now (a tick missed during the hand-over fires once).
        self.leadership = Leadership(store, self.owner, lease, on_gain=self.crons.reset)
        self._configs: dict[str, dict] = {}
        self._clock_at = (clock(), time.monotonic())

    @property
    def leader(self) -> bool:
        return self.leadership.leader

    @property
    def leading(self) -> bool:
        return self.leadership.leading

    @property
    def _due(self) -> dict:
        return self.crons.due

    def _now(self) -> float:
        """The store's clock, read at the top of the loop and advanced by this host's monotonic clock."""
        at, mono = self._clock_at
        return at + (time.monotonic() - mono)

    async def run(self, stop: asyncio.Event) -> None:
        store = self.store
        next_registry = 0.0
        next_recover = 0.0
        next_expire = 0.0
        next_elect = 0.0
        next_prune = 0.0
        self._clock_at = (self.clock(), time.monotonic())
        try:
            while not stop.is_set():
                try:
                    # Cron and leases run on the store's clock (the database's, on PostgreSQL),
                    # never on this host's, which may be skewed.
                    self._clock_at = (await aw(store.now()), time.monotonic())
                    now = self._now()
                    if now >= next_elect:
                        next_elect = now + await self.leadership.elect()
                    if now >= next_registry:
                        self._configs = await self.registry.configs()
                        next_registry = now + REGISTRY_REFRESH
                    if self.leading:
                        await self.crons.fire_due(self._configs, now, self._now)
                    if now >= next_expire:
                        await timeouts.expire(store)
                        next_expire = now + timeouts.INTERVAL
                    if now >= next_recover:
                        await recovery.recover(store)
                        next_recover = now + recovery.interval(self.lease)
                    if self.prune_after and self.leading and now >= next_prune:
                        await retention.prune_due(store, self.prune_after)
                        next_prune = now + retention.interval_for(self.prune_after)
                except Exception as exc:  # noqa: BLE001 - a scheduler duty failed: log, go on
                    log.warning("scheduler: %s", exc)
                due = list(self.crons.due.values()) if self.leading else []
                wait = min([next_registry, next_recover, next_expire, next_elect, *due]) - self._now()
                try:
                    await asyncio.wait_for(stop.wait(), timeout=max(0.01, min(wait, 1.0)))
                except asyncio.TimeoutError:
                    pass
        finally:
            await self.leadership.resign()
