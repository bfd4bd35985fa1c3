"""Loads a dialect's named statements (``sql/<dialect>/queries.sql``) once."""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from typing import LiteralString

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.M)


@lru_cache(maxsize=None)
def load(dialect: str) -> dict[str, LiteralString]:
    text = resources.files("durably.store").joinpath(f"sql/{dialect}/queries.sql").read_text()
    parts = _NAME.split(text)
    out: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        lines = [ln for ln in body.strip().splitlines() if not ln.lstrip().startswith("--")]
        sql = "\n".join(lines).strip().rstrip(";")
        if name in out:
            raise RuntimeError(f"duplicate query name {name!r} in {dialect}/queries.sql")
        out[name] = sql
    return out  # type: ignore[return-value]


def migrations(dialect: str) -> list[tuple[int, str, str]]:
    """``(version, name, sql)`` of every ``NNNN_name.sql`` file, in order."""
    folder = resources.files("durably.store").joinpath(f"sql/{dialect}")
    out = []
    for entry in folder.iterdir():
        m = re.match(r"^(\d{4})_(\w+)\.sql$", entry.name)
        if m:
            out.append((int(m.group(1)), m.group(2), entry.read_text()))
    return sorted(out)
