"""Side effects recorded outside durably, in a SQLite file of their own (``DURABLY_TEST_SIDE_DB``).

The e2e tests count these rows to prove what ran how many times, whatever happened to the
worker processes in between.
"""

from __future__ import annotations

import os
import sqlite3
import time


def _connect(path: str | None = None) -> sqlite3.Connection:
    conn = sqlite3.connect(path or os.environ["DURABLY_TEST_SIDE_DB"], timeout=30, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS effects (run_id TEXT, what TEXT, pid INTEGER, at REAL)")
    return conn


def record(run_id: str, what: str) -> None:
    conn = _connect()
    try:
        conn.execute("INSERT INTO effects VALUES (?, ?, ?, ?)", (run_id, what, os.getpid(), time.time()))
    finally:
        conn.close()


def effects(path: str) -> list[tuple[str, str, int, float]]:
    if not os.path.exists(path):
        return []
    conn = _connect(path)
    try:
        return [tuple(r) for r in conn.execute("SELECT run_id, what, pid, at FROM effects ORDER BY at")]
    finally:
        conn.close()
