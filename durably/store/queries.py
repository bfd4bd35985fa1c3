"""Loads a dialect's named statements (``sql/<dialect>/queries.sql``) once."""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from typing import LiteralString

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.M)


@lru_cache(maxsize=None)
def load(dialect: str, paramstyle: str = "named") -> dict[str, LiteralString]:
    """``{name: sql}``. ``paramstyle="pyformat"`` rewrites ``:name`` to ``%(name)s`` (psycopg)."""
    if paramstyle not in ("named", "pyformat"):
        raise ValueError(f"unknown paramstyle {paramstyle!r}")
    text = resources.files("durably.store").joinpath(f"sql/{dialect}/queries.sql").read_text()
    parts = _NAME.split(text)
    out: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        lines = [ln for ln in body.strip().splitlines() if not ln.lstrip().startswith("--")]
        sql = "\n".join(lines).strip().rstrip(";")
        if name in out:
            raise RuntimeError(f"duplicate query name {name!r} in {dialect}/queries.sql")
        out[name] = to_pyformat(sql) if paramstyle == "pyformat" else sql
    return out


_TOKEN = re.compile(r"'(?:[^']|'')*'|::|:([A-Za-z_]\w*)|%")


def to_pyformat(sql: str) -> str:
    """``:name`` -> ``%(name)s`` and ``%`` -> ``%%``; string literals and ``::type`` casts are kept."""

    def sub(m: re.Match) -> str:
        tok = m.group(0)
        if tok == "%":
            return "%%"
        if m.group(1):
            return f"%({m.group(1)})s"
        if tok.startswith("'"):
            return tok.replace("%", "%%")
        return tok

    return _TOKEN.sub(sub, sql)


def migrations(dialect: str) -> list[tuple[int, str, str]]:
    """``(version, name, sql)`` of every ``NNNN_name.sql`` file, in order."""
    folder = resources.files("durably.store").joinpath(f"sql/{dialect}")
    out = []
    for entry in folder.iterdir():
        m = re.match(r"^(\d{4})_(\w+)\.sql$", entry.name)
        if m:
            out.append((int(m.group(1)), m.group(2), entry.read_text()))
    return sorted(out)
