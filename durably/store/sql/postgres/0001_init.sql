-- durably schema v1 (PostgreSQL). The same tables, columns and indexes as the SQLite schema.
-- Times are epoch seconds (double precision) from the store's clock (the database server).
-- JSON is kept as text: the engine writes and reads it as text with orjson, exactly as on
-- SQLite, so the two stores hold byte-for-byte the same documents.
-- Keys use COLLATE "C" so ordering and cursor pagination match SQLite's binary order
-- whatever the database's default collation is.
-- Every row belongs to one env; every query filters on it. The tables live in the schema
-- named by DURABLY_SCHEMA (the connection's search_path), never in "public".

CREATE TABLE durably_events (
    env          text COLLATE "C" NOT NULL,
    id           text COLLATE "C" NOT NULL,
    name         text COLLATE "C" NOT NULL,
    data         text NOT NULL,
    ts           bigint NOT NULL,
    received_at  double precision NOT NULL,
    PRIMARY KEY (env, id)
);
CREATE INDEX durably_events_by_time ON durably_events (env, received_at);
CREATE INDEX durably_events_by_name ON durably_events (env, name, received_at);

CREATE TABLE durably_functions (
    env         text COLLATE "C" NOT NULL,
    id          text COLLATE "C" NOT NULL,
    app_id      text NOT NULL,
    config      text NOT NULL,
    updated_at  double precision NOT NULL,
    PRIMARY KEY (env, id)
);

CREATE TABLE durably_triggers (
    env          text COLLATE "C" NOT NULL,
    event_name   text COLLATE "C" NOT NULL,
    function_id  text COLLATE "C" NOT NULL,
    if_expr      text,
    PRIMARY KEY (env, event_name, function_id)
);

CREATE TABLE durably_runs (
    id               text COLLATE "C" PRIMARY KEY,
    env              text COLLATE "C" NOT NULL,
    function_id      text COLLATE "C" NOT NULL,
    status           text NOT NULL,
    tenant           text COLLATE "C" NOT NULL DEFAULT 'global',
    trigger          text NOT NULL,
    event_id         text COLLATE "C",
    event            text NOT NULL,
    events           text,
    available_at     double precision NOT NULL,
    sort_at          double precision NOT NULL,
    priority         double precision NOT NULL DEFAULT 0,
    created_at       double precision NOT NULL,
    started_at       double precision,
    finished_at      double precision,
    attempt          integer NOT NULL DEFAULT 0,
    terminal_reason  text,
    output           text,
    error            text,
    lease_owner      text,
    lease_expires_at double precision,
    lease_gen        integer NOT NULL DEFAULT 0,
    ckeys            text,
    idempotency_key  text,
    parent_run_id    text COLLATE "C",
    parent_step_id   text COLLATE "C",
    replay_of        text COLLATE "C",
    start_deadline   double precision,
    finish_timeout   double precision,
    finish_deadline  double precision,
    throttle         text,
    singleton_key    text COLLATE "C",
    gathering        integer NOT NULL DEFAULT 0
);
-- The claim walks this partial index in claim order; finished runs are not in it, so a
-- large ledger does not slow claiming down.
CREATE INDEX durably_runs_ready ON durably_runs (env, sort_at, id) WHERE status IN ('queued', 'sleeping', 'waiting');
CREATE INDEX durably_runs_leased ON durably_runs (lease_expires_at) WHERE status = 'running';
CREATE INDEX durably_runs_owner ON durably_runs (lease_owner) WHERE status = 'running';
CREATE INDEX durably_runs_by_time ON durably_runs (env, created_at);
CREATE INDEX durably_runs_by_function ON durably_runs (env, function_id, created_at);
CREATE INDEX durably_runs_by_status ON durably_runs (env, status, created_at);
CREATE INDEX durably_runs_by_tenant ON durably_runs (env, tenant, created_at);
CREATE INDEX durably_runs_by_event ON durably_runs (env, event_id);
CREATE INDEX durably_runs_by_parent ON durably_runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
CREATE INDEX durably_runs_start_deadline ON durably_runs (env, start_deadline)
    WHERE start_deadline IS NOT NULL AND status = 'queued';
CREATE INDEX durably_runs_finish_deadline ON durably_runs (env, finish_deadline)
    WHERE finish_deadline IS NOT NULL AND status IN ('queued', 'running', 'sleeping', 'waiting');

CREATE TABLE durably_steps (
    run_id       text COLLATE "C" NOT NULL,
    step_id      text COLLATE "C" NOT NULL,
    kind         text NOT NULL,
    status       text NOT NULL,
    seq          integer NOT NULL,
    attempts     integer NOT NULL DEFAULT 0,
    output       text,
    error        text,
    log          text NOT NULL DEFAULT '[]',
    started_at   double precision,
    finished_at  double precision,
    wake_at      double precision,
    PRIMARY KEY (run_id, step_id)
);

CREATE TABLE durably_waits (
    env          text COLLATE "C" NOT NULL,
    run_id       text COLLATE "C" NOT NULL,
    step_id      text COLLATE "C" NOT NULL,
    kind         text NOT NULL,
    event_name   text COLLATE "C" NOT NULL,
    match_path   text,
    match_value  text,
    if_expr      text,
    expires_at   double precision,
    created_at   double precision NOT NULL,
    PRIMARY KEY (run_id, step_id, kind, event_name)
);
CREATE INDEX durably_waits_by_event ON durably_waits (env, event_name);

CREATE TABLE durably_keys (
    env         text COLLATE "C" NOT NULL,
    scope       text COLLATE "C" NOT NULL,
    key         text COLLATE "C" NOT NULL,
    run_id      text COLLATE "C",
    expires_at  double precision NOT NULL,
    PRIMARY KEY (env, scope, key)
);
CREATE INDEX durably_keys_by_run ON durably_keys (run_id);
CREATE INDEX durably_keys_by_expiry ON durably_keys (env, expires_at);

CREATE TABLE durably_gcra (
    env   text COLLATE "C" NOT NULL,
    key   text COLLATE "C" NOT NULL,
    tat   double precision NOT NULL,
    PRIMARY KEY (env, key)
);

CREATE TABLE durably_debounce (
    env          text COLLATE "C" NOT NULL,
    function_id  text COLLATE "C" NOT NULL,
    key          text COLLATE "C" NOT NULL,
    run_id       text COLLATE "C" NOT NULL,
    first_at     double precision NOT NULL,
    PRIMARY KEY (env, function_id, key)
);
CREATE INDEX durably_debounce_by_run ON durably_debounce (run_id);

CREATE TABLE durably_batches (
    env          text COLLATE "C" NOT NULL,
    function_id  text COLLATE "C" NOT NULL,
    key          text COLLATE "C" NOT NULL,
    run_id       text COLLATE "C" NOT NULL,
    size         integer NOT NULL,
    PRIMARY KEY (env, function_id, key)
);
CREATE INDEX durably_batches_by_run ON durably_batches (run_id);

-- Concurrency slots held by running runs: slot numbers 0..limit-1 of a key. A slot is a
-- unique row: of two transactions inserting the same slot, the second waits for the first
-- and then finds the conflict, so the last slot of a key is taken once.
CREATE TABLE durably_slots (
    env     text COLLATE "C" NOT NULL,
    key     text COLLATE "C" NOT NULL,
    slot    integer NOT NULL,
    run_id  text COLLATE "C" NOT NULL,
    PRIMARY KEY (env, key, slot)
);
CREATE INDEX durably_slots_by_run ON durably_slots (run_id);

CREATE TABLE durably_cron (
    env          text COLLATE "C" NOT NULL,
    function_id  text COLLATE "C" NOT NULL,
    schedule     text COLLATE "C" NOT NULL,
    last_tick    double precision NOT NULL,
    PRIMARY KEY (env, function_id, schedule)
);

CREATE TABLE durably_status (
    env          text COLLATE "C" NOT NULL,
    tenant       text COLLATE "C" NOT NULL,
    function_id  text COLLATE "C" NOT NULL,
    blob         text NOT NULL,
    updated_at   double precision NOT NULL,
    PRIMARY KEY (env, tenant, function_id)
);

CREATE TABLE durably_workers (
    env           text COLLATE "C" NOT NULL,
    id            text COLLATE "C" NOT NULL,
    host          text NOT NULL,
    pid           integer NOT NULL,
    functions     text NOT NULL,
    concurrency   integer NOT NULL,
    started_at    double precision NOT NULL,
    heartbeat_at  double precision NOT NULL,
    PRIMARY KEY (env, id)
);

CREATE TABLE durably_leaders (
    env         text COLLATE "C" NOT NULL,
    name        text COLLATE "C" NOT NULL,
    owner       text COLLATE "C" NOT NULL,
    expires_at  double precision NOT NULL,
    PRIMARY KEY (env, name)
);

CREATE TABLE durably_skips (
    env          text COLLATE "C" NOT NULL,
    event_id     text COLLATE "C" NOT NULL,
    function_id  text COLLATE "C" NOT NULL,
    reason       text NOT NULL,
    created_at   double precision NOT NULL
);
CREATE INDEX durably_skips_by_event ON durably_skips (env, event_id);
CREATE INDEX durably_skips_by_function ON durably_skips (env, function_id, created_at);

CREATE TABLE durably_dispatches (
    env           text COLLATE "C" NOT NULL,
    key           text COLLATE "C" NOT NULL,
    window_start  double precision NOT NULL,
    event_id      text COLLATE "C" NOT NULL,
    first_seen    double precision NOT NULL,
    pings         integer NOT NULL DEFAULT 1,
    PRIMARY KEY (env, key, window_start)
);

-- Read-then-write decisions under READ COMMITTED. SQLite serializes writers, so "read the
-- state, decide, write" is safe there; here two transactions could read the same state and
-- both act on it (both pass a rate limit, both open a debounce window, both become a
-- singleton's holder). Each such read therefore first takes
-- a transaction-scoped advisory lock on its key, then reads. The functions are VOLATILE:
-- the read inside runs on a snapshot taken after the lock was granted, so it sees what the
-- previous holder of the lock committed. Locks are released at commit. (Concurrency
-- slots need no lock: they are unique rows, see durably_slots.)

CREATE FUNCTION durably_lock(p_kind text, p_env text, p_key text) RETURNS void
LANGUAGE sql VOLATILE AS $$
    SELECT pg_advisory_xact_lock(hashtextextended(p_kind || ' ' || current_schema() || ' ' || p_env || ' ' || p_key, 0));
$$;

CREATE FUNCTION durably_gcra_get(p_env text, p_key text) RETURNS TABLE (tat double precision)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM durably_lock('gcra', p_env, p_key);
    RETURN QUERY SELECT g.tat FROM durably_gcra g WHERE g.env = p_env AND g.key = p_key;
END
$$;

CREATE FUNCTION durably_key_holder(p_env text, p_scope text, p_key text)
RETURNS TABLE (run_id text, expires_at double precision)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM durably_lock('key', p_env, p_scope || ' ' || p_key);
    RETURN QUERY SELECT k.run_id::text, k.expires_at FROM durably_keys k
        WHERE k.env = p_env AND k.scope = p_scope AND k.key = p_key;
END
$$;

-- The open debounce/batch run is also row-locked: a worker claiming it at the same moment
-- either waits for this transaction (and then claims a run that holds the new event) or
-- has claimed it first (and then this read finds no open run and a new one is created).
CREATE FUNCTION durably_debounce_open(p_env text, p_function_id text, p_key text)
RETURNS TABLE (run_id text, first_at double precision)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM durably_lock('debounce', p_env, p_function_id || ' ' || p_key);
    RETURN QUERY SELECT d.run_id::text, d.first_at FROM durably_debounce d JOIN durably_runs r ON r.id = d.run_id
        WHERE d.env = p_env AND d.function_id = p_function_id AND d.key = p_key
          AND r.status = 'queued' AND r.gathering = 1
        FOR UPDATE OF r;
END
$$;

CREATE FUNCTION durably_batch_open(p_env text, p_function_id text, p_key text)
RETURNS TABLE (run_id text, size integer)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM durably_lock('batch', p_env, p_function_id || ' ' || p_key);
    RETURN QUERY SELECT b.run_id::text, b.size FROM durably_batches b JOIN durably_runs r ON r.id = b.run_id
        WHERE b.env = p_env AND b.function_id = p_function_id AND b.key = p_key
          AND r.status = 'queued' AND r.gathering = 1
        FOR UPDATE OF r;
END
$$;
