from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from durably.core.cron import describe, latest_due_tick, next_tick, validate_cron
from durably.errors import InvalidInput

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")


def ts(*args, tz=UTC) -> float:
    return datetime(*args, tzinfo=tz).timestamp()


@pytest.mark.parametrize("expr", ["* * * * *", "0 9 * * 1-5", "*/15 * * * *", "*/2 * * * * *", "0 0 1 1 *"])
def test_validate_accepts(expr):
    validate_cron(expr, "UTC")


@pytest.mark.parametrize("expr", ["", "* * * *", "* * * * * * *", "61 * * * *", "* 25 * * *", "a b c d e", None])
def test_validate_rejects_naming_the_expression(expr):
    with pytest.raises(InvalidInput) as exc:
        validate_cron(expr, "UTC")
    assert "cron" in str(exc.value) and repr(expr) in str(exc.value)


def test_validate_rejects_unknown_zone():
    with pytest.raises(InvalidInput, match="Mars/Olympus"):
        validate_cron("* * * * *", "Mars/Olympus")


def test_next_tick_is_strictly_after():
    assert next_tick("0 * * * *", "UTC", ts(2024, 1, 1, 5, 0)) == ts(2024, 1, 1, 6, 0)
    assert next_tick("0 * * * *", "UTC", ts(2024, 1, 1, 5, 0) + 0.5) == ts(2024, 1, 1, 6, 0)
    assert next_tick("0 * * * *", "UTC", ts(2024, 1, 1, 4, 59, 59) + 0.5) == ts(2024, 1, 1, 5, 0)


def test_next_tick_seconds_field():
    assert next_tick("*/2 * * * * *", "UTC", ts(2024, 1, 1, 0, 0, 1)) == ts(2024, 1, 1, 0, 0, 2)
    assert next_tick("*/2 * * * * *", "UTC", ts(2024, 1, 1, 0, 0, 2)) == ts(2024, 1, 1, 0, 0, 4)


def test_next_tick_in_a_time_zone():
    # 09:00 in New York is 14:00 UTC in winter and 13:00 UTC after the March switch.
    first = next_tick("0 9 * * *", "America/New_York", ts(2024, 3, 9, 12, 0))
    assert first == ts(2024, 3, 9, 14, 0)
    assert next_tick("0 9 * * *", "America/New_York", first) == ts(2024, 3, 10, 13, 0)
    assert next_tick("0 9 * * *", "Europe/Berlin", ts(2024, 7, 1, 0, 0)) == ts(2024, 7, 1, 7, 0)


def test_dst_spring_forward_runs_once_on_the_skipped_day():
    # 02:30 does not exist in Berlin on 2024-03-31: the tick still happens once that day.
    ticks = _ticks("30 2 * * *", "Europe/Berlin", ts(2024, 3, 30, 12, 0), ts(2024, 4, 1, 12, 0))
    days = [datetime.fromtimestamp(t, BERLIN).date().isoformat() for t in ticks]
    assert days == ["2024-03-31", "2024-04-01"]
    assert datetime.fromtimestamp(ticks[1], BERLIN).strftime("%H:%M") == "02:30"


def test_dst_fall_back_runs_once_on_the_repeated_day():
    # 02:30 happens twice in Berlin on 2024-10-27: the job runs once.
    ticks = _ticks("30 2 * * *", "Europe/Berlin", ts(2024, 10, 26, 12, 0), ts(2024, 10, 28, 12, 0))
    assert [datetime.fromtimestamp(t, BERLIN).date().isoformat() for t in ticks] == ["2024-10-27", "2024-10-28"]
    assert ticks[1] - ticks[0] == 25 * 3600  # the day was 25 hours long


def _ticks(expr, tz, start, end):
    out, t = [], start
    while True:
        t = next_tick(expr, tz, t)
        if t > end:
            return out
        out.append(t)


def test_latest_due_tick_returns_only_the_latest_missed():
    after, now = ts(2024, 1, 1, 0, 0), ts(2024, 1, 1, 5, 30)
    assert latest_due_tick("0 * * * *", "UTC", after, now) == ts(2024, 1, 1, 5, 0)


def test_latest_due_tick_none_when_nothing_due():
    assert latest_due_tick("0 * * * *", "UTC", ts(2024, 1, 1, 5, 0), ts(2024, 1, 1, 5, 30)) is None
    assert latest_due_tick("0 * * * *", "UTC", ts(2024, 1, 1, 5, 0, 0) + 0.25, ts(2024, 1, 1, 5, 59, 59)) is None


def test_latest_due_tick_includes_now_and_excludes_after():
    assert latest_due_tick("0 * * * *", "UTC", ts(2024, 1, 1, 4, 0), ts(2024, 1, 1, 5, 0)) == ts(2024, 1, 1, 5, 0)
    assert latest_due_tick("0 * * * *", "UTC", ts(2024, 1, 1, 5, 0), ts(2024, 1, 1, 5, 59)) is None


def test_latest_due_tick_in_a_time_zone_across_dst():
    # Down from before the spring switch until the next afternoon: one tick, the latest.
    got = latest_due_tick("0 9 * * *", "America/New_York", ts(2024, 3, 8, 0, 0), ts(2024, 3, 10, 20, 0))
    assert got == ts(2024, 3, 10, 13, 0)


def test_latest_due_tick_after_a_long_outage_is_recent():
    # Down for a month: the latest tick fires; the search does not walk the whole month.
    got = latest_due_tick("*/5 * * * *", "UTC", ts(2024, 1, 1, 0, 0), ts(2024, 2, 1, 0, 2))
    assert got == ts(2024, 2, 1, 0, 0)


def test_describe():
    text = describe("0 9 * * *", "UTC")
    assert "09:00" in text and "UTC" in text and "day" in text
    assert "Europe/Berlin" in describe("30 2 * * 1", "Europe/Berlin")


def test_ticks_between_is_inclusive_in_the_schedules_time_zone():
    from datetime import datetime, timezone

    from durably.core.cron import ticks_between

    def at(text: str) -> float:
        return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()

    # 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC once summer time starts (2026-03-29).
    ticks = ticks_between("0 9 * * *", "Europe/Berlin", at("2026-03-27T08:00:00"), at("2026-03-30T07:00:00"), 10)
    assert [datetime.fromtimestamp(t, timezone.utc).strftime("%d %H:%M") for t in ticks] == [
        "27 08:00", "28 08:00", "29 07:00", "30 07:00"]  # both ends included
    assert ticks_between("0 9 * * *", "UTC", at("2026-03-27T09:00:01"), at("2026-03-28T08:59:59"), 10) == []
    # At most limit + 1: the caller can tell the range holds more than it asked for.
    assert len(ticks_between("* * * * *", "UTC", at("2026-01-01T00:00:00"), at("2026-01-02T00:00:00"), 5)) == 6
