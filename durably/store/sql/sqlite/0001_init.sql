-- durably schema v1 (SQLite). Times are epoch seconds (REAL) from the store's clock.
-- Every row belongs to one env; every query filters on it.

CREATE TABLE durably_events (
    env          TEXT NOT NULL,
    id           TEXT NOT NULL,
    name         TEXT NOT NULL,
    data         TEXT NOT NULL,            -- the whole event as JSON
    ts           INTEGER NOT NULL,         -- the event's own time, ms
    received_at  REAL NOT NULL,
    PRIMARY KEY (env, id)                  -- duplicate delivery: a conflict, never a second event
);
CREATE INDEX durably_events_by_time ON durably_events (env, received_at);
CREATE INDEX durably_events_by_name ON durably_events (env, name, received_at);

CREATE TABLE durably_functions (
    env         TEXT NOT NULL,
    id          TEXT NOT NULL,
    app_id      TEXT NOT NULL,
    config      TEXT NOT NULL,             -- FunctionDef.config() as JSON
    updated_at  REAL NOT NULL,
    PRIMARY KEY (env, id)
);

CREATE TABLE durably_triggers (
    env          TEXT NOT NULL,
    event_name   TEXT NOT NULL,
    function_id  TEXT NOT NULL,
    if_expr      TEXT,
    PRIMARY KEY (env, event_name, function_id)
);

CREATE TABLE durably_runs (
    id               TEXT PRIMARY KEY,
    env              TEXT NOT NULL,
    function_id      TEXT NOT NULL,
    status           TEXT NOT NULL,        -- queued running sleeping waiting completed failed cancelled
    tenant           TEXT NOT NULL DEFAULT 'global',
    trigger          TEXT NOT NULL,        -- event cron invoke manual replay batch
    event_id         TEXT,
    event            TEXT NOT NULL,        -- the trigger event as JSON (the run is self-contained)
    events           TEXT,                 -- JSON list of events for a batch
    available_at     REAL NOT NULL,        -- not claimable before
    sort_at          REAL NOT NULL,        -- available_at shifted by priority: the claim order
    priority         REAL NOT NULL DEFAULT 0,  -- seconds ahead in line (Priority), kept across resumes
    created_at       REAL NOT NULL,
    started_at       REAL,
    finished_at      REAL,
    attempt          INTEGER NOT NULL DEFAULT 0,   -- failures retried so far
    terminal_reason  TEXT,
    output           TEXT,
    error            TEXT,
    lease_owner      TEXT,
    lease_expires_at REAL,
    lease_gen        INTEGER NOT NULL DEFAULT 0,   -- fencing token, bumped by every claim
    ckeys            TEXT,                 -- JSON [[slot key, limit], ...] or NULL
    idempotency_key  TEXT,
    parent_run_id    TEXT,
    parent_step_id   TEXT,
    replay_of        TEXT,
    start_deadline   REAL,                 -- Timeouts.start: cancelled if not started by then
    finish_timeout   REAL,                 -- Timeouts.finish, seconds from the first start
    finish_deadline  REAL,                 -- set at the first start: failed if not finished by then
    throttle         TEXT,                 -- JSON [key, interval, tolerance]: GCRA applied at first start
    singleton_key    TEXT,                 -- the durably_keys key this run holds while live
    gathering        INTEGER NOT NULL DEFAULT 0   -- 1 while a debounce/batch run still takes events
);
-- The claim walks this index in claim order; finished runs are not in it, so a large
-- ledger does not slow claiming down.
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
    run_id       TEXT NOT NULL,
    step_id      TEXT NOT NULL,
    kind         TEXT NOT NULL,            -- run sleep wait send invoke
    status       TEXT NOT NULL,            -- completed failed retrying sleeping waiting
    seq          INTEGER NOT NULL,         -- order of first execution
    attempts     INTEGER NOT NULL DEFAULT 0,
    output       TEXT,
    error        TEXT,
    log          TEXT NOT NULL DEFAULT '[]',   -- every attempt: [{attempt, started_at, finished_at, error}]
    started_at   REAL,
    finished_at  REAL,
    wake_at      REAL,
    PRIMARY KEY (run_id, step_id)          -- a second checkpoint of a step is a conflict
);

-- Pending wait_for_event and cancel_on subscriptions, matched when events arrive.
CREATE TABLE durably_waits (
    env          TEXT NOT NULL,
    run_id       TEXT NOT NULL,
    step_id      TEXT NOT NULL,            -- '' for cancel_on
    kind         TEXT NOT NULL,            -- wait cancel
    event_name   TEXT NOT NULL,
    match_path   TEXT,
    match_value  TEXT,                     -- JSON of the trigger event's value at match_path
    if_expr      TEXT,
    expires_at   REAL,
    created_at   REAL NOT NULL,
    PRIMARY KEY (run_id, step_id, kind, event_name)
);
CREATE INDEX durably_waits_by_event ON durably_waits (env, event_name);

-- Unique keys with an expiry: idempotency keys, singleton keys, dispatch windows.
CREATE TABLE durably_keys (
    env         TEXT NOT NULL,
    scope       TEXT NOT NULL,
    key         TEXT NOT NULL,
    run_id      TEXT,
    expires_at  REAL NOT NULL,
    PRIMARY KEY (env, scope, key)
);
CREATE INDEX durably_keys_by_run ON durably_keys (run_id);
CREATE INDEX durably_keys_by_expiry ON durably_keys (env, expires_at);

-- GCRA state of throttles and rate limits: the theoretical arrival time per key.
CREATE TABLE durably_gcra (
    env   TEXT NOT NULL,
    key   TEXT NOT NULL,
    tat   REAL NOT NULL,
    PRIMARY KEY (env, key)
);

-- Open debounce windows: the queued run that takes the next event of a key.
CREATE TABLE durably_debounce (
    env          TEXT NOT NULL,
    function_id  TEXT NOT NULL,
    key          TEXT NOT NULL,
    run_id       TEXT NOT NULL,
    first_at     REAL NOT NULL,
    PRIMARY KEY (env, function_id, key)
);
CREATE INDEX durably_debounce_by_run ON durably_debounce (run_id);

-- Open batches: the queued run that takes the next events of a key, until full or due.
CREATE TABLE durably_batches (
    env          TEXT NOT NULL,
    function_id  TEXT NOT NULL,
    key          TEXT NOT NULL,
    run_id       TEXT NOT NULL,
    size         INTEGER NOT NULL,
    PRIMARY KEY (env, function_id, key)
);
CREATE INDEX durably_batches_by_run ON durably_batches (run_id);

-- Concurrency slots held by running runs: slot numbers 0..limit-1 of a key. A slot is a
-- unique row, so two workers racing for the last slot of a key cannot both take it.
CREATE TABLE durably_slots (
    env     TEXT NOT NULL,
    key     TEXT NOT NULL,
    slot    INTEGER NOT NULL,
    run_id  TEXT NOT NULL,
    PRIMARY KEY (env, key, slot)
);
CREATE INDEX durably_slots_by_run ON durably_slots (run_id);

CREATE TABLE durably_cron (
    env          TEXT NOT NULL,
    function_id  TEXT NOT NULL,
    schedule     TEXT NOT NULL,            -- "expr|tz"
    last_tick    REAL NOT NULL,
    PRIMARY KEY (env, function_id, schedule)
);

CREATE TABLE durably_status (
    env          TEXT NOT NULL,
    tenant       TEXT NOT NULL,
    function_id  TEXT NOT NULL,
    blob         TEXT NOT NULL,
    updated_at   REAL NOT NULL,
    PRIMARY KEY (env, tenant, function_id)
);

CREATE TABLE durably_workers (
    env           TEXT NOT NULL,
    id            TEXT NOT NULL,
    host          TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    functions     TEXT NOT NULL,
    concurrency   INTEGER NOT NULL,
    started_at    REAL NOT NULL,
    heartbeat_at  REAL NOT NULL,
    PRIMARY KEY (env, id)
);

CREATE TABLE durably_leaders (
    env         TEXT NOT NULL,
    name        TEXT NOT NULL,
    owner       TEXT NOT NULL,
    expires_at  REAL NOT NULL,
    PRIMARY KEY (env, name)
);

-- Events that created no run for a function on purpose (rate limit, idempotency, singleton).
CREATE TABLE durably_skips (
    env          TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    function_id  TEXT NOT NULL,
    reason       TEXT NOT NULL,
    created_at   REAL NOT NULL
);
CREATE INDEX durably_skips_by_event ON durably_skips (env, event_id);
CREATE INDEX durably_skips_by_function ON durably_skips (env, function_id, created_at);

-- The dispatch ledger of the cron endpoint: one row per (key, window).
CREATE TABLE durably_dispatches (
    env           TEXT NOT NULL,
    key           TEXT NOT NULL,
    window_start  REAL NOT NULL,
    event_id      TEXT NOT NULL,
    first_seen    REAL NOT NULL,
    pings         INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (env, key, window_start)
);
