"""Recovery: requeue the runs whose worker stopped heartbeating (its lease expired).

The requeue is a conditional update on the lease, on the store's clock, safe to run on
every scheduler at once. A requeued run goes back through the one claim like any other and
resumes from its last committed step; its old worker's late writes are fenced out.
"""

from __future__ import annotations

import logging
from typing import Any

from ..store.base import aw

log = logging.getLogger("durably.scheduler")


def interval(lease: float) -> float:
    """Seconds between two passes: a third of the lease, between 0.2 s and 5 s."""
    return max(0.2, min(lease / 3, 5.0))


async def recover(store: Any) -> None:
    """One pass: requeue every run whose lease has expired."""
    recovered = await aw(store.recover_leases())
    if recovered:
        log.warning("requeued %d run(s) whose worker stopped heartbeating: %s", len(recovered),
                    ", ".join(recovered[:10]))
