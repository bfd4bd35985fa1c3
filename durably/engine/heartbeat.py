"""The worker's heartbeat: one write that refreshes its row in the store (what ``durably
health`` lists as live workers) and extends the leases of the runs it executes now (and has
claimed ahead), on the store's clock. Only those: a run whose end could not be recorded is
no longer renewed, and ``after`` hands it back once the store answers. A run whose worker
stops heartbeating is requeued after its lease (``recovery``)."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

from ..store.base import aw
from .outage import Outage


def interval(lease: float) -> float:
    """Seconds between two heartbeats: a third of the lease (two may fail before it expires)."""
    return max(0.2, lease / 3)


async def heartbeat(store: Any, info: Callable[[], dict], lease: float, stop: asyncio.Event, *,
                    runs: Callable[[], list[tuple[str, int]]], outage: Outage,
                    after: Callable[[], Awaitable[None]] | None = None) -> None:
    """Heartbeat every ``interval(lease)`` until ``stop`` is set, renewing the leases of
    ``runs()`` (``(id, lease_gen)``); then ``after()``. A failed beat is retried at the next one
    (an outage is logged by ``outage`` once, not per beat)."""
    every = interval(lease)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=every)
            return
        except asyncio.TimeoutError:
            pass
        try:
            await aw(store.heartbeat(info(), lease, runs()))
        except Exception as exc:  # noqa: BLE001 - keep trying; leases outlive short outages
            outage.failed(exc)
            continue
        outage.answered()
        if after is not None:
            await after()
