"""Leases on a real PostgreSQL: claiming, renewing, fencing and expiry."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg
import pytest

from backcast.engine.results import EquityCurve
from backcast.errors import LeaseLost
from backcast.jobqueue import HeldLease, JobState, Lease, statements
from backcast.jobqueue.jobs import StoredResult
from backcast.jobqueue.store import JobStore

Connection = psycopg.AsyncConnection[tuple[Any, ...]]

SPEC: dict[str, Any] = {"instrument": "SYN-ETH", "strategy": {"name": "buy_and_hold"}}
ONE_POINT = EquityCurve(np.array([1_704_067_200]), np.array([10_000.0])).to_bytes()


def result_of(total_return: float) -> StoredResult:
    return StoredResult(
        metrics={"total_return": total_return},
        trade_records=b"",
        equity_points=ONE_POINT,
    )


async def submit(store: JobStore, *, priority: int = 0, max_attempts: int = 3) -> int:
    job = await store.submit(
        "alice", SPEC, priority=priority, max_attempts=max_attempts, request_id=None
    )
    return job.id


async def expire_leases(conn: Connection, job_ids: Sequence[int]) -> None:
    """Move the leases' expiry into the past instead of sleeping through it."""
    await conn.execute(
        "UPDATE jobs SET lease_expires_at = now() - interval '1 second' "
        "WHERE id = ANY(%s)",
        [list(job_ids)],
    )


async def make_ready(conn: Connection, job_ids: Sequence[int]) -> None:
    """Skip the retry delay of requeued jobs."""
    await conn.execute(
        "UPDATE jobs SET run_after = now() WHERE id = ANY(%s)", [list(job_ids)]
    )


# --- claim ------------------------------------------------------------------


async def test_two_schedulers_claiming_at_once_never_share_a_job(
    database_url: str, store: JobStore
) -> None:
    job_ids = {await submit(store) for _ in range(200)}
    other = await JobStore.open(database_url, min_size=4, max_size=4)

    async def claim_until_empty(scheduler: JobStore, worker: str) -> list[Lease]:
        leases: list[Lease] = []
        while batch := await scheduler.claim(worker, 7, lease_seconds=30):
            leases.extend(batch)
        return leases

    try:
        batches = await asyncio.gather(
            *(
                claim_until_empty(scheduler, f"w{i}")
                for i, scheduler in enumerate([store, other] * 4)
            )
        )
    finally:
        await other.close()

    claimed = [lease.job_id for batch in batches for lease in batch]
    assert len(claimed) == len(set(claimed)) == 200
    assert set(claimed) == job_ids
    assert sum(1 for batch in batches if batch) > 1


async def test_claim_takes_higher_priority_first_then_older_jobs(
    store: JobStore,
) -> None:
    low = await submit(store, priority=-5)
    normal_old = await submit(store, priority=0)
    high = await submit(store, priority=10)
    normal_new = await submit(store, priority=0)

    first = await store.claim("w1", 3, lease_seconds=30)
    rest = await store.claim("w1", 3, lease_seconds=30)

    assert [lease.job_id for lease in first] == [high, normal_old, normal_new]
    assert [lease.job_id for lease in rest] == [low]


async def test_claim_starts_an_attempt_with_a_new_fencing_token(
    store: JobStore,
) -> None:
    job_id = await submit(store)

    [lease] = await store.claim("w1", 5, lease_seconds=30)

    assert (lease.job_id, lease.attempt, lease.fencing_token) == (job_id, 1, 1)
    assert (lease.worker, lease.spec) == ("w1", SPEC)
    job = await store.get("alice", job_id)
    assert job.state is JobState.RUNNING
    assert job.lease_holder == "w1"
    assert job.lease_expires_at is not None and job.started_at is not None
    assert job.lease_expires_at > job.started_at


async def test_claim_of_nothing_or_an_empty_queue_returns_no_leases(
    store: JobStore,
) -> None:
    assert await store.claim("w1", 5, lease_seconds=30) == []
    await submit(store)
    assert await store.claim("w1", 0, lease_seconds=30) == []


async def test_claim_reads_queued_jobs_through_the_per_owner_index(
    store: JobStore, db_connection: Connection
) -> None:
    await submit(store)
    # With a tiny table the planner would rightly scan it; forbidding that
    # shows the partial indexes can serve every step of the claim.
    await db_connection.execute("SET enable_seqscan = off")
    query = statements.CLAIM_JOBS
    params = {"worker": "w1", "n": 5, "per_owner": 10, "lease_seconds": 30}
    cursor = await db_connection.execute(f"EXPLAIN {query}", params)
    plan = "\n".join(row[0] for row in await cursor.fetchall())

    assert "jobs_queued_owner_idx" in plan
    assert "jobs_leased_owner_idx" in plan
    assert "Seq Scan on jobs" not in plan


# --- renew ------------------------------------------------------------------


async def test_renew_extends_current_leases_and_records_progress(
    store: JobStore,
) -> None:
    job_id = await submit(store)
    [lease] = await store.claim("w1", 1, lease_seconds=5)
    before = await store.get("alice", job_id)

    renewed = await store.renew(
        "w1", [HeldLease(job_id, lease.fencing_token, 0.4)], lease_seconds=60
    )

    after = await store.get("alice", job_id)
    assert renewed[0].job_id == job_id
    assert renewed[0].state is JobState.RUNNING
    assert after.progress == pytest.approx(0.4)
    assert before.lease_expires_at is not None and after.lease_expires_at is not None
    assert after.lease_expires_at > before.lease_expires_at


async def test_renew_reports_cancelling_for_a_cancelled_job(store: JobStore) -> None:
    job_id = await submit(store)
    [lease] = await store.claim("w1", 1, lease_seconds=30)
    await store.cancel("alice", job_id)

    [renewed] = await store.renew(
        "w1", [HeldLease(job_id, lease.fencing_token)], lease_seconds=30
    )

    assert renewed.state is JobState.CANCELLING


async def test_renew_leaves_out_leases_of_another_worker_or_token(
    store: JobStore,
) -> None:
    mine, theirs = await submit(store), await submit(store)
    [lease] = await store.claim("w1", 1, lease_seconds=30)
    [their_lease] = await store.claim("w2", 1, lease_seconds=30)
    assert (lease.job_id, their_lease.job_id) == (mine, theirs)

    renewed = await store.renew(
        "w1",
        [
            HeldLease(mine, lease.fencing_token + 1),
            HeldLease(theirs, their_lease.fencing_token),
            HeldLease(424242, 1),
        ],
        lease_seconds=30,
    )

    assert renewed == []


async def test_renew_clamps_progress_into_zero_to_one(store: JobStore) -> None:
    job_id = await submit(store)
    [lease] = await store.claim("w1", 1, lease_seconds=30)

    await store.renew(
        "w1", [HeldLease(job_id, lease.fencing_token, 1.7)], lease_seconds=30
    )

    assert (await store.get("alice", job_id)).progress == 1.0


# --- expiry -----------------------------------------------------------------


async def test_expired_lease_returns_the_job_to_the_queue_with_the_attempt_counted(
    store: JobStore, db_connection: Connection
) -> None:
    job_id = await submit(store)
    [lease] = await store.claim("w1", 1, lease_seconds=30)
    await expire_leases(db_connection, [job_id])

    [reaped] = await store.reap_expired(retry_delay_seconds=0)
    [again] = await store.claim("w2", 1, lease_seconds=30)

    assert (reaped.job_id, reaped.state, reaped.attempt) == (
        job_id,
        JobState.QUEUED,
        1,
    )
    assert reaped.fencing_token == lease.fencing_token
    assert (again.attempt, again.fencing_token) == (2, lease.fencing_token + 1)


async def test_reaped_job_waits_for_its_retry_delay(
    store: JobStore, db_connection: Connection
) -> None:
    job_id = await submit(store)
    await store.claim("w1", 1, lease_seconds=30)
    await expire_leases(db_connection, [job_id])

    await store.reap_expired(retry_delay_seconds=60)

    assert await store.claim("w2", 1, lease_seconds=30) == []
    await make_ready(db_connection, [job_id])
    assert len(await store.claim("w2", 1, lease_seconds=30)) == 1


async def test_lease_expiring_by_time_is_reaped(store: JobStore) -> None:
    await submit(store)
    await store.claim("w1", 1, lease_seconds=0.05)
    await asyncio.sleep(0.1)

    reaped = await store.reap_expired(retry_delay_seconds=0)

    assert [job.state for job in reaped] == [JobState.QUEUED]


async def test_live_lease_is_not_reaped(store: JobStore) -> None:
    await submit(store)
    await store.claim("w1", 1, lease_seconds=30)

    assert await store.reap_expired() == []


async def test_job_out_of_attempts_fails_with_worker_lost_when_its_lease_expires(
    store: JobStore, db_connection: Connection
) -> None:
    job_id = await submit(store, max_attempts=2)
    for attempt in (1, 2):
        [lease] = await store.claim("w1", 1, lease_seconds=30)
        assert lease.attempt == attempt
        await expire_leases(db_connection, [job_id])
        [reaped] = await store.reap_expired(retry_delay_seconds=0)

    job = await store.get("alice", job_id)
    assert reaped.state is job.state is JobState.FAILED
    assert job.error_reason == "WORKER_LOST"
    assert job.finished_at is not None and job.lease_holder is None
    assert await store.claim("w1", 1, lease_seconds=30) == []


async def test_expired_lease_of_a_cancelling_job_ends_cancelled(
    store: JobStore, db_connection: Connection
) -> None:
    job_id = await submit(store)
    await store.claim("w1", 1, lease_seconds=30)
    await store.cancel("alice", job_id)
    await expire_leases(db_connection, [job_id])

    [reaped] = await store.reap_expired()

    assert reaped.state is JobState.CANCELLED
    assert (await store.get("alice", job_id)).error_reason == "CANCELLED"


async def test_two_reapers_at_once_take_back_each_expired_lease_once(
    database_url: str, store: JobStore, db_connection: Connection
) -> None:
    job_ids = [await submit(store) for _ in range(60)]
    await store.claim("w1", 60, lease_seconds=30)
    await expire_leases(db_connection, job_ids)
    other = await JobStore.open(database_url, min_size=2, max_size=2)

    try:
        batches = await asyncio.gather(
            *(reaper.reap_expired(limit=7) for reaper in [store, other] * 6)
        )
        while rest := await store.reap_expired(limit=7):
            batches.append(rest)
    finally:
        await other.close()

    reaped = [job.job_id for batch in batches for job in batch]
    assert sorted(reaped) == job_ids


# --- fencing ----------------------------------------------------------------


async def test_stale_fencing_token_cannot_finish_or_renew_and_the_new_result_is_kept(
    store: JobStore, db_connection: Connection
) -> None:
    job_id = await submit(store)
    [stale] = await store.claim("w1", 1, lease_seconds=30)
    await expire_leases(db_connection, [job_id])
    await store.reap_expired(retry_delay_seconds=0)
    [current] = await store.claim("w2", 1, lease_seconds=30)

    with pytest.raises(LeaseLost):
        await store.complete(job_id, stale.fencing_token, result_of(-1.0))
    with pytest.raises(LeaseLost):
        await store.fail(
            job_id, stale.fencing_token, "late", retryable=True, retry_delay_seconds=0
        )
    with pytest.raises(LeaseLost):
        await store.acknowledge_cancel(job_id, stale.fencing_token)
    stale_renewal = await store.renew(
        "w1", [HeldLease(job_id, stale.fencing_token)], lease_seconds=30
    )
    assert stale_renewal == []

    assert await store.complete(job_id, current.fencing_token, result_of(2.0)) is (
        JobState.SUCCEEDED
    )
    with pytest.raises(LeaseLost):
        await store.complete(job_id, stale.fencing_token, result_of(-1.0))
    _, result = await store.get_result("alice", job_id, first_trade=0, max_trades=10)
    assert result.metrics == result_of(2.0).metrics


async def test_complete_racing_with_the_reaper_keeps_exactly_one_outcome(
    store: JobStore, db_connection: Connection
) -> None:
    job_ids = [await submit(store, max_attempts=1) for _ in range(20)]
    leases = await store.claim("w1", 20, lease_seconds=30)
    await expire_leases(db_connection, job_ids)

    async def complete_quietly(lease: Lease) -> JobState | None:
        try:
            return await store.complete(
                lease.job_id, lease.fencing_token, result_of(1.0)
            )
        except LeaseLost:
            return None

    outcomes = await asyncio.gather(
        store.reap_expired(retry_delay_seconds=0),
        *(complete_quietly(lease) for lease in leases),
    )

    jobs = await store.list_jobs("alice", states=[], limit=50, before_id=None)
    by_id = {job.id: job for job in jobs}
    for lease, outcome in zip(leases, outcomes[1:], strict=True):
        job = by_id[lease.job_id]
        assert job.state in (JobState.SUCCEEDED, JobState.FAILED)
        assert outcome is job.state
        assert (job.summary is not None) == (job.state is JobState.SUCCEEDED)
