"""Cron schedules in a time zone, on cronsim."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from ..errors import InvalidInput

# Do not search further back than this for a missed tick: a tick missed while everything
# was down fires once on restart, so only the latest due tick matters.
_LOOKBACK_SECONDS = 2 * 86400


def zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"unknown time zone {tz!r} (use an IANA name such as 'UTC' or 'Europe/Berlin')") from None



def validate_cron(expr: str, tz: str = "UTC") -> None:
    if not isinstance(expr, str) or len(expr.split()) not in (5, 6):
        raise InvalidInput(f"invalid cron expression {expr!r}: use 5 fields (or 6 with seconds first)")
    tzinfo = zone(tz)
    try:
        CronSim(expr, datetime.now(tzinfo))
    except CronSimError as exc:
        raise InvalidInput(f"invalid cron expression {expr!r}: {exc}") from None


def next_tick(expr: str, tz: str, after: float) -> float:
    """The first tick strictly after ``after`` (epoch seconds)."""
    tzinfo = zone(tz)
    start = datetime.fromtimestamp(after, tzinfo)
    return next(iter(CronSim(expr, start))).timestamp()


def latest_due_tick(expr: str, tz: str, after: float, now: float) -> float | None:
    """The latest tick in ``(after, now]``, or None when none is due."""
    tzinfo = zone(tz)
    start = max(after, now - _LOOKBACK_SECONDS)
    latest = None
    for t in CronSim(expr, datetime.fromtimestamp(start, tzinfo)):
        ts = t.timestamp()
        if ts > now:
            break
        if ts > after:
            latest = ts
    return latest


def ticks_between(expr: str, tz: str, start: float, end: float, limit: int) -> list[float]:
    """The ticks in ``[start, end]`` (epoch seconds) in the schedule's time zone, oldest first;
    at most ``limit + 1``, so a caller can tell that the range holds more than ``limit``."""
    tzinfo = zone(tz)
    out: list[float] = []
    for t in CronSim(expr, datetime.fromtimestamp(start - 1, tzinfo)):
        ts = t.timestamp()
        if ts > end:
            break
        if ts >= start:
            out.append(ts)
            if len(out) > limit:
                break
    return out


def describe(expr: str, tz: str = "UTC") -> str:
    """A reading such as "every day at 09:00 UTC"."""
    try:
        text = CronSim(expr, datetime.now(timezone.utc)).explain()
    except Exception:
        return expr
    if text:
        text = text[0].lower() + text[1:]
    return f"{text} ({tz})" if text else expr
