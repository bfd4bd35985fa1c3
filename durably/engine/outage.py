"""One worker's view of whether the store answers: every part of the worker (claims,
heartbeats, checkpoints) reports here, so an outage is logged once when it starts and once
when it ends, not once per retry, and every retry waits the same growing backoff."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("durably.worker")

MAX_BACKOFF = 5.0


class Outage:
    def __init__(self, who: str):
        self.who = who
        self.since: float | None = None  # the store has been unreachable since (monotonic)
        self.backoff = 0.0

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, exc: BaseException) -> float:
        """A write or read failed because the store is unreachable: the seconds to wait
        before the next try. Logged only when the store was answering until now."""
        if self.since is None:
            self.since = time.monotonic()
            log.error("worker %s: the store is unreachable (%s); waiting for it", self.who, exc)
        self.backoff = min(max(self.backoff * 2, 0.1), MAX_BACKOFF)
        return self.backoff

    def answered(self) -> None:
        """The store answered: logged once, when it had been unreachable."""
        if self.since is not None:
            log.warning("worker %s: the store is reachable again after %.1fs", self.who,
                        time.monotonic() - self.since)
            self.since = None
        self.backoff = 0.0
