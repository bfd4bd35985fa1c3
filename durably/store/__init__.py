"""Stores: where durably keeps events, runs, steps and the rest. See ``base``: ``Store``
(state-change verbs), ``Ledger`` (typed reads), ``Wakeups``.

The implementations are ``sqlite.SqliteStore`` and ``postgres.PostgresStore``; which one a
process opens is chosen in one place, ``durably.runtime.open_store``.
"""

from __future__ import annotations

from .base import (ClaimedRun, IngestResult, Ledger, NewRun, Skip, StepWrite, Store, StoreBackend, WaitWrite,
                   Wakeups, aw)

__all__ = ["Store", "Ledger", "Wakeups", "StoreBackend", "ClaimedRun", "IngestResult", "NewRun", "Skip",
           "StepWrite", "WaitWrite", "aw"]
