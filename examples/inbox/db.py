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
-- What the app learnt about leads and workspaces, until it expires (pruned by maintenance).
CREATE TABLE IF NOT EXISTS inferred_memory (
    id          bigserial PRIMARY KEY,
    scope       text NOT NULL CHECK (scope IN ('lead', 'workspace')),
    client_id   text NOT NULL,
    subject     text NOT NULL,
    value       jsonb NOT NULL DEFAULT '{}',
    expires_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS inferred_memory_by_expiry ON inferred_memory (expires_at);
-- The app's own feature flags (the cutover lever: background-jobs-use-durably).
CREATE TABLE IF NOT EXISTS flags (
    name        text PRIMARY KEY,
    enabled     boolean NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- Every execution of a cron window's work (durable or inline), to show each ran once.
CREATE TABLE IF NOT EXISTS cron_work_log (
    dispatch_key  text NOT NULL,
    mode          text NOT NULL,          -- durable inline
    executor      text NOT NULL,          -- the run id, or the inline process and its pid
    at            timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS cron_work_log_by_key ON cron_work_log (dispatch_key);
"""

USE_DURABLY = "background-jobs-use-durably"


def open_pool(url: str, use_durably: bool = True) -> ConnectionPool:
    """The app's pool; creates the tables and seeds the cutover flag (from
    BACKGROUND_JOBS_USE_DURABLY) if it has no row yet: a flag flipped since is kept."""
    pool = ConnectionPool(url, min_size=1, max_size=10, kwargs={"autocommit": True}, open=True)
    with pool.connection() as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext('inbox-schema'))")  # processes starting together
        try:
            conn.execute(SCHEMA)
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext('inbox-schema'))")
        conn.execute("INSERT INTO flags (name, enabled) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
                     (USE_DURABLY, use_durably))
    return pool


def get_flag(pool: ConnectionPool, name: str, default: bool = True) -> bool:
    with pool.connection() as conn:
        row = conn.execute("SELECT enabled FROM flags WHERE name = %s", (name,)).fetchone()
    return default if row is None else bool(row[0])


def set_flag(pool: ConnectionPool, name: str, enabled: bool) -> None:
    with pool.connection() as conn:
        conn.execute("INSERT INTO flags (name, enabled) VALUES (%s, %s) ON CONFLICT (name) DO UPDATE "
                     "SET enabled = excluded.enabled, updated_at = now()", (name, enabled))
