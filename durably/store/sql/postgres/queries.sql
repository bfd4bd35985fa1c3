-- Named statements for the PostgreSQL store: the same names and :named parameters as
-- sql/sqlite/queries.sql (store/queries.py rewrites them to psycopg's %(name)s).
-- Differences from SQLite are written here, never in shared code:
--   * a parameter that may be NULL and is tested with IS NULL carries an explicit CAST
--     (PostgreSQL cannot infer the type of a bare "$1 IS NULL");
--   * JSON helpers: jsonb_array_elements_text for json_each, jsonb || for json_insert;
--   * the claim locks its candidates with FOR UPDATE SKIP LOCKED, so workers in many
--     processes never wait on, nor claim, the same run;
--   * read-then-write decisions (rate limits, singletons, debounce and batch windows) read
--     under an advisory lock on their key (see the functions in 0001_init.sql).

-- name: insert_event
-- Record an event. A duplicate id within 24 h is a conflict (nothing written, rowcount 0);
-- an id last seen more than 24 h ago is accepted as new again.
INSERT INTO durably_events (env, id, name, data, ts, received_at)
VALUES (:env, :id, :name, :data, :ts, :now)
ON CONFLICT (env, id) DO UPDATE SET name = excluded.name, data = excluded.data, ts = excluded.ts,
    received_at = excluded.received_at
WHERE durably_events.received_at < CAST(:now AS double precision) - 86400;

-- name: insert_events
-- Record a list of events (:rows, a JSON array of [id, name, data, ts], ids distinct) in one
-- statement, as insert_event does one; returns the ids recorded as new. A concurrent writer
-- of the same id waits for this one's commit, then sees the conflict.
INSERT INTO durably_events (env, id, name, data, ts, received_at)
SELECT :env, x->>0, x->>1, x->>2, CAST(x->>3 AS bigint), :now
FROM jsonb_array_elements(CAST(:rows AS jsonb)) AS x
ON CONFLICT (env, id) DO UPDATE SET name = excluded.name, data = excluded.data, ts = excluded.ts,
    received_at = excluded.received_at
WHERE durably_events.received_at < CAST(:now AS double precision) - 86400
RETURNING id;

-- name: triggers_for
-- Functions triggered by an event name, with their stored config, and whether each is paused
-- in skip mode (paused_skip).
SELECT t.function_id, t.if_expr, f.config,
    EXISTS (SELECT 1 FROM durably_paused p
            WHERE p.env = t.env AND p.function_id = t.function_id AND p.mode = 'skip') AS skip_paused
FROM durably_triggers t JOIN durably_functions f ON f.env = t.env AND f.id = t.function_id
WHERE t.env = :env AND t.event_name = :name;

-- name: function_config
SELECT config FROM durably_functions WHERE env = :env AND id = :id;

-- name: insert_run
INSERT INTO durably_runs (id, env, function_id, status, tenant, trigger, event_id, event, events,
    available_at, sort_at, priority, created_at, ckeys, idempotency_key, parent_run_id, parent_step_id,
    replay_of, start_deadline, finish_timeout, throttle, singleton_key, gathering, fair_key)
VALUES (:id, :env, :function_id, 'queued', :tenant, :trigger, :event_id, :event, :events,
    :available_at, :sort_at, :priority, :now, :ckeys, :idempotency_key, :parent_run_id, :parent_step_id,
    :replay_of, :start_deadline, :finish_timeout, :throttle, :singleton_key, :gathering, :fair_key);

-- name: insert_runs
-- Insert queued runs that need no flow control at creation (:rows, a JSON array of arrays in
-- the column order below) in one statement.
INSERT INTO durably_runs (id, env, function_id, status, tenant, trigger, event_id, event, events,
    available_at, sort_at, priority, created_at, ckeys, idempotency_key, parent_run_id, parent_step_id,
    replay_of, start_deadline, finish_timeout, throttle, gathering, fair_key)
SELECT x->>0, :env, x->>1, 'queued', x->>2, x->>3, x->>4, x->>5, x->>6,
    CAST(x->>7 AS double precision), CAST(x->>8 AS double precision), CAST(x->>9 AS double precision), :now,
    x->>10, x->>11, x->>12, x->>13, x->>14, CAST(x->>15 AS double precision), CAST(x->>16 AS double precision),
    x->>17, 0, x->>18
FROM jsonb_array_elements(CAST(:rows AS jsonb)) AS x;

-- name: take_key
-- Take a unique key (idempotency, singleton, ...) unless a live holder has it. rowcount 1 = taken.
-- A concurrent taker of the same key waits for the first to commit, then sees its row.
INSERT INTO durably_keys (env, scope, key, run_id, expires_at)
VALUES (:env, :scope, :key, :run_id, :expires_at)
ON CONFLICT (env, scope, key) DO UPDATE SET run_id = excluded.run_id, expires_at = excluded.expires_at
WHERE durably_keys.expires_at <= :now;

-- name: take_keys
-- Take unique keys (:rows, a JSON array of [scope, key, run_id, expires_at], keys distinct) as
-- take_key does one; returns the run_id of each key taken.
INSERT INTO durably_keys (env, scope, key, run_id, expires_at)
SELECT :env, x->>0, x->>1, x->>2, CAST(x->>3 AS double precision)
FROM jsonb_array_elements(CAST(:rows AS jsonb)) AS x
ON CONFLICT (env, scope, key) DO UPDATE SET run_id = excluded.run_id, expires_at = excluded.expires_at
WHERE durably_keys.expires_at <= CAST(:now AS double precision)
RETURNING run_id;

-- name: insert_skip
INSERT INTO durably_skips (env, event_id, function_id, reason, created_at)
VALUES (:env, :event_id, :function_id, :reason, :now);

-- name: waits_for
SELECT w.run_id, w.step_id, w.kind, w.match_path, w.match_value, w.if_expr, r.event, r.status
FROM durably_waits w JOIN durably_runs r ON r.id = w.run_id
WHERE w.env = :env AND w.event_name = :name AND w.created_at <= :now
  AND (w.expires_at IS NULL OR w.expires_at > :now);

-- name: delete_waits_of_step
DELETE FROM durably_waits WHERE run_id = :run_id AND step_id = :step_id AND kind = 'wait';

-- name: delete_waits_of_run
DELETE FROM durably_waits WHERE run_id = :run_id;

-- name: cancel_open_steps
-- A run ended from outside (cancelled, timed out): its steps still sleeping, waiting or
-- retrying end as cancelled, never left open.
UPDATE durably_steps SET status = 'cancelled', finished_at = :now
WHERE run_id = :run_id AND status IN ('sleeping', 'waiting', 'retrying');

-- name: insert_wait
INSERT INTO durably_waits (env, run_id, step_id, kind, event_name, match_path, match_value, if_expr,
    expires_at, created_at)
VALUES (:env, :run_id, :step_id, :kind, :event_name, :match_path, :match_value, :if_expr,
    :expires_at, :now)
ON CONFLICT DO NOTHING;

-- name: resolve_step
UPDATE durably_steps SET status = :status, output = :output, error = :error, finished_at = :now
WHERE run_id = :run_id AND step_id = :step_id AND status IN ('sleeping', 'waiting');

-- name: wake_run
UPDATE durably_runs SET available_at = :now, sort_at = LEAST(sort_at, CAST(:now AS double precision) - priority)
WHERE id = :run_id AND status IN ('sleeping', 'waiting');

-- name: claim_candidates
-- Runs ready to start or resume, in claim order, for the functions this worker runs.
-- Paged by (sort_at, id) after the last row seen, so runs blocked by a full concurrency key
-- do not hide ready runs of other keys behind them.
-- FOR UPDATE SKIP LOCKED: a row another worker is claiming right now is skipped rather
-- than waited for, and stays locked by us until commit, so no two workers claim one run.
SELECT id, ckeys, throttle, started_at, start_deadline, sort_at, gathering FROM durably_runs
WHERE env = :env AND status IN ('queued', 'sleeping', 'waiting')
  AND available_at <= :now AND fair_key IS NULL
  AND function_id IN (SELECT jsonb_array_elements_text(CAST(:functions AS jsonb)))
  AND NOT EXISTS (SELECT 1 FROM durably_paused p WHERE p.env = :env AND p.function_id = durably_runs.function_id)
  AND (CAST(:after_sort AS double precision) IS NULL OR sort_at > :after_sort
       OR (sort_at = :after_sort AND id > CAST(:after_id AS text)))
ORDER BY sort_at, id
LIMIT :limit
FOR UPDATE SKIP LOCKED;

-- name: claim_fair_candidates
-- Ready runs of fair functions (Fairness): the oldest ready runs of each (function, key) in
-- turn, round by round: every key's first run, then every key's second, ... (rn, then claim
-- order within a round, so priorities still order each round). The keys come from a loose
-- index scan of durably_runs_fair (one probe per key, not a scan of a key's backlog); each key
-- gives at most its share of :limit, locked with SKIP LOCKED like claim_candidates (so the
-- rows locked are about :limit, however many keys there are).
WITH RECURSIVE fk AS (
    (SELECT function_id, fair_key FROM durably_runs
     WHERE env = :env AND status IN ('queued', 'sleeping', 'waiting') AND fair_key IS NOT NULL
       AND function_id IN (SELECT jsonb_array_elements_text(CAST(:functions AS jsonb)))
     ORDER BY function_id, fair_key LIMIT 1)
    UNION ALL
    SELECT n.function_id, n.fair_key FROM fk, LATERAL (
        SELECT * FROM (
            (SELECT function_id, fair_key FROM durably_runs  -- the next key of the same function
             WHERE env = :env AND status IN ('queued', 'sleeping', 'waiting') AND fair_key IS NOT NULL
               AND function_id = fk.function_id AND fair_key > fk.fair_key
             ORDER BY fair_key LIMIT 1)
            UNION ALL
            (SELECT function_id, fair_key FROM durably_runs  -- else the first key of the next function
             WHERE env = :env AND status IN ('queued', 'sleeping', 'waiting') AND fair_key IS NOT NULL
               AND function_id IN (SELECT jsonb_array_elements_text(CAST(:functions AS jsonb)))
               AND function_id > fk.function_id
             ORDER BY function_id, fair_key LIMIT 1)) nx
        LIMIT 1) n
)
SELECT c.id, c.ckeys, c.throttle, c.started_at, c.start_deadline, c.sort_at, c.gathering,
       fk.function_id, fk.fair_key,
       ROW_NUMBER() OVER (PARTITION BY fk.function_id, fk.fair_key ORDER BY c.sort_at, c.id) AS rn,
       COALESCE(s.served_at, 0) AS served_at
FROM fk LEFT JOIN durably_fair_keys s
  ON s.env = :env AND s.function_id = fk.function_id AND s.fair_key = fk.fair_key, LATERAL (
    SELECT id, ckeys, throttle, started_at, start_deadline, sort_at, gathering FROM durably_runs r
    WHERE r.env = :env AND r.function_id = fk.function_id AND r.fair_key = fk.fair_key
      AND r.status IN ('queued', 'sleeping', 'waiting') AND r.available_at <= :now
      AND NOT EXISTS (SELECT 1 FROM durably_paused p WHERE p.env = :env AND p.function_id = fk.function_id)
    ORDER BY r.sort_at, r.id
    LIMIT (SELECT CEIL(CAST(:limit AS double precision) / COUNT(*)) FROM fk)
    FOR UPDATE SKIP LOCKED) c
ORDER BY rn, served_at, c.sort_at, c.id
LIMIT :limit;

-- name: fair_served
-- The keys of a claim's fair runs were served now (:served: [[function_id, fair_key, at], ...]).
INSERT INTO durably_fair_keys (env, function_id, fair_key, served_at)
SELECT :env, x->>0, x->>1, CAST(x->>2 AS double precision) FROM jsonb_array_elements(CAST(:served AS jsonb)) AS x
ON CONFLICT (env, function_id, fair_key) DO UPDATE SET served_at = excluded.served_at;

-- name: claim_runs
-- Lease runs (:ids, a JSON array) to a worker; bumps each one's fencing token. RETURNING
-- sees the new row, so a run started before (started_at kept by COALESCE) is a resumption.
-- = ANY of an array makes the planner look the ids up by primary key, not scan the ready
-- runs.
UPDATE durably_runs
SET status = 'running', lease_owner = :owner,
    lease_expires_at = CAST(:now AS double precision) + :lease,
    lease_gen = lease_gen + 1, started_at = COALESCE(started_at, :now),
    finish_deadline = COALESCE(finish_deadline, CAST(:now AS double precision) + finish_timeout), gathering = 0
WHERE id = ANY (ARRAY(SELECT json_array_elements_text(CAST(:ids AS json))))
  AND status IN ('queued', 'sleeping', 'waiting')
RETURNING id, function_id, tenant, trigger, event, events, attempt, lease_gen, started_at,
    created_at, parent_run_id, finish_deadline, (started_at < :now) AS resumed,
    (ckeys IS NOT NULL OR EXISTS (SELECT 1 FROM durably_waits w WHERE w.run_id = durably_runs.id)) AS holds;

-- name: next_available
-- Two halves, one per ready index (durably_runs_ready: runs without a fair key; durably_runs_fair).
SELECT LEAST(
  (SELECT MIN(available_at) FROM durably_runs
   WHERE env = :env AND status IN ('queued', 'sleeping', 'waiting') AND fair_key IS NULL
     AND function_id IN (SELECT jsonb_array_elements_text(CAST(:functions AS jsonb)))
     AND NOT EXISTS (SELECT 1 FROM durably_paused p WHERE p.env = :env AND p.function_id = durably_runs.function_id)),
  (SELECT MIN(available_at) FROM durably_runs
   WHERE env = :env AND status IN ('queued', 'sleeping', 'waiting') AND fair_key IS NOT NULL
     AND function_id IN (SELECT jsonb_array_elements_text(CAST(:functions AS jsonb)))
     AND NOT EXISTS (SELECT 1 FROM durably_paused p WHERE p.env = :env AND p.function_id = durably_runs.function_id)));

-- name: slots_used
SELECT slot FROM durably_slots WHERE env = :env AND key = :key;

-- name: take_slot
-- Take slot number :slot of a key; rowcount 0 = somebody holds it (the unique key decides:
-- a concurrent taker of the same slot waits for us, then conflicts).
INSERT INTO durably_slots (env, key, slot, run_id) VALUES (:env, :key, :slot, :run_id) ON CONFLICT DO NOTHING;

-- name: release_slots
DELETE FROM durably_slots WHERE run_id = :run_id;

-- name: load_steps
SELECT step_id, kind, status, seq, attempts, output, error, started_at, finished_at, wake_at
FROM durably_steps WHERE run_id = :run_id ORDER BY seq;

-- name: suspend_run
UPDATE durably_runs
SET status = :status, available_at = :available_at,
    sort_at = CAST(:available_at AS double precision) - priority,
    lease_owner = NULL, lease_expires_at = NULL, attempt = attempt + :attempt_inc,
    error = COALESCE(CAST(:error AS text), error)
WHERE id = :run_id AND lease_gen = :lease_gen;

-- name: finish_runs
-- End runs for good: :items is a JSON array of {id, gen, status, output, error, reason};
-- a run whose lease was lost is not returned.
-- The ids as an array, and a status test that durably_runs_owner's predicate does not
-- match: the planner finds the rows by primary key, not by scanning that partial index
-- (on a busy queue, mostly dead entries until vacuum).
UPDATE durably_runs AS r
SET status = j.status, output = j.output, error = j.error, terminal_reason = j.reason,
    finished_at = :now, lease_owner = NULL, lease_expires_at = NULL
FROM json_to_recordset(CAST(:items AS json))
    AS j(id text, gen integer, status text, output text, error text, reason text)
WHERE r.id = ANY (ARRAY(SELECT j.id FROM json_to_recordset(CAST(:items AS json)) AS j(id text)))
  AND r.id = j.id AND r.lease_gen = j.gen AND r.status || '' = 'running'
RETURNING r.id, r.tenant, r.function_id, r.parent_run_id, r.parent_step_id, r.started_at, r.attempt, r.singleton_key,
    r.trigger, r.notify_end,
    (SELECT max(s.attempts) FROM durably_steps s WHERE s.run_id = r.id) AS step_attempts;

-- name: max_step_attempts
-- The largest attempts among a run's steps (0 without steps): the status blob's attempt.
SELECT COALESCE(max(attempts), 0) AS n FROM durably_steps WHERE run_id = :run_id;

-- name: release_slots_of_runs
DELETE FROM durably_slots WHERE run_id IN (SELECT json_array_elements_text(CAST(:ids AS json)));

-- name: delete_waits_of_runs
DELETE FROM durably_waits WHERE run_id IN (SELECT json_array_elements_text(CAST(:ids AS json)));

-- name: fence_runs
-- Every write of a running run goes through here first: :items is a JSON array of
-- {id, gen, lease}; extends the lease of every run still held under that token, and
-- returns its (id, lease_gen). By primary key, as in finish_runs.
UPDATE durably_runs AS r SET lease_expires_at = CAST(:now AS double precision) + j.lease
FROM json_to_recordset(CAST(:items AS json)) AS j(id text, gen integer, lease double precision)
WHERE r.id = ANY (ARRAY(SELECT j.id FROM json_to_recordset(CAST(:items AS json)) AS j(id text)))
  AND r.id = j.id AND r.lease_gen = j.gen AND r.status || '' = 'running'
RETURNING r.id, r.lease_gen;

-- name: upsert_steps
-- Write steps' state (:items, a JSON array of step objects, with gen: the lease token of
-- the run); a finished step (completed/failed) is never overwritten. Returns the
-- (run_id, step_id) of every step written. A step is written only while its run is held
-- under that token: the statement needs no result of fence_runs (the two travel
-- together), only that it ran first in this transaction, so that the runs still held are
-- locked by it.
INSERT INTO durably_steps (run_id, step_id, kind, status, seq, attempts, output, error, log,
    started_at, finished_at, wake_at)
SELECT j.run_id, j.step_id, j.kind, j.status, j.seq, j.attempts, j.output, j.error,
    CASE WHEN j.log IS NULL THEN '[]' ELSE CAST(jsonb_build_array(CAST(j.log AS jsonb)) AS text) END,
    j.started_at, j.finished_at, j.wake_at
FROM json_to_recordset(CAST(:items AS json)) AS j(run_id text, step_id text, kind text, status text,
    seq integer, attempts integer, output text, error text, log text, started_at double precision,
    finished_at double precision, wake_at double precision, gen integer)
WHERE EXISTS (SELECT 1 FROM durably_runs r WHERE r.id = j.run_id AND r.lease_gen = j.gen AND r.status = 'running')
ON CONFLICT (run_id, step_id) DO UPDATE SET
    status = excluded.status, attempts = excluded.attempts, output = excluded.output,
    error = excluded.error,
    log = CASE WHEN excluded.log = '[]' THEN durably_steps.log
               ELSE CAST(CAST(durably_steps.log AS jsonb) || CAST(excluded.log AS jsonb) AS text) END,
    finished_at = excluded.finished_at, wake_at = excluded.wake_at
WHERE durably_steps.status NOT IN ('completed', 'failed')
RETURNING run_id, step_id;

-- name: cancel_run
UPDATE durably_runs
SET status = 'cancelled', terminal_reason = :reason, finished_at = :now, lease_owner = NULL,
    lease_expires_at = NULL, lease_gen = lease_gen + 1
WHERE id = :run_id AND env = :env AND status NOT IN ('completed', 'failed', 'cancelled')
RETURNING tenant, function_id, parent_run_id, parent_step_id, started_at, attempt, event, singleton_key, trigger,
    notify_end;

-- name: heartbeat_runs
UPDATE durably_runs SET lease_expires_at = CAST(:now AS double precision) + :lease
WHERE lease_owner = :owner AND status = 'running';

-- name: upsert_worker
INSERT INTO durably_workers (env, id, host, pid, functions, concurrency, started_at, heartbeat_at)
VALUES (:env, :id, :host, :pid, :functions, :concurrency, :now, :now)
ON CONFLICT (env, id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, functions = excluded.functions;

-- name: delete_worker
DELETE FROM durably_workers WHERE env = :env AND id = :id;

-- name: expired_leases
-- Locked here and skipped by a concurrent recovery: the requeue that follows cannot race
-- a heartbeat that renews the lease in between (the heartbeat waits for our commit).
SELECT id FROM durably_runs
WHERE env = :env AND status = 'running' AND lease_expires_at < :now
LIMIT 500
FOR UPDATE SKIP LOCKED;

-- name: requeue_run
UPDATE durably_runs
SET status = 'queued', available_at = :now, sort_at = LEAST(sort_at, CAST(:now AS double precision) - priority),
    lease_owner = NULL,
    lease_expires_at = NULL, lease_gen = lease_gen + 1
WHERE id = :run_id AND status = 'running'
  AND (CAST(:owner AS text) IS NULL OR lease_owner = :owner);

-- name: requeue_run_fenced
-- Give back a run whose end its worker could not record: only under the lease token that
-- worker held, so a run finished (the outcome committed after all) or taken over is left alone.
UPDATE durably_runs
SET status = 'queued', available_at = :now, sort_at = LEAST(sort_at, CAST(:now AS double precision) - priority),
    lease_owner = NULL,
    lease_expires_at = NULL, lease_gen = lease_gen + 1
WHERE id = :run_id AND lease_gen = :gen AND status = 'running';

-- name: upsert_function
INSERT INTO durably_functions (env, id, app_id, config, updated_at)
VALUES (:env, :id, :app_id, :config, :now)
ON CONFLICT (env, id) DO UPDATE SET app_id = excluded.app_id, config = excluded.config,
    updated_at = excluded.updated_at;

-- name: delete_triggers
DELETE FROM durably_triggers WHERE env = :env AND function_id = :function_id;

-- name: insert_trigger
INSERT INTO durably_triggers (env, event_name, function_id, if_expr)
VALUES (:env, :event_name, :function_id, :if_expr)
ON CONFLICT DO NOTHING;

-- name: cron_state
SELECT last_tick FROM durably_cron WHERE env = :env AND function_id = :function_id AND schedule = :schedule;

-- name: init_cron
INSERT INTO durably_cron (env, function_id, schedule, last_tick)
VALUES (:env, :function_id, :schedule, :now) ON CONFLICT DO NOTHING;

-- name: advance_cron
-- Compare-and-set: only the scheduler that read last_tick may advance it. A concurrent
-- advance waits on the row lock, then re-checks last_tick against the committed value.
UPDATE durably_cron SET last_tick = :tick
WHERE env = :env AND function_id = :function_id AND schedule = :schedule AND last_tick = :last_tick;

-- name: upsert_status
INSERT INTO durably_status (env, tenant, function_id, blob, updated_at)
VALUES (:env, :tenant, :function_id, :blob, :now)
ON CONFLICT (env, tenant, function_id) DO UPDATE SET blob = excluded.blob, updated_at = excluded.updated_at;

-- name: get_status
SELECT blob FROM durably_status WHERE env = :env AND tenant = :tenant AND function_id = :function_id;

-- name: get_run
SELECT * FROM durably_runs WHERE env = :env AND id = :id;

-- name: list_functions
SELECT id, app_id, config, updated_at FROM durably_functions WHERE env = :env ORDER BY id;

-- name: get_event
SELECT id, name, data, ts, received_at FROM durably_events WHERE env = :env AND id = :id;

-- name: runs_of_event
SELECT id, function_id, status FROM durably_runs WHERE env = :env AND event_id = :event_id ORDER BY created_at;

-- name: skips_of_event
SELECT function_id, reason, created_at FROM durably_skips WHERE env = :env AND event_id = :event_id;

-- name: live_workers
SELECT id, host, pid, functions, concurrency, started_at, heartbeat_at FROM durably_workers
WHERE env = :env AND heartbeat_at > :since ORDER BY started_at;

-- name: leader_acquire
INSERT INTO durably_leaders (env, name, owner, expires_at)
VALUES (:env, :name, :owner, CAST(:now AS double precision) + :ttl)
ON CONFLICT (env, name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
WHERE durably_leaders.owner = excluded.owner OR durably_leaders.expires_at < :now;

-- name: leader_owner
SELECT owner FROM durably_leaders WHERE env = :env AND name = :name;

-- name: list_runs
SELECT * FROM durably_runs
WHERE env = :env
  AND (CAST(:status AS text) IS NULL OR status = :status)
  AND (CAST(:function_id AS text) IS NULL OR function_id = :function_id)
  AND (CAST(:tenant AS text) IS NULL OR tenant = :tenant)
  AND (CAST(:since AS double precision) IS NULL OR created_at >= :since)
  AND (CAST(:until AS double precision) IS NULL OR created_at < :until)
  AND (CAST(:cursor_at AS double precision) IS NULL OR created_at < :cursor_at
       OR (created_at = :cursor_at AND id < CAST(:cursor_id AS text)))
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: list_events
SELECT id, name, data, ts, received_at FROM durably_events
WHERE env = :env
  AND (CAST(:name AS text) IS NULL OR name = :name)
  AND (CAST(:cursor_at AS double precision) IS NULL OR received_at < :cursor_at
       OR (received_at = :cursor_at AND id < CAST(:cursor_id AS text)))
ORDER BY received_at DESC, id DESC
LIMIT :limit;

-- name: function_stats
SELECT function_id, status, COUNT(*) AS n FROM durably_runs
WHERE env = :env AND created_at >= :since
GROUP BY function_id, status;

-- name: last_run_of
-- A range of one value and the index's own order, not `function_id = :function_id ORDER BY
-- created_at`: the plan of a prepared statement is generic, and on a ledger where most runs
-- belong to a few functions it walked durably_runs_by_time backwards through every run
-- looking for a function that has none (26 ms at 10^5 runs, per function on the page).
SELECT id, status, created_at, started_at, finished_at FROM durably_runs
WHERE env = :env AND function_id >= :function_id AND function_id <= :function_id
ORDER BY function_id DESC, created_at DESC LIMIT 1;

-- name: cron_of
SELECT schedule, last_tick FROM durably_cron WHERE env = :env AND function_id = :function_id;

-- name: backlog
SELECT function_id, COUNT(*) AS n, MIN(available_at) AS oldest FROM durably_runs
WHERE env = :env AND status = 'queued' AND available_at <= :now
GROUP BY function_id;

-- name: stale_leases
SELECT COUNT(*) FROM durably_runs WHERE env = :env AND status = 'running' AND lease_expires_at < :now;

-- name: count_by_status
SELECT status, COUNT(*) AS n FROM durably_runs WHERE env = :env GROUP BY status;

-- name: load_steps_full
SELECT step_id, kind, status, seq, attempts, output, error, log, started_at, finished_at, wake_at
FROM durably_steps WHERE run_id = :run_id ORDER BY seq;

-- name: fail_new_run
UPDATE durably_runs SET status = 'failed', error = :error, terminal_reason = :reason, finished_at = :now
WHERE id = :run_id;

-- name: get_step
SELECT step_id, kind, status, seq, attempts, output, error, started_at, finished_at, wake_at
FROM durably_steps WHERE run_id = :run_id AND step_id = :step_id;

-- name: gcra_get
-- The theoretical arrival time of a throttle / rate-limit key (absent: never used), read
-- under the key's lock so two transactions cannot both pass on the same state.
SELECT tat FROM durably_gcra_get(:env, :key);

-- name: gcra_set
INSERT INTO durably_gcra (env, key, tat) VALUES (:env, :key, :tat)
ON CONFLICT (env, key) DO UPDATE SET tat = excluded.tat;

-- name: defer_run
UPDATE durably_runs SET available_at = :at WHERE id = :run_id AND status = 'queued';

-- name: key_holder
-- Read under the key's lock: two singleton runs of one key cannot both see "no holder".
SELECT run_id, expires_at FROM durably_key_holder(:env, :scope, :key);

-- name: release_keys_of_run
DELETE FROM durably_keys WHERE run_id = :run_id AND scope LIKE 'singleton:%';

-- name: debounce_open
SELECT run_id, first_at FROM durably_debounce_open(:env, :function_id, :key);

-- name: debounce_put
INSERT INTO durably_debounce (env, function_id, key, run_id, first_at)
VALUES (:env, :function_id, :key, :run_id, :now)
ON CONFLICT (env, function_id, key) DO UPDATE SET run_id = excluded.run_id, first_at = excluded.first_at;

-- name: debounce_take
UPDATE durably_runs SET event = :event, event_id = :event_id, available_at = :at,
    sort_at = CAST(:at AS double precision) - priority
WHERE id = :run_id AND status = 'queued' AND gathering = 1;

-- name: batch_open
SELECT run_id, size FROM durably_batch_open(:env, :function_id, :key);

-- name: batch_put
INSERT INTO durably_batches (env, function_id, key, run_id, size)
VALUES (:env, :function_id, :key, :run_id, 1)
ON CONFLICT (env, function_id, key) DO UPDATE SET run_id = excluded.run_id, size = 1;

-- name: batch_append
UPDATE durably_runs
SET events = CAST(CAST(events AS jsonb) || jsonb_build_array(CAST(:event AS jsonb)) AS text),
    available_at = CASE WHEN CAST(:full AS integer) = 1 THEN :now ELSE available_at END,
    sort_at = CASE WHEN CAST(:full AS integer) = 1 THEN LEAST(sort_at, CAST(:now AS double precision) - priority)
              ELSE sort_at END,
    gathering = CASE WHEN CAST(:full AS integer) = 1 THEN 0 ELSE 1 END
WHERE id = :run_id AND status = 'queued' AND gathering = 1;

-- name: batch_grow
UPDATE durably_batches SET size = size + 1 WHERE run_id = :run_id;

-- name: close_gathering
DELETE FROM durably_debounce WHERE run_id = :run_id;

-- name: close_batch
DELETE FROM durably_batches WHERE run_id = :run_id;

-- name: expired_starts
SELECT id FROM durably_runs
WHERE env = :env AND status = 'queued' AND start_deadline IS NOT NULL AND start_deadline < :now
  AND started_at IS NULL
LIMIT 500;

-- name: expired_finishes
SELECT id FROM durably_runs
WHERE env = :env AND finish_deadline IS NOT NULL AND finish_deadline < :now
  AND status IN ('queued', 'running', 'sleeping', 'waiting')
LIMIT 500;

-- name: fail_run
UPDATE durably_runs
SET status = 'failed', terminal_reason = :reason, error = :error, finished_at = :now, lease_owner = NULL,
    lease_expires_at = NULL, lease_gen = lease_gen + 1
WHERE id = :run_id AND env = :env AND status NOT IN ('completed', 'failed', 'cancelled')
RETURNING tenant, function_id, parent_run_id, parent_step_id, started_at, attempt, event, singleton_key, trigger,
    notify_end;

-- name: list_skips
SELECT event_id, function_id, reason, created_at FROM durably_skips
WHERE env = :env AND (CAST(:function_id AS text) IS NULL OR function_id = :function_id)
ORDER BY created_at DESC LIMIT :limit;

-- name: list_slots
SELECT key, run_id FROM durably_slots WHERE env = :env ORDER BY key, run_id;

-- name: insert_dispatch
-- The first ping of a dispatch window: rowcount 1. A concurrent ping of the same window
-- waits for the first to commit, then conflicts and writes nothing (rowcount 0).
INSERT INTO durably_dispatches (env, key, window_start, event_id, first_seen, pings)
VALUES (:env, :key, :window_start, :event_id, :now, 1)
ON CONFLICT (env, key, window_start) DO NOTHING;

-- name: ping_dispatch
UPDATE durably_dispatches SET pings = pings + 1
WHERE env = :env AND key = :key AND window_start = :window_start
RETURNING event_id, first_seen, pings;

-- name: last_run_by_trigger
SELECT id, status, created_at, started_at, finished_at FROM durably_runs
WHERE env = :env AND function_id = :function_id AND trigger = :trigger
ORDER BY created_at DESC LIMIT 1;

-- name: replay_candidates
SELECT * FROM durably_runs
WHERE env = :env AND function_id = :function_id AND status = :status
  AND (CAST(:since AS double precision) IS NULL OR created_at >= :since)
  AND (CAST(:until AS double precision) IS NULL OR created_at < :until)
  AND (CAST(:tenant AS text) IS NULL OR tenant = :tenant)
  AND id NOT IN (SELECT replay_of FROM durably_runs
                 WHERE env = :env AND function_id = :function_id AND replay_of IS NOT NULL)
ORDER BY created_at, id
LIMIT :limit;

-- name: metrics_runs
-- COUNT and SUM of integers are bigint/numeric here: cast back to bigint so Python gets ints.
SELECT function_id, status, COUNT(*) AS n,
       CAST(SUM(CASE WHEN started_at IS NOT NULL THEN 1 ELSE 0 END) AS bigint) AS started,
       CAST(COALESCE(SUM(attempt), 0) AS bigint) AS retries
FROM durably_runs WHERE env = :env
GROUP BY function_id, status;

-- name: metrics_dead_letters
SELECT function_id, COUNT(*) AS n FROM durably_runs
WHERE env = :env AND status = 'failed'
  AND id NOT IN (SELECT replay_of FROM durably_runs WHERE env = :env AND replay_of IS NOT NULL)
GROUP BY function_id;

-- name: metrics_step_durations
SELECT function_id, b, COUNT(*) AS n, SUM(d) AS total FROM (
    SELECT r.function_id AS function_id, s.finished_at - s.started_at AS d,
           CASE WHEN s.finished_at - s.started_at <= 0.005 THEN 0
                WHEN s.finished_at - s.started_at <= 0.01 THEN 1
                WHEN s.finished_at - s.started_at <= 0.025 THEN 2
                WHEN s.finished_at - s.started_at <= 0.05 THEN 3
                WHEN s.finished_at - s.started_at <= 0.1 THEN 4
                WHEN s.finished_at - s.started_at <= 0.25 THEN 5
                WHEN s.finished_at - s.started_at <= 0.5 THEN 6
                WHEN s.finished_at - s.started_at <= 1 THEN 7
                WHEN s.finished_at - s.started_at <= 2.5 THEN 8
                WHEN s.finished_at - s.started_at <= 5 THEN 9
                WHEN s.finished_at - s.started_at <= 10 THEN 10
                WHEN s.finished_at - s.started_at <= 30 THEN 11
                WHEN s.finished_at - s.started_at <= 60 THEN 12
                WHEN s.finished_at - s.started_at <= 300 THEN 13
                ELSE 14 END AS b
    FROM durably_steps s JOIN durably_runs r ON r.id = s.run_id
    WHERE r.env = :env AND s.kind = 'run' AND s.status IN ('completed', 'failed')
      AND s.started_at IS NOT NULL AND s.finished_at IS NOT NULL
) t
GROUP BY function_id, b;

-- name: leader_release
DELETE FROM durably_leaders WHERE env = :env AND name = :name AND owner = :owner;

-- name: prunable_runs
SELECT id FROM durably_runs
WHERE env = :env AND status IN ('completed', 'failed', 'cancelled')
  AND created_at < :before AND finished_at < :before
LIMIT :limit;

-- name: prune_steps
DELETE FROM durably_steps WHERE run_id IN (SELECT json_array_elements_text(CAST(:ids AS json)));

-- name: prune_run_waits
DELETE FROM durably_waits WHERE run_id IN (SELECT json_array_elements_text(CAST(:ids AS json)));

-- name: prune_run_slots
DELETE FROM durably_slots WHERE run_id IN (SELECT json_array_elements_text(CAST(:ids AS json)));

-- name: prune_run_debounce
DELETE FROM durably_debounce WHERE run_id IN (SELECT json_array_elements_text(CAST(:ids AS json)));

-- name: prune_run_batches
DELETE FROM durably_batches WHERE run_id IN (SELECT json_array_elements_text(CAST(:ids AS json)));

-- name: prune_runs
DELETE FROM durably_runs WHERE env = :env AND id IN (SELECT json_array_elements_text(CAST(:ids AS json)));

-- name: prune_events
DELETE FROM durably_events WHERE env = :env AND id IN (
    SELECT id FROM durably_events WHERE env = :env AND received_at < :before LIMIT :limit);

-- name: prune_skips
-- The table has no key: rows are picked by their physical address (ctid).
DELETE FROM durably_skips WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM durably_skips WHERE env = :env AND created_at < :before LIMIT :limit));

-- name: prune_keys
DELETE FROM durably_keys WHERE env = :env AND (scope, key) IN (
    SELECT scope, key FROM durably_keys WHERE env = :env AND expires_at < :now LIMIT :limit);

-- name: prune_fair_keys
-- A fairness key served long ago is the same as a key never served (both go first in a round).
DELETE FROM durably_fair_keys WHERE env = :env AND served_at < :before;

-- name: prune_gcra
DELETE FROM durably_gcra WHERE env = :env AND key IN (
    SELECT key FROM durably_gcra WHERE env = :env AND tat < :before LIMIT :limit);

-- name: prune_dispatches
DELETE FROM durably_dispatches WHERE env = :env AND (key, window_start) IN (
    SELECT key, window_start FROM durably_dispatches WHERE env = :env AND first_seen < :before LIMIT :limit);

-- name: prune_workers
DELETE FROM durably_workers WHERE env = :env AND heartbeat_at < :before;

-- name: metrics_step_retries
SELECT r.function_id AS function_id,
       CAST(SUM(CASE WHEN s.status = 'retrying' THEN s.attempts ELSE s.attempts - 1 END) AS bigint) AS retries
FROM durably_steps s JOIN durably_runs r ON r.id = s.run_id
WHERE r.env = :env AND (s.attempts > 1 OR s.status = 'retrying')
GROUP BY r.function_id;

-- name: metrics_step_attempts
-- Metrics: finished ``step.run`` steps per function by how many attempts they took.
SELECT r.function_id AS function_id, s.attempts AS attempts, CAST(COUNT(*) AS bigint) AS n
FROM durably_steps s JOIN durably_runs r ON r.id = s.run_id
WHERE r.env = :env AND s.kind = 'run' AND s.status IN ('completed', 'failed')
GROUP BY r.function_id, s.attempts;

-- name: cron_open_runs
-- Overlap of cron ticks: the function's cron runs not ended yet, and how many of them are
-- buffered (queued to start when the open one ends: available_at at :buffered or later).
SELECT CAST(COUNT(*) AS integer) AS open,
       CAST(COALESCE(SUM(CASE WHEN available_at >= CAST(:buffered AS double precision) THEN 1 ELSE 0 END), 0)
            AS integer) AS buffered
FROM durably_runs
WHERE env = :env AND function_id = :function_id AND trigger = 'cron'
  AND status IN ('queued', 'running', 'sleeping', 'waiting');

-- name: release_buffered_cron
-- A cron run ended: the tick buffered behind it (overlap="buffer_one") becomes claimable now.
UPDATE durably_runs SET available_at = CAST(:now AS double precision),
    sort_at = CAST(:now AS double precision) - priority
WHERE env = :env AND function_id = :function_id AND trigger = 'cron' AND status = 'queued'
  AND available_at >= CAST(:buffered AS double precision);

-- name: watch_end
-- app.result waits on this run: the transaction that ends it will announce it.
UPDATE durably_runs SET notify_end = true WHERE id = :run_id AND env = :env AND NOT notify_end;

-- name: finished_per_minute
-- floor, not a cast: PostgreSQL rounds when casting to integer, SQLite truncates.
SELECT CAST(floor((finished_at - CAST(:since AS double precision)) / 60) AS integer) AS bucket, status,
       COUNT(*) AS n FROM durably_runs
WHERE env = :env AND finished_at >= :since AND status IN ('completed', 'failed', 'cancelled')
GROUP BY bucket, status;

-- name: events_since
-- Events of a name received since :since, oldest first: a wait stored a moment after it began
-- still sees an event that arrived in between.
SELECT data FROM durably_events
WHERE env = :env AND name = :name AND received_at >= :since
ORDER BY received_at, id
LIMIT 1000;

-- name: pause_function
-- Pause a function (mode 'queue' or 'skip'); pausing a paused function sets its mode. Read by
-- claim_candidates and next_available (its runs are not claimed) and by ingest (skip mode).
INSERT INTO durably_paused (env, function_id, mode, paused_at) VALUES (:env, :function_id, :mode, :now)
ON CONFLICT (env, function_id) DO UPDATE SET mode = excluded.mode;

-- name: resume_function
-- rowcount 0 = it was not paused.
DELETE FROM durably_paused WHERE env = :env AND function_id = :function_id;

-- name: paused_functions
SELECT function_id, mode, paused_at FROM durably_paused WHERE env = :env;

-- name: paused_functions_one
SELECT mode, paused_at FROM durably_paused WHERE env = :env AND function_id = :function_id;

-- name: paused_skip
-- The functions paused in skip mode: their new triggers are recorded as skipped (reason 'paused').
SELECT function_id FROM durably_paused WHERE env = :env AND mode = 'skip';

-- name: insert_audit
INSERT INTO durably_audit (id, env, at, role, action, target, params, client)
VALUES (:id, :env, :now, :role, :action, :target, :params, :client);

-- name: list_audit
-- The audit log, newest first; cursor = (at, id) of the last row seen.
SELECT id, env, at, role, action, target, params, client FROM durably_audit
WHERE env = :env
  AND (CAST(:cursor_at AS double precision) IS NULL OR at < :cursor_at
       OR (at = :cursor_at AND id < CAST(:cursor_id AS text)))
ORDER BY at DESC, id DESC
LIMIT :limit;

-- name: prune_audit
DELETE FROM durably_audit WHERE env = :env AND id IN (
    SELECT id FROM durably_audit WHERE env = :env AND at < :before LIMIT :limit);

-- name: copy_memo
-- Rerun from a step: the new run :run_id starts with the finished steps (completed, failed)
-- that run :from_run_id recorded before seq :before_seq, with their outputs and attempt logs,
-- so they replay from the memo.
INSERT INTO durably_steps (run_id, step_id, kind, status, seq, attempts, output, error, log,
    started_at, finished_at, wake_at)
SELECT CAST(:run_id AS text), step_id, kind, status, seq, attempts, output, error, log, started_at, finished_at,
    wake_at
FROM durably_steps
WHERE run_id = :from_run_id AND seq < CAST(:before_seq AS integer) AND status IN ('completed', 'failed');

-- name: delete_env_steps
-- Deleting an env (durably chaos's throwaway env): its runs' steps first (steps carry no env).
DELETE FROM durably_steps WHERE run_id IN (SELECT id FROM durably_runs WHERE env = :env);

-- name: delete_env_waits
DELETE FROM durably_waits WHERE env = :env;

-- name: delete_env_slots
DELETE FROM durably_slots WHERE env = :env;

-- name: delete_env_keys
DELETE FROM durably_keys WHERE env = :env;

-- name: delete_env_gcra
DELETE FROM durably_gcra WHERE env = :env;

-- name: delete_env_debounce
DELETE FROM durably_debounce WHERE env = :env;

-- name: delete_env_batches
DELETE FROM durably_batches WHERE env = :env;

-- name: delete_env_cron
DELETE FROM durably_cron WHERE env = :env;

-- name: delete_env_status
DELETE FROM durably_status WHERE env = :env;

-- name: delete_env_workers
DELETE FROM durably_workers WHERE env = :env;

-- name: delete_env_leaders
DELETE FROM durably_leaders WHERE env = :env;

-- name: delete_env_skips
DELETE FROM durably_skips WHERE env = :env;

-- name: delete_env_dispatches
DELETE FROM durably_dispatches WHERE env = :env;

-- name: delete_env_triggers
DELETE FROM durably_triggers WHERE env = :env;

-- name: delete_env_functions
DELETE FROM durably_functions WHERE env = :env;

-- name: delete_env_paused
DELETE FROM durably_paused WHERE env = :env;

-- name: delete_env_audit
DELETE FROM durably_audit WHERE env = :env;

-- name: delete_env_fair_keys
DELETE FROM durably_fair_keys WHERE env = :env;

-- name: delete_env_runs
DELETE FROM durably_runs WHERE env = :env;

-- name: delete_env_events
DELETE FROM durably_events WHERE env = :env;
