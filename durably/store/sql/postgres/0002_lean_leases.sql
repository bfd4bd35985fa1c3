-- durably schema v2: a lease's expiry is no longer indexed. Every checkpoint and heartbeat
-- extends it, and each extension had to rewrite an index entry (on PostgreSQL, it also
-- kept the update from being HOT). The runs that hold a lease are few and found through
-- durably_runs_owner or durably_runs_by_status; their expiry is checked on those rows.
DROP INDEX durably_runs_leased;
