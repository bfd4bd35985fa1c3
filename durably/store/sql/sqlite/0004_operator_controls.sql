-- durably schema v4: operators' controls. A paused function (mode 'queue': its runs wait,
-- 'skip': its new triggers are recorded as skipped with reason 'paused'), and the audit log
-- of operators' actions, each row written in the transaction of the action it records.
CREATE TABLE durably_paused (
    env          TEXT NOT NULL,
    function_id  TEXT NOT NULL,
    mode         TEXT NOT NULL CHECK (mode IN ('queue', 'skip')),
    paused_at    REAL NOT NULL,
    PRIMARY KEY (env, function_id)
);

CREATE TABLE durably_audit (
    id      TEXT PRIMARY KEY,
    env     TEXT NOT NULL,
    at      REAL NOT NULL,
    role    TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT,
    params  TEXT NOT NULL,
    client  TEXT
);
CREATE INDEX durably_audit_by_time ON durably_audit (env, at, id);
