"""Durations: ``"250ms"``, ``"30s"``, ``"5m"``, ``"1h"``, ``"1d"``, ``"1h30m"``, timedelta or seconds."""

from __future__ import annotations

import re
from datetime import timedelta

from ..errors import InvalidInput

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(value: object, *, name: str = "duration") -> float:
    """Return seconds (a float >= 0) for a duration, or raise InvalidInput naming the value."""
    if isinstance(value, bool):
        raise InvalidInput(f"invalid {name}: {value!r}")
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "").lower()
        pos, seconds = 0, 0.0
        for m in _PART.finditer(text):
            if m.start() != pos:
                break
            seconds += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if not text or pos != len(text):
            raise InvalidInput(
                f"invalid {name} {value!r}: use a number of seconds or a string like '250ms', '30s', '5m', '1h', '1d'"
            )
    else:
        raise InvalidInput(f"invalid {name}: {value!r} (expected a string like '30s', a timedelta or seconds)")
    if seconds < 0:
        raise InvalidInput(f"invalid {name} {value!r}: must not be negative")
    return seconds


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{int(round(seconds * 1000))}ms"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
