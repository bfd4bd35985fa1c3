-- durably schema v3: a run someone waits on (app.result) says so, and its end is announced
-- (a NOTIFY in the transaction that ends it, for that run only: ending other runs costs nothing).
-- Set by watch_end before the waiter reads the run; the statements that end runs return it.
ALTER TABLE durably_runs ADD COLUMN notify_end boolean NOT NULL DEFAULT false;
