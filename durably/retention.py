"""Retention (``durably prune``, ``DURABLY_PRUNE_AFTER``): see ``durably.engine.retention``,
where the scheduler's pruning duty lives; this module keeps the names the CLI and users import."""

from __future__ import annotations

from .engine.retention import DEFAULT_BATCH, PAUSE, interval_for, prune, prune_async

__all__ = ["DEFAULT_BATCH", "PAUSE", "interval_for", "prune", "prune_async"]
