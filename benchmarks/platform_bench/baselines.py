"""Raw SQL on the same database: what PostgreSQL alone does for the same work,
measured beside each platform figure.

Each baseline uses the real `jobs` table with its indexes and triggers, from
plain psycopg connections, one thread per connection (the threads wait on
the server, so the GIL is not what limits them).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from psycopg.types.json import Jsonb

from backcast.engine.spec import BacktestSpec
from platform_bench.harness import MAX_ATTEMPTS, connect

# The claim of a textbook queue: the oldest ready jobs, locked past any
# another connection holds (PostgreSQL docs, "The Locking Clause").
_CLAIM = """
UPDATE jobs SET state = 'running', attempt = attempt + 1,
       fencing_token = fencing_token + 1, lease_holder = %(worker)s,
       lease_expires_at = now() + interval '30 seconds', started_at = now()
WHERE id IN (
    SELECT id FROM jobs
    WHERE owner = %(owner)s AND state = 'queued'
    ORDER BY priority DESC, id
    LIMIT %(n)s
    FOR UPDATE SKIP LOCKED
)
RETURNING id
"""

_COMPLETE = """
UPDATE jobs SET state = 'succeeded', progress = 1, lease_holder = NULL,
       lease_expires_at = NULL, finished_at = now()
WHERE id = ANY(%(ids)s::bigint[]) AND state = 'running'
"""

_INSERT = """
INSERT INTO jobs (owner, request_id, spec, priority, max_attempts)
VALUES (%(owner)s, %(request_id)s, %(spec)s, 0, %(max_attempts)s)
"""

_INSERT_MANY = """
INSERT INTO jobs (owner, request_id, spec, priority, max_attempts)
SELECT %(owner)s, r, %(spec)s, 0, %(max_attempts)s
FROM unnest(%(request_ids)s::text[]) AS r
"""


def skip_locked_drain(url: str, owner: str, *, n_connections: int, batch: int) -> float:
    """Jobs per second claimed in batches and each batch completed in one
    statement, as the platform claims and completes short jobs, until
    `owner` has none queued."""

    def drain(index: int) -> int:
        n_done = 0
        with connect(url) as conn:
            params = {"owner": owner, "n": batch, "worker": f"raw-{index}"}
            while True:
                ids = [r[0] for r in conn.execute(_CLAIM, params, prepare=True)]
                if not ids:
                    return n_done
                conn.execute(_COMPLETE, {"ids": ids}, prepare=True)
                n_done += len(ids)

    n_done, seconds = _in_threads(drain, n_connections)
    return n_done / seconds


def insert_loop(
    url: str, spec: BacktestSpec, *, n: int, n_connections: int, owner: str
) -> float:
    """Rows per second from one INSERT per transaction on each connection."""
    per_connection = n // n_connections
    body = Jsonb(spec.to_dict())

    def insert(index: int) -> int:
        with connect(url) as conn:
            for i in range(per_connection):
                params = {
                    "owner": owner,
                    "request_id": f"raw-{index}-{i}",
                    "spec": body,
                    "max_attempts": MAX_ATTEMPTS,
                }
                conn.execute(_INSERT, params, prepare=True)
        return per_connection

    n_done, seconds = _in_threads(insert, n_connections)
    return n_done / seconds


def batch_insert_loop(
    url: str, spec: BacktestSpec, *, n: int, batch: int, owner: str
) -> float:
    """Rows per second from INSERT ... SELECT FROM unnest, `batch` per statement."""
    body = Jsonb(spec.to_dict())
    started = time.perf_counter()
    with connect(url) as conn:
        for first in range(0, n, batch):
            ids = [f"raw-batch-{i}" for i in range(first, min(n, first + batch))]
            params = {
                "owner": owner,
                "request_ids": ids,
                "spec": body,
                "max_attempts": MAX_ATTEMPTS,
            }
            conn.execute(_INSERT_MANY, params, prepare=True)
    return n / (time.perf_counter() - started)


def notify_round_trips(url: str, n: int) -> list[float]:
    """Seconds from NOTIFY on one connection to its arrival on another."""
    samples = []
    with connect(url) as listener, connect(url) as sender:
        listener.execute("LISTEN backcast_bench_ping")
        for _ in range(n):
            started = time.perf_counter()
            sender.execute("NOTIFY backcast_bench_ping")
            for _ in listener.notifies(timeout=5.0, stop_after=1):
                pass
            samples.append(time.perf_counter() - started)
    return samples


def claim_latencies(url: str, owner: str, n: int) -> list[float]:
    """Seconds per single-job claim by the textbook statement, without the
    wait for the WAL flush (synchronous_commit off)."""
    samples = []
    with connect(url) as conn:
        conn.execute("SET synchronous_commit = off")
        params = {"owner": owner, "n": 1, "worker": "raw"}
        for _ in range(n):
            started = time.perf_counter()
            conn.execute(_CLAIM, params, prepare=True).fetchall()
            samples.append(time.perf_counter() - started)
    return samples


def _in_threads(work: Callable[[int], int], n_threads: int) -> tuple[int, float]:
    results = [0] * n_threads

    def run(index: int) -> None:
        results[index] = work(index)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n_threads)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(results), time.perf_counter() - started
