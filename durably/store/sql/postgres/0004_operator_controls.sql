-- durably schema v4: operators' controls. A paused function (mode 'queue': its runs wait,
-- 'skip': its new triggers are recorded as skipped with reason 'paused'), and the audit log
-- of operators' actions, each row written in the transaction of the action it records.
CREATE TABLE durably_paused (
    env          text COLLATE "C" NOT NULL,
    function_id  text COLLATE "C" NOT NULL,
    mode         text NOT NULL CHECK (mode IN ('queue', 'skip')),
    paused_at    double precision NOT NULL,
    PRIMARY KEY (env, function_id)
);

CREATE TABLE durably_audit (
    id      text COLLATE "C" PRIMARY KEY,
    env     text COLLATE "C" NOT NULL,
    at      double precision NOT NULL,
    role    text NOT NULL,
    action  text NOT NULL,
    target  text,
    params  text NOT NULL,
    client  text
);
CREATE INDEX durably_audit_by_time ON durably_audit (env, at, id);
