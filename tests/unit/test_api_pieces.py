"""Pure pieces of the HTTP API and its shared operations: time filters, cursors, keys, buckets."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from importlib import resources

import pytest

from durably.admin import decode_cursor, encode_cursor, parse_time
from durably.config import Settings
from durably.errors import ConfigError, InvalidInput
from durably.server.auth import Keys
from durably.store.reads import STEP_BUCKETS

NOW = 1_800_000_000.0


def test_time_filters_take_iso_times_and_durations_ago():
    assert parse_time("2025-01-31T09:00:00Z", name="since", now=NOW) == datetime(
        2025, 1, 31, 9, tzinfo=timezone.utc).timestamp()
    assert parse_time("2025-01-31T10:00:00+01:00", name="since", now=NOW) == parse_time(
        "2025-01-31T09:00:00", name="since", now=NOW)  # no offset: UTC
    assert parse_time("1h", name="since", now=NOW) == NOW - 3600
    assert parse_time("1h30m", name="since", now=NOW) == NOW - 5400
    assert parse_time(None, name="since", now=NOW) is None
    with pytest.raises(InvalidInput, match=r"^until: 'last week' is neither"):
        parse_time("last week", name="until", now=NOW)


def test_cursors_round_trip_and_garbage_is_a_clear_error():
    c = encode_cursor(1790000000.123456, "01ABC")
    assert re.fullmatch(r"[A-Za-z0-9_-]+", c)
    assert decode_cursor(c) == (1790000000.123456, "01ABC")
    for bad in ("", "zzz", encode_cursor(1.0, "x")[:-3], "WyJhIiwgMV0"):  # the last: ["a", 1]
        with pytest.raises(InvalidInput, match="^cursor: "):
            decode_cursor(bad)


def _settings(env: str, **keys: str) -> Settings:
    return Settings.load({"DURABLY_ENV": env, **keys})


def test_keys_outside_dev_are_all_required_and_empty_counts_as_missing():
    with pytest.raises(ConfigError) as exc:
        Keys.from_settings(_settings("preview", DURABLY_EVENT_KEY="e", DURABLY_ADMIN_TOKEN=""))
    assert "DURABLY_ADMIN_TOKEN" in str(exc.value) and "CRON_SECRET" in str(exc.value)
    assert "DURABLY_EVENT_KEY" not in str(exc.value)
    keys = Keys.from_settings(_settings("preview", DURABLY_EVENT_KEY="e", DURABLY_ADMIN_TOKEN="a", CRON_SECRET="c"))
    assert keys.open_kinds() == [] and keys.required("admin") and not keys.required("none")
    dev = Keys.from_settings(_settings("dev", DURABLY_ADMIN_TOKEN="a"))
    assert dev.open_kinds() == ["event", "cron"] and dev.required("admin") and not dev.required("event")
    assert "a" not in repr(_settings("dev", DURABLY_ADMIN_TOKEN="a").admin_token)  # secrets never print


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_step_duration_buckets_match_the_sql(dialect):
    folder = resources.files("durably.store").joinpath(f"sql/{dialect}")
    if not folder.joinpath("queries.sql").is_file():
        pytest.skip(f"no {dialect} queries")
    text = folder.joinpath("queries.sql").read_text()
    block = text.split("-- name: metrics_step_durations", 1)[1].split("-- name:", 1)[0]
    pairs = [(float(b), int(i)) for b, i in re.findall(r"<= ([\d.]+) THEN (\d+)", block)]
    assert [i for _, i in pairs] == list(range(len(STEP_BUCKETS)))
    assert tuple(b for b, _ in pairs) == STEP_BUCKETS
    assert f"ELSE {len(STEP_BUCKETS)} END" in block
