"""Retention: delete finished runs, their steps, old events and spent keys in small batches.

``durably prune --older-than 30d`` runs it once; with ``DURABLY_PRUNE_AFTER`` set, the
scheduler that leads runs it periodically. Each batch (``store.prune``) is one short
transaction of at most ``batch`` rows per table, with a pause between batches, so a large
backlog of old rows never holds locks long enough to slow claims down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

from ..core.records import Audit
from ..errors import InvalidInput
from ..store.base import aw

log = logging.getLogger("durably.scheduler")

DEFAULT_BATCH = 1000
PAUSE = 0.01  # between batches: other transactions get the database in between


def _more(counts: dict[str, int], batch: int) -> bool:
    return any(v >= batch for k, v in counts.items() if k != "workers")


def prune(store: Any, older_than: float, *, batch: int = DEFAULT_BATCH, pause: float = PAUSE,
          progress: Callable[[dict[str, int]], None] | None = None, audit: Audit | None = None) -> dict[str, int]:
    """Prune until nothing past retention is left; returns the rows deleted per kind.
    ``audit`` (an operator's prune) is recorded in the transaction of the first batch."""
    _check(older_than, batch)
    totals: dict[str, int] = {}
    while True:
        counts = (store.prune(older_than, batch, audit=audit) if audit is not None
                  else store.prune(older_than, batch)).result()
        audit = None
        for k, v in counts.items():
            totals[k] = totals.get(k, 0) + v
        if progress is not None:
            progress(totals)
        if not _more(counts, batch):
            return totals
        time.sleep(pause)


async def prune_async(store: Any, older_than: float, *, batch: int = DEFAULT_BATCH,
                      pause: float = PAUSE) -> dict[str, int]:
    _check(older_than, batch)
    totals: dict[str, int] = {}
    while True:
        counts = await aw(store.prune(older_than, batch))
        for k, v in counts.items():
            totals[k] = totals.get(k, 0) + v
        if not _more(counts, batch):
            return totals
        await asyncio.sleep(pause)


def interval_for(older_than: float) -> float:
    """How often the scheduler prunes: a tenth of the retention, between 1 s and 1 h."""
    return min(3600.0, max(1.0, older_than / 10))


async def prune_due(store: Any, older_than: float) -> None:
    """The scheduler's pass (leader only): prune, and log what went."""
    pruned = await prune_async(store, older_than)
    if any(pruned.values()):
        log.info("retention: pruned %s", ", ".join(f"{v} {k}" for k, v in pruned.items() if v))


def _check(older_than: float, batch: int) -> None:
    if older_than <= 0:
        raise InvalidInput(f"retention must be a positive duration, got {older_than!r} seconds")
    if batch < 1:
        raise InvalidInput(f"batch size must be >= 1, got {batch!r}")
