-- Named statements for the SQLite store. Each block: "-- name: <name>", its purpose and
-- parameters, then one statement. Parameters are :named. Loaded once by store/queries.py.

-- name: insert_event
-- Record an event. A duplicate id within 24 h is a conflict (nothing written, rowcount 0);
-- an id last seen more than 24 h ago is accepted as new again.
INSERT INTO durably_events (env, id, name, data, ts, received_at)
VALUES (:env, :id, :name, :data, :ts, :now)
ON CONFLICT (env, id) DO UPDATE SET name = excluded.name, data = excluded.data, ts = excluded.ts,
    received_at = excluded.received_at
WHERE durably_events.received_at < :now - 86400;

-- name: insert_events
-- Record a list of events (:rows, a JSON array of [id, name, data, ts], ids distinct) as
-- insert_event does one; returns the ids recorded as new (read before the write, which the
-- writer's lock on the database keeps true until the commit).
SELECT json_group_array(json_object('id', x.id)) AS packed
FROM (SELECT json_extract(value, '$[0]') AS id FROM json_each(:rows)) AS x
WHERE NOT EXISTS (SELECT 1 FROM durably_events e
                  WHERE e.env = :env AND e.id = x.id AND e.received_at >= :now - 86400);
INSERT INTO durably_events (env, id, name, data, ts, received_at)
SELECT :env, json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
    json_extract(value, '$[3]'), :now
FROM json_each(:rows) WHERE true
ON CONFLICT (env, id) DO UPDATE SET name = excluded.name, data = excluded.data, ts = excluded.ts,
    received_at = excluded.received_at
WHERE durably_events.received_at < :now - 86400;

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
SELECT json_extract(value, '$[0]'), :env, json_extract(value, '$[1]'), 'queued', json_extract(value, '$[2]'),
    json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'),
    json_extract(value, '$[6]'), json_extract(value, '$[7]'), json_extract(value, '$[8]'),
    json_extract(value, '$[9]'), :now, json_extract(value, '$[10]'), json_extract(value, '$[11]'),
    json_extract(value, '$[12]'), json_extract(value, '$[13]'), json_extract(value, '$[14]'),
    json_extract(value, '$[15]'), json_extract(value, '$[16]'), json_extract(value, '$[17]'), 0,
    json_extract(value, '$[18]')
FROM json_each(:rows);

-- name: take_key
-- Take a unique key (idempotency, singleton, ...) unless a live holder has it. rowcount 1 = taken.
INSERT INTO durably_keys (env, scope, key, run_id, expires_at)
VALUES (:env, :scope, :key, :run_id, :expires_at)
ON CONFLICT (env, scope, key) DO UPDATE SET run_id = excluded.run_id, expires_at = excluded.expires_at
WHERE durably_keys.expires_at <= :now;

-- name: take_keys
-- Take unique keys (:rows, a JSON array of [scope, key, run_id, expires_at], keys distinct) as
-- take_key does one; returns the run_id of each key taken (read before the write, which the
-- writer's lock on the database keeps true until the commit).
SELECT json_group_array(json_object('run_id', json_extract(value, '$[2]'))) AS packed
FROM json_each(:rows)
WHERE NOT EXISTS (SELECT 1 FROM durably_keys k
                  WHERE k.env = :env AND k.scope = json_extract(value, '$[0]')
                    AND k.key = json_extract(value, '$[1]') AND k.expires_at > :now);
INSERT INTO durably_keys (env, scope, key, run_id, expires_at)
SELECT :env, json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
    json_extract(value, '$[3]')
FROM json_each(:rows) WHERE true
ON CONFLICT (env, scope, key) DO UPDATE SET run_id = excluded.run_id, expires_at = excluded.expires_at
WHERE durably_keys.expires_at <= :now;

-- name: insert_skip
INSERT INTO durably_skips (env, event_id, function_id, reason, created_at)
VALUES (:env, :event_id, :function_id, :reason, :now);

-- name: waits_for
-- Pending waits and cancel_on subscriptions for an event name, with the waiting run's trigger event.
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
-- Complete a pending (sleeping/waiting) step from outside the run: an awaited event arrived or
-- an invoked run finished. Only a still-pending step changes: whoever comes first wins.
UPDATE durably_steps SET status = :status, output = :output, error = :error, finished_at = :now
WHERE run_id = :run_id AND step_id = :step_id AND status IN ('sleeping', 'waiting');

-- name: wake_run
-- Make a suspended run claimable now.
UPDATE durably_runs SET available_at = :now, sort_at = MIN(sort_at, :now - priority)
WHERE id = :run_id AND status IN ('sleeping', 'waiting');

-- name: claim_candidates
-- Runs ready to start or resume, in claim order, for the functions this worker runs.
-- Paged by (sort_at, id) after the last row seen, so runs blocked by a full concurrency key
-- do not hide ready runs of other keys behind them. The rows come back as one JSON value
-- (see SqliteTx.all), REALs printed with 17 digits so they read back exactly.
SELECT json_group_array(json_object('id', id, 'ckeys', ckeys, 'throttle', throttle,
    'started_at', CASE WHEN started_at IS NULL THEN NULL ELSE json(printf('%!.17g', started_at)) END,
    'start_deadline', CASE WHEN start_deadline IS NULL THEN NULL ELSE json(printf('%!.17g', start_deadline)) END,
    'sort_at', json(printf('%!.17g', sort_at)), 'gathering', gathering)) AS packed
FROM (SELECT id, ckeys, throttle, started_at, start_deadline, sort_at, gathering FROM durably_runs
      WHERE env = :env AND status IN ('queued', 'sleeping', 'waiting')
        AND available_at <= :now AND fair_key IS NULL
        AND function_id IN (SELECT value FROM json_each(:functions))
        AND NOT EXISTS (SELECT 1 FROM durably_paused p WHERE p.env = :env AND p.function_id = durably_runs.function_id)
        AND (:after_sort IS NULL OR sort_at > :after_sort OR (sort_at = :after_sort AND id > :after_id))
      ORDER BY sort_at, id
      LIMIT :limit);

-- name: claim_fair_candidates
-- Ready runs of fair functions (Fairness): the oldest ready runs of each (function, key) in
-- turn, round by round: every key's first run, then every key's second, ... (rn, then claim
-- order within a round, so priorities still order each round). The keys come from a loose
-- index scan of durably_runs_fair (one probe per key); each key gives at most its share of :limit.
WITH RECURSIVE fk(function_id, fair_key) AS (
    SELECT function_id, fair_key FROM (
        SELECT function_id, fair_key FROM durably_runs INDEXED BY durably_runs_fair
        WHERE env = :env AND status IN ('queued', 'sleeping', 'waiting') AND fair_key IS NOT NULL
          AND function_id IN (SELECT value FROM json_each(:functions))
        ORDER BY function_id, fair_key LIMIT 1)
    UNION ALL
    SELECT r.function_id, r.fair_key FROM fk JOIN durably_runs r ON r.id = COALESCE(
        (SELECT id FROM durably_runs INDEXED BY durably_runs_fair  -- the next key of the same function
         WHERE env = :env AND status IN ('queued', 'sleeping', 'waiting') AND fair_key IS NOT NULL
           AND function_id = fk.function_id AND fair_key > fk.fair_key
         ORDER BY fair_key LIMIT 1),
        (SELECT id FROM durably_runs INDEXED BY durably_runs_fair  -- else the first key of the next function
         WHERE env = :env AND status IN ('queued', 'sleeping', 'waiting') AND fair_key IS NOT NULL
           AND function_id IN (SELECT value FROM json_each(:functions)) AND function_id > fk.function_id
         ORDER BY function_id, fair_key LIMIT 1))
),
c AS (
    SELECT r.id, r.ckeys, r.throttle, r.started_at, r.start_deadline, r.sort_at, r.gathering,
           r.function_id, r.fair_key,
           ROW_NUMBER() OVER (PARTITION BY r.function_id, r.fair_key ORDER BY r.sort_at, r.id) AS rn,
           COALESCE((SELECT served_at FROM durably_fair_keys s WHERE s.env = :env AND s.function_id = fk.function_id
                     AND s.fair_key = fk.fair_key), 0) AS served_at
    FROM fk JOIN durably_runs r ON r.id IN (
        SELECT id FROM durably_runs INDEXED BY durably_runs_fair
        WHERE env = :env AND function_id = fk.function_id AND fair_key = fk.fair_key
          AND status IN ('queued', 'sleeping', 'waiting') AND available_at <= :now
          AND NOT EXISTS (SELECT 1 FROM durably_paused p WHERE p.env = :env AND p.function_id = fk.function_id)
        ORDER BY sort_at, id LIMIT (SELECT (:limit + COUNT(*) - 1) / COUNT(*) FROM fk))
)
SELECT json_group_array(json_object('id', id, 'ckeys', ckeys, 'throttle', throttle,
    'started_at', CASE WHEN started_at IS NULL THEN NULL ELSE json(printf('%!.17g', started_at)) END,
    'start_deadline', CASE WHEN start_deadline IS NULL THEN NULL ELSE json(printf('%!.17g', start_deadline)) END,
    'sort_at', json(printf('%!.17g', sort_at)), 'gathering', gathering,
    'function_id', function_id, 'fair_key', fair_key)) AS packed
FROM (SELECT * FROM c ORDER BY rn, served_at, sort_at, id LIMIT :limit);

-- name: fair_served
-- The keys of a claim's fair runs were served now (:served: [[function_id, fair_key, at], ...]).
INSERT INTO durably_fair_keys (env, function_id, fair_key, served_at)
SELECT :env, json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]')
FROM json_each(:served) WHERE true
ON CONFLICT (env, function_id, fair_key) DO UPDATE SET served_at = excluded.served_at;

-- name: claim_runs
-- Lease runs (:ids, a JSON array) to a worker; bumps each one's fencing token. Returns
-- each leased run as it is after the lease: read first as one JSON value, then written
-- (nothing else writes between the two in this transaction). A run started before
-- (started_at kept by COALESCE) is a resumption.
SELECT json_group_array(json_object('id', id, 'function_id', function_id, 'tenant', tenant,
    'trigger', trigger, 'event', event, 'events', events, 'attempt', attempt,
    'lease_gen', lease_gen + 1,
    'started_at', json(printf('%!.17g', COALESCE(started_at, :now))),
    'created_at', json(printf('%!.17g', created_at)), 'parent_run_id', parent_run_id,
    'finish_deadline', CASE WHEN COALESCE(finish_deadline, :now + finish_timeout) IS NULL THEN NULL ELSE json(printf('%!.17g', COALESCE(finish_deadline, :now + finish_timeout))) END,
    'resumed', COALESCE(started_at, :now) < :now,
    'holds', (ckeys IS NOT NULL OR EXISTS (SELECT 1 FROM durably_waits w WHERE w.run_id = durably_runs.id))))
    AS packed
FROM durably_runs
WHERE id IN (SELECT value FROM json_each(:ids)) AND status IN ('queued', 'sleeping', 'waiting');
UPDATE durably_runs
SET status = 'running', lease_owner = :owner, lease_expires_at = :now + :lease,
    lease_gen = lease_gen + 1, started_at = COALESCE(started_at, :now),
    finish_deadline = COALESCE(finish_deadline, :now + finish_timeout), gathering = 0
WHERE id IN (SELECT value FROM json_each(:ids)) AND status IN ('queued', 'sleeping', 'waiting');

-- name: next_available
-- When the next run becomes claimable (the worker sleeps until then at most). Only live
-- runs are in this index; with statistics of a large ledger (ANALYZE), the planner would
-- otherwise rather scan the table.
-- Two halves, one per ready index; a half with no run gives NULL, which MIN(x, y) would return.
SELECT NULLIF(MIN(
  COALESCE((SELECT MIN(available_at) FROM durably_runs INDEXED BY durably_runs_ready
   WHERE env = :env AND status IN ('queued', 'sleeping', 'waiting') AND fair_key IS NULL
     AND function_id IN (SELECT value FROM json_each(:functions))
     AND NOT EXISTS (SELECT 1 FROM durably_paused p WHERE p.env = :env AND p.function_id = durably_runs.function_id)), 1e300),
  COALESCE((SELECT MIN(available_at) FROM durably_runs INDEXED BY durably_runs_fair
   WHERE env = :env AND status IN ('queued', 'sleeping', 'waiting') AND fair_key IS NOT NULL
     AND function_id IN (SELECT value FROM json_each(:functions))
     AND NOT EXISTS (SELECT 1 FROM durably_paused p WHERE p.env = :env AND p.function_id = durably_runs.function_id)), 1e300)), 1e300);

-- name: slots_used
SELECT slot FROM durably_slots WHERE env = :env AND key = :key;

-- name: take_slot
-- Take slot number :slot of a key; rowcount 0 = somebody holds it (the unique key decides).
INSERT INTO durably_slots (env, key, slot, run_id) VALUES (:env, :key, :slot, :run_id) ON CONFLICT DO NOTHING;

-- name: release_slots
DELETE FROM durably_slots WHERE run_id = :run_id;

-- name: load_steps
SELECT step_id, kind, status, seq, attempts, output, error, started_at, finished_at, wake_at
FROM durably_steps WHERE run_id = :run_id ORDER BY seq;

-- name: suspend_run
-- Park a run until available_at (sleep, wait, invoke, retry backoff) and free its lease.
UPDATE durably_runs
SET status = :status, available_at = :available_at, sort_at = :available_at - priority,
    lease_owner = NULL, lease_expires_at = NULL, attempt = attempt + :attempt_inc,
    error = COALESCE(:error, error)
WHERE id = :run_id AND lease_gen = :lease_gen;

-- name: finish_runs
-- End runs for good: :items is a JSON array of {id, gen, status, output, error, reason};
-- a run whose lease was lost is not returned. Read first as one JSON value, then written.
SELECT json_group_array(json_object('id', r.id, 'tenant', r.tenant, 'function_id', r.function_id,
    'parent_run_id', r.parent_run_id, 'parent_step_id', r.parent_step_id,
    'started_at', CASE WHEN r.started_at IS NULL THEN NULL ELSE json(printf('%!.17g', r.started_at)) END, 'attempt', r.attempt,
    'singleton_key', r.singleton_key, 'trigger', r.trigger, 'notify_end', r.notify_end,
    'step_attempts', (SELECT max(s.attempts) FROM durably_steps s WHERE s.run_id = r.id))) AS packed
FROM json_each(:items) AS j JOIN durably_runs r ON r.id = json_extract(j.value, '$.id')
WHERE r.lease_gen = json_extract(j.value, '$.gen') AND r.status = 'running';
UPDATE durably_runs
SET status = json_extract(j.value, '$.status'), output = json_extract(j.value, '$.output'),
    error = json_extract(j.value, '$.error'), terminal_reason = json_extract(j.value, '$.reason'),
    finished_at = :now, lease_owner = NULL, lease_expires_at = NULL
FROM json_each(:items) AS j
WHERE durably_runs.id = json_extract(j.value, '$.id') AND durably_runs.lease_gen = json_extract(j.value, '$.gen')
  AND durably_runs.status = 'running';

-- name: max_step_attempts
-- The largest attempts among a run's steps (0 without steps): the status blob's attempt.
SELECT COALESCE(max(attempts), 0) AS n FROM durably_steps WHERE run_id = :run_id;

-- name: release_slots_of_runs
DELETE FROM durably_slots WHERE run_id IN (SELECT value FROM json_each(:ids));

-- name: delete_waits_of_runs
DELETE FROM durably_waits WHERE run_id IN (SELECT value FROM json_each(:ids));

-- name: fence_runs
-- Every write of a running run goes through here first: :items is a JSON array of
-- {id, gen, lease}; extends the lease of every run still held under that token, and
-- returns its (id, lease_gen). Read first as one JSON value, then written.
SELECT json_group_array(json_object('id', r.id, 'lease_gen', r.lease_gen)) AS packed
FROM json_each(:items) AS j JOIN durably_runs r ON r.id = json_extract(j.value, '$.id')
WHERE r.lease_gen = json_extract(j.value, '$.gen') AND r.status = 'running';
UPDATE durably_runs SET lease_expires_at = :now + json_extract(j.value, '$.lease')
FROM json_each(:items) AS j
WHERE durably_runs.id = json_extract(j.value, '$.id') AND durably_runs.lease_gen = json_extract(j.value, '$.gen')
  AND durably_runs.status = 'running';

-- name: upsert_steps
-- Write steps' state (:items, a JSON array of step objects, with gen: the lease token of
-- the run); a finished step (completed/failed) is never overwritten. Returns the
-- (run_id, step_id) of every step written, read first as one JSON value: the steps of
-- held runs that are new or not finished. A step is written only while its run is held
-- under that token: the statement needs no result of fence_runs (the two travel
-- together), only that it ran first in this transaction, so that the runs still held are
-- locked by it.
SELECT json_group_array(json_object('run_id', json_extract(j.value, '$.run_id'),
    'step_id', json_extract(j.value, '$.step_id'))) AS packed
FROM json_each(:items) AS j
WHERE EXISTS (SELECT 1 FROM durably_runs r WHERE r.id = json_extract(j.value, '$.run_id')
              AND r.lease_gen = json_extract(j.value, '$.gen') AND r.status = 'running')
  AND NOT EXISTS (SELECT 1 FROM durably_steps s WHERE s.run_id = json_extract(j.value, '$.run_id')
                  AND s.step_id = json_extract(j.value, '$.step_id') AND s.status IN ('completed', 'failed'));
INSERT INTO durably_steps (run_id, step_id, kind, status, seq, attempts, output, error, log,
    started_at, finished_at, wake_at)
SELECT json_extract(value, '$.run_id'), json_extract(value, '$.step_id'), json_extract(value, '$.kind'),
    json_extract(value, '$.status'), json_extract(value, '$.seq'), json_extract(value, '$.attempts'),
    json_extract(value, '$.output'), json_extract(value, '$.error'),
    CASE WHEN json_extract(value, '$.log') IS NULL THEN '[]'
         ELSE json_array(json(json_extract(value, '$.log'))) END,
    json_extract(value, '$.started_at'), json_extract(value, '$.finished_at'), json_extract(value, '$.wake_at')
FROM json_each(:items)
WHERE EXISTS (SELECT 1 FROM durably_runs r WHERE r.id = json_extract(value, '$.run_id')
              AND r.lease_gen = json_extract(value, '$.gen') AND r.status = 'running')
ON CONFLICT (run_id, step_id) DO UPDATE SET
    status = excluded.status, attempts = excluded.attempts, output = excluded.output,
    error = excluded.error,
    log = CASE WHEN excluded.log = '[]' THEN durably_steps.log
               ELSE json_insert(durably_steps.log, '$[#]', json(json_extract(excluded.log, '$[0]'))) END,
    finished_at = excluded.finished_at, wake_at = excluded.wake_at
WHERE durably_steps.status NOT IN ('completed', 'failed');

-- name: cancel_run
-- Cancel a run that has not finished. Bumping the token fences out a worker that runs it now.
UPDATE durably_runs
SET status = 'cancelled', terminal_reason = :reason, finished_at = :now, lease_owner = NULL,
    lease_expires_at = NULL, lease_gen = lease_gen + 1
WHERE id = :run_id AND env = :env AND status NOT IN ('completed', 'failed', 'cancelled')
RETURNING tenant, function_id, parent_run_id, parent_step_id, started_at, attempt, event, singleton_key, trigger,
    notify_end;

-- name: heartbeat_runs
UPDATE durably_runs SET lease_expires_at = :now + :lease
WHERE lease_owner = :owner AND status = 'running';

-- name: upsert_worker
INSERT INTO durably_workers (env, id, host, pid, functions, concurrency, started_at, heartbeat_at)
VALUES (:env, :id, :host, :pid, :functions, :concurrency, :now, :now)
ON CONFLICT (env, id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, functions = excluded.functions;

-- name: delete_worker
DELETE FROM durably_workers WHERE env = :env AND id = :id;

-- name: expired_leases
-- The running runs are the few in durably_runs_owner; their lease expiry is checked on the rows.
SELECT id FROM durably_runs INDEXED BY durably_runs_owner
WHERE env = :env AND status = 'running' AND lease_expires_at < :now
LIMIT 500;

-- name: requeue_run
-- Give a run back to the queue (lease expired, or a worker shutting down); the token bump
-- fences out the previous holder.
UPDATE durably_runs
SET status = 'queued', available_at = :now, sort_at = MIN(sort_at, :now - priority), lease_owner = NULL,
    lease_expires_at = NULL, lease_gen = lease_gen + 1
WHERE id = :run_id AND status = 'running' AND (:owner IS NULL OR lease_owner = :owner);

-- name: requeue_run_fenced
-- Give back a run whose end its worker could not record: only under the lease token that
-- worker held, so a run finished (the outcome committed after all) or taken over is left alone.
UPDATE durably_runs
SET status = 'queued', available_at = :now, sort_at = MIN(sort_at, :now - priority), lease_owner = NULL,
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
-- Compare-and-set: only the scheduler that read last_tick may advance it.
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
-- Take or renew a leased leadership row; the holder renews, anyone takes an expired one.
INSERT INTO durably_leaders (env, name, owner, expires_at) VALUES (:env, :name, :owner, :now + :ttl)
ON CONFLICT (env, name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
WHERE durably_leaders.owner = excluded.owner OR durably_leaders.expires_at < :now;

-- name: leader_owner
SELECT owner FROM durably_leaders WHERE env = :env AND name = :name;

-- name: list_runs
-- The ledger, newest first, with optional filters; cursor = (created_at, id) of the last row seen.
SELECT * FROM durably_runs
WHERE env = :env
  AND (:status IS NULL OR status = :status)
  AND (:function_id IS NULL OR function_id = :function_id)
  AND (:tenant IS NULL OR tenant = :tenant)
  AND (:since IS NULL OR created_at >= :since)
  AND (:until IS NULL OR created_at < :until)
  AND (:cursor_at IS NULL OR created_at < :cursor_at OR (created_at = :cursor_at AND id < :cursor_id))
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: list_events
SELECT id, name, data, ts, received_at FROM durably_events
WHERE env = :env
  AND (:name IS NULL OR name = :name)
  AND (:cursor_at IS NULL OR received_at < :cursor_at OR (received_at = :cursor_at AND id < :cursor_id))
ORDER BY received_at DESC, id DESC
LIMIT :limit;

-- name: function_stats
-- Per function: runs finished in the window by status, and the newest run.
SELECT function_id, status, COUNT(*) AS n FROM durably_runs
WHERE env = :env AND created_at >= :since
GROUP BY function_id, status;

-- name: last_run_of
SELECT id, status, created_at, started_at, finished_at FROM durably_runs
WHERE env = :env AND function_id = :function_id
ORDER BY created_at DESC LIMIT 1;

-- name: cron_of
SELECT schedule, last_tick FROM durably_cron WHERE env = :env AND function_id = :function_id;

-- name: backlog
-- Ready-to-run backlog per function: count and oldest age.
SELECT function_id, COUNT(*) AS n, MIN(available_at) AS oldest FROM durably_runs
WHERE env = :env AND status = 'queued' AND available_at <= :now
GROUP BY function_id;

-- name: stale_leases
SELECT COUNT(*) FROM durably_runs INDEXED BY durably_runs_owner WHERE env = :env AND status = 'running' AND lease_expires_at < :now;

-- name: count_by_status
SELECT status, COUNT(*) AS n FROM durably_runs WHERE env = :env GROUP BY status;

-- name: load_steps_full
SELECT step_id, kind, status, seq, attempts, output, error, log, started_at, finished_at, wake_at
FROM durably_steps WHERE run_id = :run_id ORDER BY seq;

-- name: fail_new_run
-- A run whose key expression failed on its event: recorded, failed at once with the message.
UPDATE durably_runs SET status = 'failed', error = :error, terminal_reason = :reason, finished_at = :now
WHERE id = :run_id;

-- name: get_step
SELECT step_id, kind, status, seq, attempts, output, error, started_at, finished_at, wake_at
FROM durably_steps WHERE run_id = :run_id AND step_id = :step_id;

-- name: gcra_get
-- The theoretical arrival time of a throttle / rate-limit key (absent: never used).
SELECT tat FROM durably_gcra WHERE env = :env AND key = :key;

-- name: gcra_set
INSERT INTO durably_gcra (env, key, tat) VALUES (:env, :key, :tat)
ON CONFLICT (env, key) DO UPDATE SET tat = excluded.tat;

-- name: defer_run
-- A throttled run: not before :at (its place in line is kept by sort_at).
UPDATE durably_runs SET available_at = :at WHERE id = :run_id AND status = 'queued';

-- name: key_holder
SELECT run_id, expires_at FROM durably_keys WHERE env = :env AND scope = :scope AND key = :key;

-- name: release_keys_of_run
-- A singleton key is held while its run is live and released when it ends.
DELETE FROM durably_keys WHERE run_id = :run_id AND scope LIKE 'singleton:%';

-- name: debounce_open
-- The queued run still gathering events for a debounce key, if any.
SELECT d.run_id, d.first_at FROM durably_debounce d JOIN durably_runs r ON r.id = d.run_id
WHERE d.env = :env AND d.function_id = :function_id AND d.key = :key
  AND r.status = 'queued' AND r.gathering = 1;

-- name: debounce_put
INSERT INTO durably_debounce (env, function_id, key, run_id, first_at)
VALUES (:env, :function_id, :key, :run_id, :now)
ON CONFLICT (env, function_id, key) DO UPDATE SET run_id = excluded.run_id, first_at = excluded.first_at;

-- name: debounce_take
-- Give the debounced run the newer event and push its start to :at.
UPDATE durably_runs SET event = :event, event_id = :event_id, available_at = :at, sort_at = :at - priority
WHERE id = :run_id AND status = 'queued' AND gathering = 1;

-- name: batch_open
SELECT b.run_id, b.size FROM durably_batches b JOIN durably_runs r ON r.id = b.run_id
WHERE b.env = :env AND b.function_id = :function_id AND b.key = :key
  AND r.status = 'queued' AND r.gathering = 1;

-- name: batch_put
INSERT INTO durably_batches (env, function_id, key, run_id, size)
VALUES (:env, :function_id, :key, :run_id, 1)
ON CONFLICT (env, function_id, key) DO UPDATE SET run_id = excluded.run_id, size = 1;

-- name: batch_append
-- Add an event to an open batch; a full batch becomes claimable now and stops gathering.
UPDATE durably_runs
SET events = json_insert(events, '$[#]', json(:event)),
    available_at = CASE WHEN :full = 1 THEN :now ELSE available_at END,
    sort_at = CASE WHEN :full = 1 THEN MIN(sort_at, :now - priority) ELSE sort_at END,
    gathering = CASE WHEN :full = 1 THEN 0 ELSE 1 END
WHERE id = :run_id AND status = 'queued' AND gathering = 1;

-- name: batch_grow
UPDATE durably_batches SET size = size + 1 WHERE run_id = :run_id;

-- name: close_gathering
-- A debounce/batch run that starts (or is full) takes no more events.
DELETE FROM durably_debounce WHERE run_id = :run_id;

-- name: close_batch
DELETE FROM durably_batches WHERE run_id = :run_id;

-- name: expired_starts
-- Runs never started within Timeouts.start.
SELECT id FROM durably_runs
WHERE env = :env AND status = 'queued' AND start_deadline IS NOT NULL AND start_deadline < :now
  AND started_at IS NULL
LIMIT 500;

-- name: expired_finishes
-- Runs not finished within Timeouts.finish of their first start.
SELECT id FROM durably_runs
WHERE env = :env AND finish_deadline IS NOT NULL AND finish_deadline < :now
  AND status IN ('queued', 'running', 'sleeping', 'waiting')
LIMIT 500;

-- name: fail_run
-- Fail an unfinished run from outside (a finish timeout); the token bump fences out its worker.
UPDATE durably_runs
SET status = 'failed', terminal_reason = :reason, error = :error, finished_at = :now, lease_owner = NULL,
    lease_expires_at = NULL, lease_gen = lease_gen + 1
WHERE id = :run_id AND env = :env AND status NOT IN ('completed', 'failed', 'cancelled')
RETURNING tenant, function_id, parent_run_id, parent_step_id, started_at, attempt, event, singleton_key, trigger,
    notify_end;

-- name: list_skips
SELECT event_id, function_id, reason, created_at FROM durably_skips
WHERE env = :env AND (:function_id IS NULL OR function_id = :function_id)
ORDER BY created_at DESC LIMIT :limit;

-- name: list_slots
SELECT key, run_id FROM durably_slots WHERE env = :env ORDER BY key, run_id;

-- name: insert_dispatch
-- The first ping of a dispatch window (HTTP cron endpoint): rowcount 1. A later ping of the
-- same (key, window_start) conflicts and writes nothing (rowcount 0).
INSERT INTO durably_dispatches (env, key, window_start, event_id, first_seen, pings)
VALUES (:env, :key, :window_start, :event_id, :now, 1)
ON CONFLICT (env, key, window_start) DO NOTHING;

-- name: ping_dispatch
-- A later ping of a dispatch window: count it, return what the first ping recorded.
UPDATE durably_dispatches SET pings = pings + 1
WHERE env = :env AND key = :key AND window_start = :window_start
RETURNING event_id, first_seen, pings;

-- name: last_run_by_trigger
-- The newest run of a function created by one kind of trigger (e.g. its last cron run).
SELECT id, status, created_at, started_at, finished_at FROM durably_runs
WHERE env = :env AND function_id = :function_id AND trigger = :trigger
ORDER BY created_at DESC LIMIT 1;

-- name: replay_candidates
-- Bulk replay: finished runs of a function in a time range, oldest first, skipping runs
-- that were already replayed (so running the same bulk replay twice replays nothing new).
SELECT * FROM durably_runs
WHERE env = :env AND function_id = :function_id AND status = :status
  AND (:since IS NULL OR created_at >= :since)
  AND (:until IS NULL OR created_at < :until)
  AND (:tenant IS NULL OR tenant = :tenant)
  AND id NOT IN (SELECT replay_of FROM durably_runs
                 WHERE env = :env AND function_id = :function_id AND replay_of IS NOT NULL)
ORDER BY created_at, id
LIMIT :limit;

-- name: metrics_runs
-- Metrics: runs in the ledger per function and status; how many have started, and the
-- retries they took (attempt counts failures that were retried).
SELECT function_id, status, COUNT(*) AS n,
       SUM(CASE WHEN started_at IS NOT NULL THEN 1 ELSE 0 END) AS started,
       COALESCE(SUM(attempt), 0) AS retries
FROM durably_runs WHERE env = :env
GROUP BY function_id, status;

-- name: metrics_dead_letters
-- Metrics: failed runs not replayed yet (the failures view), per function.
SELECT function_id, COUNT(*) AS n FROM durably_runs
WHERE env = :env AND status = 'failed'
  AND id NOT IN (SELECT replay_of FROM durably_runs WHERE env = :env AND replay_of IS NOT NULL)
GROUP BY function_id;

-- name: metrics_step_durations
-- Metrics: finished ``step.run`` steps per function and duration bucket (seconds from the
-- step's first attempt to its end). The bucket bounds are reads.STEP_BUCKETS, in order.
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

-- name: metrics_step_retries
-- Metrics: step retries per function. A step's attempts count its tries: a finished step
-- was retried attempts - 1 times; a step waiting to be retried, once per failed attempt.
SELECT r.function_id AS function_id,
       SUM(CASE WHEN s.status = 'retrying' THEN s.attempts ELSE s.attempts - 1 END) AS retries
FROM durably_steps s JOIN durably_runs r ON r.id = s.run_id
WHERE r.env = :env AND (s.attempts > 1 OR s.status = 'retrying')
GROUP BY r.function_id;

-- name: metrics_step_attempts
-- Metrics: finished ``step.run`` steps per function by how many attempts they took.
SELECT r.function_id AS function_id, s.attempts AS attempts, COUNT(*) AS n
FROM durably_steps s JOIN durably_runs r ON r.id = s.run_id
WHERE r.env = :env AND s.kind = 'run' AND s.status IN ('completed', 'failed')
GROUP BY r.function_id, s.attempts;

-- name: cron_open_runs
-- Overlap of cron ticks: the function's cron runs not ended yet, and how many of them are
-- buffered (queued to start when the open one ends: available_at at :buffered or later).
SELECT COUNT(*) AS open, COALESCE(SUM(CASE WHEN available_at >= :buffered THEN 1 ELSE 0 END), 0) AS buffered
FROM durably_runs
WHERE env = :env AND function_id = :function_id AND trigger = 'cron'
  AND status IN ('queued', 'running', 'sleeping', 'waiting');

-- name: release_buffered_cron
-- A cron run ended: the tick buffered behind it (overlap="buffer_one") becomes claimable now.
UPDATE durably_runs SET available_at = :now, sort_at = :now - priority
WHERE env = :env AND function_id = :function_id AND trigger = 'cron' AND status = 'queued'
  AND available_at >= :buffered;

-- name: watch_end
-- app.result waits on this run: the transaction that ends it will announce it.
UPDATE durably_runs SET notify_end = 1 WHERE id = :run_id AND env = :env;

-- name: finished_per_minute
-- Runs finished per minute since :since (bucket 0 = the first minute), by status.
SELECT CAST((finished_at - :since) / 60 AS INTEGER) AS bucket, status, COUNT(*) AS n FROM durably_runs
WHERE env = :env AND finished_at >= :since AND status IN ('completed', 'failed', 'cancelled')
GROUP BY bucket, status;

-- name: leader_release
-- A leader shutting down cleanly gives its row up, so a standby takes over at once.
DELETE FROM durably_leaders WHERE env = :env AND name = :name AND owner = :owner;

-- name: prunable_runs
-- Retention: finished runs that ended before :before (created before it too, which lets
-- the (env, status, created_at) index bound the scan).
SELECT id FROM durably_runs
WHERE env = :env AND status IN ('completed', 'failed', 'cancelled')
  AND created_at < :before AND finished_at < :before
LIMIT :limit;

-- name: prune_steps
DELETE FROM durably_steps WHERE run_id IN (SELECT value FROM json_each(:ids));

-- name: prune_run_waits
DELETE FROM durably_waits WHERE run_id IN (SELECT value FROM json_each(:ids));

-- name: prune_run_slots
DELETE FROM durably_slots WHERE run_id IN (SELECT value FROM json_each(:ids));

-- name: prune_run_debounce
DELETE FROM durably_debounce WHERE run_id IN (SELECT value FROM json_each(:ids));

-- name: prune_run_batches
DELETE FROM durably_batches WHERE run_id IN (SELECT value FROM json_each(:ids));

-- name: prune_runs
DELETE FROM durably_runs WHERE env = :env AND id IN (SELECT value FROM json_each(:ids));

-- name: prune_events
DELETE FROM durably_events WHERE env = :env AND id IN (
    SELECT id FROM durably_events WHERE env = :env AND received_at < :before LIMIT :limit);

-- name: prune_skips
DELETE FROM durably_skips WHERE rowid IN (
    SELECT rowid FROM durably_skips WHERE env = :env AND created_at < :before LIMIT :limit);

-- name: prune_keys
-- Unique keys past their expiry hold nothing (take_key already ignores them).
DELETE FROM durably_keys WHERE env = :env AND (scope, key) IN (
    SELECT scope, key FROM durably_keys WHERE env = :env AND expires_at < :now LIMIT :limit);

-- name: prune_fair_keys
-- A fairness key served long ago is the same as a key never served (both go first in a round).
DELETE FROM durably_fair_keys WHERE env = :env AND served_at < :before;

-- name: prune_gcra
-- A throttle/rate-limit key whose theoretical arrival time is long past is the same as no key.
DELETE FROM durably_gcra WHERE env = :env AND key IN (
    SELECT key FROM durably_gcra WHERE env = :env AND tat < :before LIMIT :limit);

-- name: prune_dispatches
DELETE FROM durably_dispatches WHERE env = :env AND (key, window_start) IN (
    SELECT key, window_start FROM durably_dispatches WHERE env = :env AND first_seen < :before LIMIT :limit);

-- name: prune_workers
DELETE FROM durably_workers WHERE env = :env AND heartbeat_at < :before;

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
  AND (:cursor_at IS NULL OR at < :cursor_at
       OR (at = :cursor_at AND id < :cursor_id))
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
SELECT :run_id, step_id, kind, status, seq, attempts, output, error, log, started_at, finished_at, wake_at
FROM durably_steps
WHERE run_id = :from_run_id AND seq < :before_seq AND status IN ('completed', 'failed');

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
