"""Every SQL statement of the job store, named by the operation it performs.

Values travel only as bind parameters. The state changes send their
notifications through the `jobs_notify` trigger (see the first migration),
so no statement here calls pg_notify itself.
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

GET_JOB_WITH_RESULT = f"""
SELECT {JOB_COLUMNS}, r.trades, r.equity_curve
FROM jobs AS j
LEFT JOIN results AS r ON r.job_id = j.id
WHERE j.id = %(job_id)s AND j.owner = %(owner)s
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

# LIMITATION: jobs are taken by priority, then age, with no fair share
# between owners, so one owner's large batch delays others' jobs of the same
# priority until it drains. Acceptable while batches are small; it costs
# latency, never correctness. Resolve: pick owners round-robin (a LATERAL
# claim per owner with queued work) inside each priority.
#
# SKIP LOCKED lets several schedulers claim at once, each passing over the
# rows another is taking (PostgreSQL docs, "The Locking Clause"). The inner
# query walks jobs_queued_idx in its order and stops after n rows.
CLAIM_JOBS = """
WITH picked AS (
    SELECT id
    FROM jobs
    WHERE state = 'queued' AND run_after <= now()
    ORDER BY priority DESC, id
    LIMIT %(n)s
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs AS j SET
    state = 'running',
    attempt = j.attempt + 1,
    fencing_token = j.fencing_token + 1,
    lease_holder = %(worker)s,
    lease_expires_at = now() + make_interval(secs => %(lease_seconds)s::float8),
    started_at = coalesce(j.started_at, now()),
    progress = 0,
    updated_at = now()
FROM picked
WHERE j.id = picked.id
RETURNING j.id, j.fencing_token, j.attempt, j.priority, j.spec
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
    RETURNING j.id, j.state
),
stored AS (
    INSERT INTO results (job_id, metrics, trades, equity_curve)
    SELECT id, %(metrics)s, %(trades)s, %(equity_curve)s
    FROM finished
    WHERE state = 'succeeded'
)
SELECT state FROM finished
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
)
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
RETURNING j.state
"""

ACKNOWLEDGE_CANCEL = """
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
RETURNING state
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
)
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
"""

CANCELLING_JOBS = """
SELECT id FROM jobs
WHERE id = ANY(%(job_ids)s::bigint[]) AND state = 'cancelling'
ORDER BY id
"""
