-- durably schema v5: fair share across keys (Fairness). A fair function's runs carry their key;
-- claims take the oldest ready run of each key in turn (claim_fair_candidates).
ALTER TABLE durably_runs ADD COLUMN fair_key TEXT;
-- The ready index keeps the other runs only, so neither claim statement walks the other's rows.
DROP INDEX durably_runs_ready;
CREATE INDEX durably_runs_ready ON durably_runs (env, sort_at, id)
    WHERE status IN ('queued', 'sleeping', 'waiting') AND fair_key IS NULL;
CREATE INDEX durably_runs_fair ON durably_runs (env, function_id, fair_key, sort_at, id)
    WHERE status IN ('queued', 'sleeping', 'waiting') AND fair_key IS NOT NULL;
-- When each key last had a run claimed: a round of claims serves the least recently served key first.
CREATE TABLE durably_fair_keys (
    env         TEXT NOT NULL,
    function_id TEXT NOT NULL,
    fair_key    TEXT NOT NULL,
    served_at   REAL NOT NULL,
    PRIMARY KEY (env, function_id, fair_key)
);
