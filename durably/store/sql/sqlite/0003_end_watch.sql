-- durably schema v3: a run someone waits on (app.result) says so, and its end is announced.
-- Set by watch_end before the waiter reads the run; the statements that end runs return it.
ALTER TABLE durably_runs ADD COLUMN notify_end INTEGER NOT NULL DEFAULT 0;
