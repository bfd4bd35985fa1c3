"""Leadership: which of the running schedulers fires cron ticks and prunes.

Any number of schedulers may run (every worker has one unless ``--no-scheduler``). One of
them leads: it holds a leased row in ``durably_leaders`` (renewed well within its TTL on the
store's clock) and alone fires cron ticks and prunes; the others stay hot standby and try
to take the row over, which they can as soon as it expires, so a dead leader is replaced
within one lease period (``DURABLY_LEASE_SECONDS``); a leader that stops cleanly hands the
row over at once. Leadership only saves work: a tick advances by compare-and-set and its
event id is unique, so even two schedulers that both believe they lead fire each tick
once.

Why a leased row rather than a PostgreSQL advisory lock: it works the same on SQLite and
PostgreSQL, through connection poolers, and on the store's clock; a leader that is paused
or cut off loses it when the TTL runs out instead of holding it for as long as its
connection looks alive.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from ..store.base import aw

log = logging.getLogger("durably.scheduler")

LEADERSHIP = "scheduler"
# As fractions of the lease period: the leader's row lives for LEADER_TTL and is renewed
# every LEADER_RENEW (so two renewals may fail before it expires); a standby tries to take
# it every STANDBY_RETRY. A dead leader is replaced within TTL + STANDBY_RETRY < 1 lease.
LEADER_TTL = 0.6
LEADER_RENEW = 0.2
STANDBY_RETRY = 0.1


class Leadership:
    """This scheduler's claim on the leader row: elect (take or renew), resign."""

    def __init__(self, store: Any, owner: str, lease: float, *, on_gain: Callable[[], None] | None = None):
        self.store = store
        self.owner = owner
        self.lease = lease
        self.on_gain = on_gain  # called when this scheduler becomes the leader
        self.leader = False
        self._lead_until = 0.0  # monotonic: past it, leadership is not trusted without a renewal

    async def elect(self) -> float:
        """Take or renew leadership; returns seconds until the next attempt."""
        ttl = self.lease * LEADER_TTL
        asked = time.monotonic()
        try:
            leader = bool(await aw(self.store.acquire_leadership(LEADERSHIP, self.owner, ttl)))
        except Exception as exc:  # noqa: BLE001 - cannot renew: step down at once
            log.warning("scheduler %s: leadership check failed: %s", self.owner, exc)
            leader = False
        if leader != self.leader:
            log.info("scheduler %s: %s", self.owner, "leader" if leader else "standby")
            if leader and self.on_gain is not None:
                self.on_gain()
        self.leader = leader
        self._lead_until = asked + ttl * 0.9 if leader else 0.0
        return self.lease * (LEADER_RENEW if leader else STANDBY_RETRY)

    @property
    def leading(self) -> bool:
        return self.leader and time.monotonic() < self._lead_until

    async def resign(self) -> None:
        if not self.leader:
            return
        self.leader = False
        try:
            await aw(self.store.release_leadership(LEADERSHIP, self.owner))
        except Exception as exc:  # noqa: BLE001 - the row expires on its own
            log.info("scheduler %s: could not hand leadership over: %s", self.owner, exc)
