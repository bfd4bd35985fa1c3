-- durably schema v2: indexes for a long ledger.
--
-- A lease's expiry is no longer indexed. Every checkpoint and heartbeat extends it, and
-- each extension had to rewrite an index entry (on PostgreSQL, it also kept the update
-- from being HOT). The runs that hold a lease are few and found through
-- durably_runs_owner; their expiry is checked on those rows.
DROP INDEX durably_runs_leased;

-- Replays of a run, found without scanning the ledger (bulk replay skips runs already
-- replayed; the failures view and its metric count the failed runs not replayed yet).
-- Only replays are in it.
CREATE INDEX durably_runs_replays ON durably_runs (env, replay_of) WHERE replay_of IS NOT NULL;

-- Runs finished in a time window (the dashboard's runs-per-minute chart), without scanning
-- the ledger.
CREATE INDEX durably_runs_finished ON durably_runs (env, finished_at) WHERE finished_at IS NOT NULL;
