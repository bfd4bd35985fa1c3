"""The PostgreSQL chaos test's app: 3 steps per run, each with an external side effect.

Each step inserts one row keyed by ``ctx.step_key`` into ``chaos_effects`` (UNIQUE, insert
ON CONFLICT DO NOTHING: the idempotent way to apply an external effect under at-least-once
execution) and one row per attempt into ``chaos_attempts``, then takes a moment, so that a
worker killed with -9 is often between the effect and the step's checkpoint. The tables
live in the test's schema, next to durably's.
"""

from __future__ import annotations

import os
import threading
import time

import psycopg

import durably
from durably.store.postgres import split_url

app = durably.App("chaos")
STEP_SECONDS = float(os.environ.get("CHAOS_STEP_SECONDS", "0.1"))
_local = threading.local()


def _conn() -> psycopg.Connection:
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        dsn, schema = split_url(os.environ["DURABLY_DATABASE_URL"], os.environ.get("DURABLY_SCHEMA"))
        conn = psycopg.connect(dsn, autocommit=True, options=f"-c search_path={schema}")
        _local.conn = conn
    return conn


def effect(ctx: durably.Context) -> str:
    key = ctx.step_key
    conn = _conn()
    conn.execute("INSERT INTO chaos_attempts (step_key, pid) VALUES (%s, %s)", (key, os.getpid()))
    conn.execute("INSERT INTO chaos_effects (step_key) VALUES (%s) ON CONFLICT (step_key) DO NOTHING", (key,))
    time.sleep(STEP_SECONDS)
    return key


@app.function(id="chaos", trigger=durably.on_event("chaos.go"))
def chaos(ctx: durably.Context) -> list:
    return [ctx.step.run(name, effect, ctx) for name in ("one", "two", "three")]
