"""Timeouts: cancel runs not started in time and fail runs not finished in time.

Expiring is a conditional update (only runs still past their deadline change), safe to run
on every scheduler at once, so every scheduler does it, leader or not.
"""

from __future__ import annotations

import logging
from typing import Any

from ..store.base import aw

log = logging.getLogger("durably.scheduler")

INTERVAL = 1.0  # seconds between two passes


async def expire(store: Any) -> None:
    """One pass: end the runs whose ``Timeouts(start=..., finish=...)`` has passed."""
    expired = await aw(store.expire_runs())
    if expired["cancelled"] or expired["failed"]:
        log.warning("timeouts: cancelled %d run(s) not started in time, failed %d run(s) not "
                    "finished in time", len(expired["cancelled"]), len(expired["failed"]))
