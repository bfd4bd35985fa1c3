from datetime import timedelta

import pytest

from durably.core.durations import format_duration, parse_duration
from durably.errors import InvalidInput


@pytest.mark.parametrize("text,seconds", [
    ("250ms", 0.25), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("1d", 86400.0), ("2w", 1209600.0),
    ("1h30m", 5400.0), ("1m 30s", 90.0), ("1.5s", 1.5), (" 10S ", 10.0), ("0s", 0.0),
])
def test_parse_strings(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


def test_parse_numbers_and_timedelta():
    assert parse_duration(3) == 3.0
    assert parse_duration(0.5) == 0.5
    assert parse_duration(timedelta(minutes=2, seconds=1)) == 121.0


@pytest.mark.parametrize("bad", ["", "abc", "10", "5 minutes", "1x", "s", "1h-5m", "ms250", "1.5.2s"])
def test_parse_rejects_bad_strings_naming_the_value(bad):
    with pytest.raises(InvalidInput) as exc:
        parse_duration(bad, name="sleep duration")
    assert "sleep duration" in str(exc.value)
    assert repr(bad) in str(exc.value)


@pytest.mark.parametrize("bad", [True, None, [1], {"s": 1}])
def test_parse_rejects_other_types(bad):
    with pytest.raises(InvalidInput):
        parse_duration(bad)


@pytest.mark.parametrize("bad", [-1, -0.5, timedelta(seconds=-1)])
def test_parse_rejects_negative(bad):
    with pytest.raises(InvalidInput, match="negative"):
        parse_duration(bad)


@pytest.mark.parametrize("seconds,text", [
    (0.25, "250ms"), (0, "0ms"), (30, "30s"), (90, "90s"), (300, "5m"), (3600, "1h"), (86400, "1d"), (1.5, "1.5s"),
])
def test_format(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [0.25, 1, 30, 60, 90, 300, 3600, 7200, 86400, 1.5])
def test_format_round_trips(seconds):
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)
