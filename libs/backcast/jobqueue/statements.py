"""Every SQL statement of the job store, named by the operation it performs.

Values travel only as bind parameters. The state changes send their
notifications through the `jobs_notify` triggers (see migrations 0001 and
0008), so no statement here calls pg_notify itself.
"""

from __future__ import annotations

# Columns of a Job, read from `jobs AS j` joined to `results AS r`.
JOB_COLUMNS = """
    j.id, j.owner, j.spec, j.priority, j.state, j.attempt, j.max_attempts,
    j.progress, j.request_id, j.error_reason, j.error_message, j.lease_holder,
    j.lease_expires_at, j.fencing_token, j.created_at, j.started_at,
    j.finished_at, j.updated_at, r.metrics AS summary
"""

# The same columns returned by a write; only a succeeded job has a summary,
# and no write here returns one.
JOB_RETURNING = """
    j.id, j.owner, j.spec, j.priority, j.state, j.attempt, j.max_attempts,
    j.progress, j.request_id, j.error_reason, j.error_message, j.lease_holder,
    j.lease_expires_at, j.fencing_token, j.created_at, j.started_at,
    j.finished_at, j.updated_at, NULL::jsonb AS summary
"""

# As JOB_RETURNING, without the spec: a batch insert knows the specs it
# sent, and decoding them back would cost more than the insert.
JOB_RETURNING_NO_SPEC = """
    j.id, j.owner, NULL::jsonb AS spec, j.priority, j.state, j.attempt,
    j.max_attempts, j.progress, j.request_id, j.error_reason, j.error_message,
    j.lease_holder, j.lease_expires_at, j.fencing_token, j.created_at,
    j.started_at, j.finished_at, j.updated_at, NULL::jsonb AS summary
"""

# --- gateway side -----------------------------------------------------------

# DO NOTHING makes a second insert with the same (owner, request_id) wait for
# the first to commit and then return no row, so exactly one job exists
# however many submits race (PostgreSQL docs, "INSERT ... ON CONFLICT").
SUBMIT_JOB = f"""
INSERT INTO jobs AS j (owner, request_id, spec, priority, max_attempts)
VALUES (%(owner)s, %(request_id)s, %(spec)s, %(priority)s, %(max_attempts)s)
ON CONFLICT (owner, request_id) DO NOTHING
RETURNING {JOB_RETURNING}
"""

# A batch in one statement. Rows go in in request order (ORDER BY position),
# so ids grow in that order too, which is how the store tells apart the jobs
# of requests without a request id.
SUBMIT_JOBS = f"""
INSERT INTO jobs AS j (owner, request_id, spec, priority, max_attempts)
SELECT %(owner)s, t.request_id, s.spec, t.priority, t.max_attempts
FROM jsonb_array_elements(%(specs)s::jsonb) WITH ORDINALITY AS s(spec, position)
JOIN unnest(%(request_ids)s::text[], %(priorities)s::int[], %(max_attempts)s::int[])
     WITH ORDINALITY AS t(request_id, priority, max_attempts, position)
     USING (position)
ORDER BY position
ON CONFLICT (owner, request_id) DO NOTHING
RETURNING {JOB_RETURNING_NO_SPEC}
"""

# The jobs earlier submits made for some of a batch's request ids, and
# whether each asked for the same thing.
GET_JOBS_BY_REQUEST_IDS = f"""
SELECT {JOB_COLUMNS},
       j.spec = s.spec AND j.priority = t.priority
           AND j.max_attempts = t.max_attempts AS same_request
FROM jsonb_array_elements(%(specs)s::jsonb) WITH ORDINALITY AS s(spec, position)
JOIN unnest(%(request_ids)s::text[], %(priorities)s::int[], %(max_attempts)s::int[])
     WITH ORDINALITY AS t(request_id, priority, max_attempts, position)
     USING (position)
JOIN jobs AS j ON j.owner = %(owner)s AND j.request_id = t.request_id
LEFT JOIN results AS r ON r.job_id = j.id
"""

# The job an earlier submit with this request id created, and whether it
# asked for the same thing. jsonb equality ignores key order and spacing.
GET_JOB_BY_REQUEST_ID = f"""
SELECT {JOB_COLUMNS},
       j.spec = %(spec)s AND j.priority = %(priority)s
           AND j.max_attempts = %(max_attempts)s AS same_request
FROM jobs AS j
LEFT JOIN results AS r ON r.job_id = j.id
WHERE j.owner = %(owner)s AND j.request_id = %(request_id)s
"""

GET_JOB = f"""
SELECT {JOB_COLUMNS}
FROM jobs AS j
LEFT JOIN results AS r ON r.job_id = j.id
WHERE j.id = %(job_id)s AND j.owner = %(owner)s
"""

# One page of trades: a slice of the fixed-size trade records, which are
# stored uncompressed (STORAGE EXTERNAL) so that PostgreSQL reads only the
# chunks that hold the slice.
GET_JOB_WITH_RESULT_PAGE = f"""
SELECT {JOB_COLUMNS}, r.equity_points,
       octet_length(r.trade_records) / %(record_bytes)s::int AS total_trades,
       substring(r.trade_records
                 FROM %(first_trade)s::int * %(record_bytes)s::int + 1
                 FOR %(max_trades)s::int * %(record_bytes)s::int) AS trade_records
FROM jobs AS j
LEFT JOIN results AS r ON r.job_id = j.id
WHERE j.id = %(job_id)s AND j.owner = %(owner)s
"""

# What rebuilding the full equity curve needs, without the trades.
GET_JOB_WITH_ACCOUNT_FILLS = f"""
SELECT {JOB_COLUMNS}, r.account_fills, r.data_version
FROM jobs AS j
LEFT JOIN results AS r ON r.job_id = j.id
WHERE j.id = %(job_id)s AND j.owner = %(owner)s
"""

# At most max_attempts rows, read through the primary key.
LIST_ATTEMPTS = """
SELECT a.attempt, a.worker, a.outcome, a.error_message, a.started_at,
       a.finished_at
FROM attempts AS a
JOIN jobs AS j ON j.id = a.job_id
WHERE a.job_id = %(job_id)s AND j.owner = %(owner)s
ORDER BY a.attempt
"""

# Keyset pagination on the (owner, id DESC) index: newest first, each page
# starting below the last id of the one before.
LIST_JOBS = f"""
SELECT {JOB_COLUMNS}
FROM jobs AS j
LEFT JOIN results AS r ON r.job_id = j.id
WHERE j.owner = %(owner)s
  AND j.id < %(before_id)s
  AND j.state = ANY(%(states)s::text[])
ORDER BY j.id DESC
LIMIT %(limit)s
"""

# Queued jobs stop at once; running ones wait for their worker to stop the
# attempt. Other states are left alone and reported by the caller.
CANCEL_JOB = f"""
UPDATE jobs AS j SET
    state = CASE j.state WHEN 'queued' THEN 'cancelled' ELSE 'cancelling' END,
    error_reason = CASE j.state WHEN 'queued' THEN 'CANCELLED' END,
    error_message = CASE j.state WHEN 'queued' THEN 'cancelled by request' END,
    finished_at = CASE j.state WHEN 'queued' THEN now() END,
    updated_at = now()
WHERE j.id = %(job_id)s AND j.owner = %(owner)s
  AND j.state IN ('queued', 'running')
RETURNING {JOB_RETURNING}
"""

# --- scheduler side ---------------------------------------------------------

# Fair share: higher priority first; within a priority, the owner with the
# fewest jobs running goes first, and among those the one whose last turn is
# oldest, so owners take slots in turn however long one owner's backlog is.
# `turn` numbers an owner's candidates after its running jobs: an owner with
# two running offers its next job as turn 3.
#
# LIMITATION: shares count running jobs, not their cost, so an owner of long
# backtests holds more slot-seconds than one of short ones; priorities are
# strict. Weighing by expected candles (from the spec) would fix the first.
#
# The owners with queued work are found by a loose index scan (one probe of
# jobs_queued_owner_idx per owner), and each offers at most `per_owner`
# candidates, so the cost follows the number of owners waiting, not the
# number of jobs. Candidates are read without locks, then locked with SKIP
# LOCKED in turn order: rows another scheduler is taking are passed over,
# and offering twice the request leaves room for them.
#
# `picked` and `claimed` reach jobs through `id = ANY(ARRAY(...))`: one
# primary key probe per id. The planner guesses a hundred owners for the
# recursive `waiting`, so on a table of a few thousand rows a plain join
# hashed a scan of all of jobs, and a young database claimed slower than
# one with 100,000 finished jobs.
#
# `run_after <= (SELECT now())` hides the time from the planner, which then
# assumes a third of an owner's queued jobs are ready. Estimated from the
# column's statistics instead, a burst of jobs whose backoff or hold ended
# since the last ANALYZE reads as none ready: the planner then sorted a
# scan of the whole table on every claim (34 ms with 20,000 queued, against
# 1 ms through jobs_queued_owner_idx).
CLAIM_JOBS = """
WITH RECURSIVE waiting(owner) AS (
    (SELECT owner FROM jobs WHERE state = 'queued' ORDER BY owner LIMIT 1)
    UNION ALL
    SELECT (
        SELECT j.owner FROM jobs AS j
        WHERE j.state = 'queued' AND j.owner > w.owner
        ORDER BY j.owner
        LIMIT 1
    )
    FROM waiting AS w
    WHERE w.owner IS NOT NULL
),
candidates AS (
    SELECT c.id, c.priority,
           r.n_running + row_number() OVER (
               PARTITION BY w.owner ORDER BY c.priority DESC, c.id
           ) AS turn,
           coalesce(t.last_claimed_at, '-infinity') AS last_claimed_at
    FROM waiting AS w
    CROSS JOIN LATERAL (
        SELECT id, priority FROM jobs
        WHERE owner = w.owner AND state = 'queued' AND run_after <= (SELECT now())
        ORDER BY priority DESC, id
        LIMIT %(per_owner)s
    ) AS c
    CROSS JOIN LATERAL (
        SELECT count(*) AS n_running FROM jobs
        WHERE owner = w.owner AND state IN ('running', 'cancelling')
    ) AS r
    LEFT JOIN owner_turns AS t ON t.owner = w.owner
    WHERE w.owner IS NOT NULL
),
picked AS (
    SELECT j.id
    FROM candidates AS c
    JOIN jobs AS j ON j.id = c.id
    WHERE j.state = 'queued' AND j.id = ANY(ARRAY(SELECT id FROM candidates))
    ORDER BY c.priority DESC, c.turn, c.last_claimed_at, c.id
    LIMIT %(n)s
    FOR UPDATE OF j SKIP LOCKED
),
claimed AS (
    UPDATE jobs AS j SET
        state = 'running',
        attempt = j.attempt + 1,
        fencing_token = j.fencing_token + 1,
        lease_holder = %(worker)s,
        lease_expires_at = now() + make_interval(secs => %(lease_seconds)s::float8),
        started_at = coalesce(j.started_at, now()),
        progress = 0,
        updated_at = now()
    WHERE j.id = ANY(ARRAY(SELECT id FROM picked))
    RETURNING j.id, j.fencing_token, j.attempt, j.priority, j.spec, j.owner
),
opened AS (
    INSERT INTO attempts (job_id, attempt, worker)
    SELECT id, attempt, %(worker)s FROM claimed
),
turned AS (
    INSERT INTO owner_turns (owner, last_claimed_at)
    SELECT DISTINCT owner, now() FROM claimed
    ON CONFLICT (owner) DO UPDATE SET last_claimed_at = excluded.last_claimed_at
)
SELECT id, fencing_token, attempt, priority, spec FROM claimed
"""

# One statement for a worker's whole heartbeat. A lease is still held when
# its token is current and the job is leased to the same worker; rows that
# fail the test simply do not come back.
RENEW_LEASES = """
UPDATE jobs AS j SET
    lease_expires_at = now() + make_interval(secs => %(lease_seconds)s::float8),
    progress = least(greatest(held.progress, 0), 1),
    updated_at = now()
FROM unnest(%(job_ids)s::bigint[], %(fencing_tokens)s::bigint[],
            %(progress)s::float8[]) AS held(job_id, fencing_token, progress)
WHERE j.id = held.job_id
  AND j.fencing_token = held.fencing_token
  AND j.lease_holder = %(worker)s
  AND j.state IN ('running', 'cancelling')
RETURNING j.id, j.fencing_token, j.state
"""

# Cancel wins over a late result: a cancelling job ends CANCELLED and its
# result is never stored.
COMPLETE_JOB = """
WITH finished AS (
    UPDATE jobs AS j SET
        state = CASE j.state WHEN 'cancelling' THEN 'cancelled' ELSE 'succeeded' END,
        progress = CASE j.state WHEN 'cancelling' THEN j.progress ELSE 1 END,
        error_reason = CASE j.state WHEN 'cancelling' THEN 'CANCELLED' END,
        error_message = CASE j.state
            WHEN 'cancelling' THEN 'cancelled by request' END,
        lease_holder = NULL,
        lease_expires_at = NULL,
        finished_at = now(),
        updated_at = now()
    WHERE j.id = %(job_id)s
      AND j.fencing_token = %(fencing_token)s
      AND j.state IN ('running', 'cancelling')
    RETURNING j.id, j.state, j.attempt
),
stored AS (
    INSERT INTO results (
        job_id, metrics, trade_records, equity_points, account_fills,
        data_version
    )
    SELECT id, %(metrics)s, %(trade_records)s, %(equity_points)s,
           %(account_fills)s, %(data_version)s
    FROM finished
    WHERE state = 'succeeded'
),
ended AS (
    UPDATE attempts AS a SET
        outcome = CASE f.state WHEN 'succeeded' THEN 'succeeded' ELSE 'cancelled' END,
        error_message = CASE f.state
            WHEN 'cancelled' THEN 'cancelled; its result was discarded' END,
        finished_at = now()
    FROM finished AS f
    WHERE a.job_id = f.id AND a.attempt = f.attempt
)
SELECT state FROM finished
"""

# COMPLETE_JOB for many reports at once: one statement and one commit for
# a worker's whole batch. `reported` pairs each report's columns by
# position; the metrics travel as one JSON array (see SUBMIT_JOBS), the bytea
# arrays in binary (`%b`): as text, every byte of a year's trades went out
# as two hex digits, 11 ms a result between the scheduler and PostgreSQL.
# Job ids must differ within a batch. Reports whose fenced write matched
# nothing are missing from the answer, and the caller tells repeats from
# lost leases.
COMPLETE_JOBS = """
WITH reported AS (
    SELECT t.job_id, t.fencing_token, t.trade_records, t.equity_points,
           t.account_fills, t.data_version, m.metrics
    FROM unnest(%(job_ids)s::bigint[], %(fencing_tokens)s::bigint[],
                %(trade_records)b::bytea[], %(equity_points)b::bytea[],
                %(account_fills)b::bytea[], %(data_versions)s::text[])
         WITH ORDINALITY AS t(job_id, fencing_token, trade_records,
                              equity_points, account_fills, data_version,
                              position)
    JOIN jsonb_array_elements(%(metrics)s::jsonb)
         WITH ORDINALITY AS m(metrics, position) USING (position)
),
finished AS (
    UPDATE jobs AS j SET
        state = CASE j.state WHEN 'cancelling' THEN 'cancelled' ELSE 'succeeded' END,
        progress = CASE j.state WHEN 'cancelling' THEN j.progress ELSE 1 END,
        error_reason = CASE j.state WHEN 'cancelling' THEN 'CANCELLED' END,
        error_message = CASE j.state
            WHEN 'cancelling' THEN 'cancelled by request' END,
        lease_holder = NULL,
        lease_expires_at = NULL,
        finished_at = now(),
        updated_at = now()
    FROM reported AS r
    WHERE j.id = r.job_id
      AND j.fencing_token = r.fencing_token
      AND j.state IN ('running', 'cancelling')
    RETURNING j.id, j.state, j.attempt
),
stored AS (
    INSERT INTO results (
        job_id, metrics, trade_records, equity_points, account_fills,
        data_version
    )
    SELECT f.id, r.metrics, r.trade_records, r.equity_points, r.account_fills,
           r.data_version
    FROM finished AS f
    JOIN reported AS r ON r.job_id = f.id
    WHERE f.state = 'succeeded'
),
ended AS (
    UPDATE attempts AS a SET
        outcome = CASE f.state WHEN 'succeeded' THEN 'succeeded' ELSE 'cancelled' END,
        error_message = CASE f.state
            WHEN 'cancelled' THEN 'cancelled; its result was discarded' END,
        finished_at = now()
    FROM finished AS f
    WHERE a.job_id = f.id AND a.attempt = f.attempt
)
SELECT id, state FROM finished
"""

# The next state is decided once, on the locked row, and then drives every
# column that depends on it.
FAIL_JOB = """
WITH decided AS (
    SELECT id,
           CASE
               WHEN state = 'cancelling' THEN 'cancelled'
               WHEN %(retryable)s AND attempt < max_attempts THEN 'queued'
               ELSE 'failed'
           END AS next_state
    FROM jobs
    WHERE id = %(job_id)s
      AND fencing_token = %(fencing_token)s
      AND state IN ('running', 'cancelling')
    FOR UPDATE
),
failed AS (
    UPDATE jobs AS j SET
        state = d.next_state,
        run_after = CASE d.next_state
            WHEN 'queued'
                THEN now() + make_interval(secs => %(retry_delay_seconds)s::float8)
            ELSE j.run_after END,
        progress = CASE d.next_state WHEN 'queued' THEN 0 ELSE j.progress END,
        error_reason = CASE d.next_state
            WHEN 'failed' THEN 'BACKTEST_ERROR'
            WHEN 'cancelled' THEN 'CANCELLED' END,
        error_message = CASE d.next_state
            WHEN 'failed' THEN %(message)s
            WHEN 'cancelled' THEN 'cancelled by request' END,
        finished_at = CASE d.next_state WHEN 'queued' THEN NULL ELSE now() END,
        lease_holder = NULL,
        lease_expires_at = NULL,
        updated_at = now()
    FROM decided AS d
    WHERE j.id = d.id
    RETURNING j.id, j.state, j.attempt
),
ended AS (
    UPDATE attempts AS a SET
        outcome = CASE f.state WHEN 'cancelled' THEN 'cancelled' ELSE 'failed' END,
        error_message = %(message)s,
        finished_at = now()
    FROM failed AS f
    WHERE a.job_id = f.id AND a.attempt = f.attempt
)
SELECT state FROM failed
"""

ACKNOWLEDGE_CANCEL = """
WITH cancelled AS (
    UPDATE jobs SET
        state = 'cancelled',
        error_reason = 'CANCELLED',
        error_message = 'cancelled by request',
        lease_holder = NULL,
        lease_expires_at = NULL,
        finished_at = now(),
        updated_at = now()
    WHERE id = %(job_id)s
      AND fencing_token = %(fencing_token)s
      AND state = 'cancelling'
    RETURNING id, state, attempt
),
ended AS (
    UPDATE attempts AS a SET outcome = 'cancelled', finished_at = now()
    FROM cancelled AS c
    WHERE a.job_id = c.id AND a.attempt = c.attempt
)
SELECT state FROM cancelled
"""

# Read after a fenced write matched nothing, to tell a repeated call (the job
# ended under this very token) from a stale one.
GET_FENCE = """
SELECT state, fencing_token FROM jobs WHERE id = %(job_id)s
"""

# The attempt was already counted at claim time, so a job whose worker died
# on its last attempt fails here instead of running again.
REAP_EXPIRED_LEASES = """
WITH expired AS (
    SELECT id,
           CASE
               WHEN state = 'cancelling' THEN 'cancelled'
               WHEN attempt >= max_attempts THEN 'failed'
               ELSE 'queued'
           END AS next_state
    FROM jobs
    WHERE state IN ('running', 'cancelling') AND lease_expires_at < now()
    ORDER BY lease_expires_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
),
reaped AS (
    UPDATE jobs AS j SET
        state = e.next_state,
        run_after = CASE e.next_state
            WHEN 'queued'
                THEN now() + make_interval(secs => %(retry_delay_seconds)s::float8)
            ELSE j.run_after END,
        progress = CASE e.next_state WHEN 'queued' THEN 0 ELSE j.progress END,
        error_reason = CASE e.next_state
            WHEN 'failed' THEN 'WORKER_LOST'
            WHEN 'cancelled' THEN 'CANCELLED' END,
        error_message = CASE e.next_state
            WHEN 'failed' THEN 'worker lost the lease on attempt ' || j.attempt
                || ' of ' || j.max_attempts
            WHEN 'cancelled' THEN 'cancelled by request' END,
        finished_at = CASE e.next_state WHEN 'queued' THEN NULL ELSE now() END,
        lease_holder = NULL,
        lease_expires_at = NULL,
        updated_at = now()
    FROM expired AS e
    WHERE j.id = e.id
    RETURNING j.id, j.fencing_token, j.state, j.attempt
),
ended AS (
    UPDATE attempts AS a SET
        outcome = CASE r.state WHEN 'cancelled' THEN 'cancelled' ELSE 'expired' END,
        error_message = CASE r.state
            WHEN 'cancelled' THEN 'cancelled while its worker was unreachable'
            ELSE 'the lease expired: the worker stopped renewing it' END,
        finished_at = now()
    FROM reaped AS r
    WHERE a.job_id = r.id AND a.attempt = r.attempt
)
SELECT id, fencing_token, state, attempt FROM reaped
"""

CANCELLING_JOBS = """
SELECT id FROM jobs
WHERE id = ANY(%(job_ids)s::bigint[]) AND state = 'cancelling'
ORDER BY id
"""

# The oldest finished jobs first, through jobs_finished_idx; results and
# attempts go with them (ON DELETE CASCADE). SKIP LOCKED lets replicas prune
# side by side.
PRUNE_FINISHED_JOBS = """
WITH doomed AS (
    SELECT id FROM jobs
    WHERE state IN ('succeeded', 'failed', 'cancelled')
      AND finished_at < now() - make_interval(secs => %(retention_seconds)s::float8)
    ORDER BY finished_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM jobs AS j USING doomed AS d WHERE j.id = d.id
"""
