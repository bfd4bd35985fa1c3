"""The reference app's own tables (PostgreSQL), created at start."""

from __future__ import annotations

from psycopg_pool import ConnectionPool

SCHEMA = """
CREATE TABLE IF NOT EXISTS workspaces (
    client_id   text PRIMARY KEY,
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS messages (
    id          bigserial PRIMARY KEY,
    client_id   text NOT NULL,
    folder      text NOT NULL,
    unread      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS messages_by_client ON messages (client_id, folder);
CREATE TABLE IF NOT EXISTS inbox_counts (
    client_id    text NOT NULL,
    folder       text NOT NULL,
    total        integer NOT NULL,
    unread       integer NOT NULL,
    computed_at  timestamptz NOT NULL,
    PRIMARY KEY (client_id, folder)
);
CREATE TABLE IF NOT EXISTS inbox_dirty (
    client_id  text PRIMARY KEY,
    dirty_at   timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS analytics_daily (
    client_id    text NOT NULL,
    day          date NOT NULL,
    messages     integer NOT NULL,
    unread       integer NOT NULL,
    computed_at  timestamptz NOT NULL,
    PRIMARY KEY (client_id, day)
);
CREATE TABLE IF NOT EXISTS draft_runs (
    id          bigserial PRIMARY KEY,
    client_id   text NOT NULL,
    status      text NOT NULL DEFAULT 'pending',   -- pending processing done failed
    updated_at  timestamptz NOT NULL DEFAULT now(),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS draft_runs_by_status ON draft_runs (status, updated_at);
-- Every recompute of a client's counts, to show that none of them overlapped.
CREATE TABLE IF NOT EXISTS recompute_log (
    client_id    text NOT NULL,
    run_id       text NOT NULL,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS recompute_log_by_client ON recompute_log (client_id, started_at);
"""


def open_pool(url: str) -> ConnectionPool:
    pool = ConnectionPool(url, min_size=1, max_size=10, kwargs={"autocommit": True}, open=True)
    with pool.connection() as conn:
        conn.execute(SCHEMA)
    return pool
