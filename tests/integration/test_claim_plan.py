"""The claim's plan on a small, young jobs table: every read of jobs goes
through an index, as it does once the table is large."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb
from test_leases import SPEC

from backcast.jobqueue import statements
from backcast.jobqueue.store import JobStore

Connection = psycopg.AsyncConnection[tuple[Any, ...]]

OWNERS = ("alice", "bob", "carol")
N_QUEUED = 1_000
N_FINISHED = 2_000
N_RUNNING = 6

# Three owners' jobs, dealt out in turn; running ones hold a live lease.
_INSERT_JOBS = """
INSERT INTO jobs (owner, spec, max_attempts, state, attempt, fencing_token,
                  lease_holder, lease_expires_at, started_at, finished_at)
SELECT (%(owners)s::text[])[1 + g %% cardinality(%(owners)s::text[])],
       %(spec)s, 3, %(state)s::text,
       CASE %(state)s::text WHEN 'queued' THEN 0 ELSE 1 END,
       CASE %(state)s::text WHEN 'queued' THEN 0 ELSE 1 END,
       CASE %(state)s::text WHEN 'running' THEN 'w0' END,
       CASE %(state)s::text WHEN 'running' THEN now() + interval '30 seconds' END,
       CASE %(state)s::text WHEN 'queued' THEN NULL ELSE now() END,
       CASE %(state)s::text WHEN 'succeeded' THEN now() END
FROM generate_series(1, %(n)s) AS g
"""


async def insert_jobs(conn: Connection, state: str, n: int) -> None:
    params = {"owners": list(OWNERS), "spec": Jsonb(SPEC), "state": state, "n": n}
    await conn.execute(_INSERT_JOBS, params)


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)


async def claim_plan(conn: Connection, n: int) -> list[dict[str, Any]]:
    """The nodes of the claim's plan for `n` jobs, parameters as the store
    binds them. EXPLAIN without ANALYZE plans the UPDATE but does not run it."""
    params = {"worker": "w1", "n": n, "per_owner": 2 * n, "lease_seconds": 30.0}
    cursor = await conn.execute(
        "EXPLAIN (FORMAT JSON) " + statements.CLAIM_JOBS, params, prepare=False
    )
    row = await cursor.fetchone()
    assert row is not None
    return list(plan_nodes(row[0][0]["Plan"]))


def assert_jobs_read_through_indexes(nodes: list[dict[str, Any]]) -> None:
    scans = [node["Node Type"] for node in nodes if node.get("Relation Name") == "jobs"]
    assert "Seq Scan" not in scans
    indexes = {node["Index Name"] for node in nodes if "Index Name" in node}
    assert {"jobs_queued_owner_idx", "jobs_leased_owner_idx", "jobs_pkey"} <= indexes


@pytest.mark.parametrize("n", [1, 16])
async def test_claim_reads_jobs_only_through_indexes_on_a_small_table(
    store: JobStore, db_connection: Connection, n: int
) -> None:
    await insert_jobs(db_connection, "queued", N_QUEUED)
    await insert_jobs(db_connection, "succeeded", N_FINISHED)
    await insert_jobs(db_connection, "running", N_RUNNING)
    await db_connection.execute("ANALYZE jobs")

    assert_jobs_read_through_indexes(await claim_plan(db_connection, n))


async def test_claim_reads_through_indexes_when_statistics_say_no_job_is_ready(
    store: JobStore, db_connection: Connection
) -> None:
    # Analysed while every job waited (a hold, or a backoff), then all made
    # ready at once: the statistics still say none is.
    await insert_jobs(db_connection, "queued", 20 * N_QUEUED)
    await db_connection.execute("UPDATE jobs SET run_after = 'infinity'")
    await db_connection.execute("ANALYZE jobs")
    await db_connection.execute("UPDATE jobs SET run_after = now()")

    assert_jobs_read_through_indexes(await claim_plan(db_connection, 2))
