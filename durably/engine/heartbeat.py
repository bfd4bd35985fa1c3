"""The worker's heartbeat: one write that refreshes its row in the store (what ``durably
health`` lists as live workers) and extends the leases of the runs it holds, on the
store's clock. A run whose worker stops heartbeating is requeued after its lease
(``recovery``)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from ..store.base import aw

log = logging.getLogger("durably.worker")


def interval(lease: float) -> float:
    """Seconds between two heartbeats: a third of the lease (two may fail before it expires)."""
    return max(0.2, lease / 3)


async def heartbeat(store: Any, info: Callable[[], dict], lease: float, stop: asyncio.Event) -> None:
    """Heartbeat every ``interval(lease)`` until ``stop`` is set; a failed beat is logged and retried."""
    every = interval(lease)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=every)
            return
        except asyncio.TimeoutError:
            pass
        try:
            await aw(store.heartbeat(info(), lease))
        except Exception as exc:  # noqa: BLE001 - keep trying; leases outlive short outages
            log.warning("heartbeat failed: %s", exc)
