"""Cron: fire the due ticks of every schedule in the store's registry (the leader's duty).

Each schedule's next tick is computed here, in its time zone, so the leader asks the store
only when a tick is due. The store fires the latest due tick at most once across every
scheduler (``fire_cron``: compare-and-set on the last tick, and a unique event id); a tick
missed while everything was down fires once, not once per missed tick.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from ..core.cron import next_tick
from ..store.base import aw

log = logging.getLogger("durably.scheduler")

Schedule = tuple[str, str, str]  # (function id, cron expression, time zone)


class CronTicks:
    """When each schedule is due next, and firing the ones that are."""

    def __init__(self, store: Any):
        self.store = store
        self.due: dict[Schedule, float] = {}  # store-clock time of each schedule's next tick

    def reset(self) -> None:
        """Forget the computed ticks: what is due now fires (a new leader missed nothing, or once)."""
        self.due.clear()

    async def fire_due(self, configs: dict[str, dict], now: float, clock: Callable[[], float]) -> None:
        """Fire each schedule of ``configs`` whose tick is due at ``now`` (``clock``: the store's)."""
        live = set()
        for fid, config in configs.items():
            for t in config.get("triggers", []):
                if "cron" not in t:
                    continue
                key = (fid, t["cron"], t["tz"])
                live.add(key)
                if self.due.get(key, 0.0) > now:
                    continue
                run_id = await aw(self.store.fire_cron(fid, t["cron"], t["tz"]))
                if run_id:
                    log.info("cron %s (%s %s): run %s", fid, t["cron"], t["tz"], run_id)
                self.due[key] = next_tick(t["cron"], t["tz"], clock())
        for key in list(self.due):
            if key not in live:
                del self.due[key]
