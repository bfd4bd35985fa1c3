"""The side table of ``durably chaos``: what the chaos functions did, recorded outside the engine.

Every execution of a chaos step writes one attempt row (its start, and its end once the step's
body returned) and applies its effect once per ``ctx.step_key`` (an insert that does nothing
when the effect is already there: the idempotent way to apply an external effect under
at-least-once execution). The battery judges the engine from these rows alone.

Where: on PostgreSQL two tables beside durably's, ``durably_chaos_effects_<id>`` and
``durably_chaos_attempts_<id>``, dropped at the end; on SQLite a file of its own in a
temporary directory. Workers find it in ``DURABLY_CHAOS_SIDE`` (a ``postgresql://`` URL whose
``schema`` parameter names the schema, or a file path) and ``DURABLY_CHAOS_ID``.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SIDE_VAR = "DURABLY_CHAOS_SIDE"
ID_VAR = "DURABLY_CHAOS_ID"
_ID = re.compile(r"^[0-9a-z]{1,24}$")


@dataclass(frozen=True)
class Attempt:
    attempt_id: str
    step_key: str
    run_id: str
    key: str | None  # the run's concurrency key (the concurrency scenario), else None
    pid: int
    started_at: float
    ended_at: float | None  # None: the process died (or was cut off) inside the step


def pg_target(url: str, schema: str | None = None) -> tuple[str, str]:
    """``(libpq URL, schema)`` of a store URL: its ``schema`` parameter wins over ``schema``."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    named = [v for k, v in query if k == "schema"]
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, rest, parts.fragment)), (named[-1] if named else
                                                                                       schema or "durably")


class SideStore:
    """One side table set, for the battery (``create``, ``read``, ``drop``) and for the steps
    (``begin``, ``end``), each thread on its own connection."""

    def __init__(self, location: str, chaos_id: str):
        if not _ID.match(chaos_id):
            raise ValueError(f"invalid chaos id {chaos_id!r}")
        self.location, self.id = location, chaos_id
        self.pg = location.startswith(("postgresql://", "postgres://"))
        self.effects, self.attempts = f"durably_chaos_effects_{chaos_id}", f"durably_chaos_attempts_{chaos_id}"
        self._local = threading.local()

    @classmethod
    def from_environ(cls) -> "SideStore":
        return cls(os.environ[SIDE_VAR], os.environ[ID_VAR])

    # --- connections -------------------------------------------------------------------------

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if self.pg:
            import psycopg

            dsn, schema = pg_target(self.location)
            conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10, options=f"-c search_path={schema}")
        else:
            conn = sqlite3.connect(self.location, timeout=60, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode = WAL")
        self._local.conn = conn
        return conn

    def _exec(self, sql: str, params: tuple = ()) -> Any:
        if not self.pg:
            return self._conn().execute(sql, params)
        try:
            return self._conn().execute(sql.replace("?", "%s"), params)
        except Exception:
            self.close()  # a broken connection is not used again
            raise

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass

    # --- the battery ---------------------------------------------------------------------------

    def create(self) -> None:
        self._exec(f"CREATE TABLE {self.effects} (step_key TEXT PRIMARY KEY, attempt_id TEXT NOT NULL)")
        self._exec(f"CREATE TABLE {self.attempts} (attempt_id TEXT PRIMARY KEY, step_key TEXT NOT NULL, "
                   "run_id TEXT NOT NULL, ckey TEXT, pid INTEGER NOT NULL, started_at DOUBLE PRECISION NOT NULL, "
                   "ended_at DOUBLE PRECISION)")

    def read(self) -> tuple[dict[str, str], list[Attempt]]:
        """The effects (``step_key -> attempt that applied it``) and every attempt."""
        effects = {str(k): str(a) for k, a in self._exec(f"SELECT step_key, attempt_id FROM {self.effects}").fetchall()}
        attempts = [Attempt(str(r[0]), str(r[1]), str(r[2]), r[3], int(r[4]), float(r[5]),
                            None if r[6] is None else float(r[6]))
                    for r in self._exec(f"SELECT attempt_id, step_key, run_id, ckey, pid, started_at, ended_at "
                                        f"FROM {self.attempts}").fetchall()]
        return effects, attempts

    def clear(self) -> None:
        """Forget what a scenario recorded (the next one starts from empty tables)."""
        self._exec(f"DELETE FROM {self.effects}")
        self._exec(f"DELETE FROM {self.attempts}")

    def drop(self) -> None:
        if self.pg:
            self._exec(f"DROP TABLE IF EXISTS {self.effects}")
            self._exec(f"DROP TABLE IF EXISTS {self.attempts}")
        self.close()

    # --- the steps -----------------------------------------------------------------------------

    def begin(self, attempt_id: str, step_key: str, run_id: str, key: str | None) -> None:
        """An execution starts; its effect is applied (once per step key, whoever comes first)."""
        self._exec(f"INSERT INTO {self.attempts} (attempt_id, step_key, run_id, ckey, pid, started_at) "
                   "VALUES (?, ?, ?, ?, ?, ?)", (attempt_id, step_key, run_id, key, os.getpid(), time.time()))
        self._exec(f"INSERT INTO {self.effects} (step_key, attempt_id) VALUES (?, ?) ON CONFLICT (step_key) DO NOTHING",
                   (step_key, attempt_id))

    def end(self, attempt_id: str) -> None:
        self._exec(f"UPDATE {self.attempts} SET ended_at = ? WHERE attempt_id = ?", (time.time(), attempt_id))
