"""The reference app's configuration, from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in ("1", "true", "yes", "on")


def _float(name: str, default: float) -> float:
    return float(os.environ.get(name, str(default)))


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, str(default)))


@dataclass(frozen=True)
class InboxSettings:
    database_url: str = field(default_factory=lambda: os.environ.get(
        "INBOX_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    redis_url: str = field(default_factory=lambda: os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    sweep_cron: str = field(default_factory=lambda: os.environ.get("INBOX_SWEEP_CRON", "* * * * *"))
    sweep_batch: int = field(default_factory=lambda: _int("INBOX_SWEEP_BATCH", 100))
    analytics_days: int = field(default_factory=lambda: _int("ANALYTICS_DAYS", 7))
    analytics_slo_seconds: float = field(default_factory=lambda: _float("ANALYTICS_SLO_SECONDS", 900))
    cron_secret: str | None = field(default_factory=lambda: os.environ.get("CRON_SECRET"))
    inline_fallback: bool = field(default_factory=lambda: _bool("BACKGROUND_JOBS_INLINE_EMERGENCY_FALLBACK"))
    use_durably: bool = field(default_factory=lambda: _bool("BACKGROUND_JOBS_USE_DURABLY", True))
    time_budget: float = field(default_factory=lambda: _float("BACKGROUND_JOBS_TIME_BUDGET", 50))
    dispatch_window: int = field(default_factory=lambda: _int("BACKGROUND_JOBS_DISPATCH_WINDOW", 60))
    fail_rate: float = field(default_factory=lambda: _float("INBOX_FAIL_RATE", 0))
    stale_draft_minutes: int = field(default_factory=lambda: _int("STALE_DRAFT_MINUTES", 15))
    prune_draft_days: int = field(default_factory=lambda: _int("PRUNE_DRAFT_DAYS", 30))
