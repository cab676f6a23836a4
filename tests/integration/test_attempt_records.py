"""Every attempt is recorded with its worker, its time span and its outcome,
by the same statements that claim and finish jobs."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from test_leases import expire_leases, make_ready, result_of, submit

from backcast.errors import LeaseLost
from backcast.jobqueue import JobState
from backcast.jobqueue.jobs import AttemptOutcome
from backcast.jobqueue.store import JobStore

Connection = psycopg.AsyncConnection[tuple[Any, ...]]


async def test_claim_opens_a_running_attempt_for_its_worker(store: JobStore) -> None:
    job_id = await submit(store)

    await store.claim("w1", 1, lease_seconds=30)

    [attempt] = await store.attempts("alice", job_id)
    assert (attempt.number, attempt.worker) == (1, "w1")
    assert attempt.outcome is AttemptOutcome.RUNNING
    assert attempt.finished_at is None


async def test_result_closes_the_attempt_as_succeeded(store: JobStore) -> None:
    job_id = await submit(store)
    [lease] = await store.claim("w1", 1, lease_seconds=30)

    await store.complete(job_id, lease.fencing_token, result_of(0.1))

    [attempt] = await store.attempts("alice", job_id)
    assert attempt.outcome is AttemptOutcome.SUCCEEDED
    assert attempt.finished_at is not None
    assert attempt.finished_at >= attempt.started_at


async def test_each_retry_is_a_new_attempt_and_the_failure_stays_on_the_old_one(
    store: JobStore, db_connection: Connection
) -> None:
    job_id = await submit(store, max_attempts=2)
    [first] = await store.claim("w1", 1, lease_seconds=30)
    await store.fail(
        job_id,
        first.fencing_token,
        "disk hiccup",
        retryable=True,
        retry_delay_seconds=0,
    )
    await make_ready(db_connection, [job_id])
    [second] = await store.claim("w2", 1, lease_seconds=30)
    await store.fail(
        job_id, second.fencing_token, "again", retryable=True, retry_delay_seconds=0
    )

    attempts = await store.attempts("alice", job_id)
    assert [(a.number, a.worker, a.outcome) for a in attempts] == [
        (1, "w1", AttemptOutcome.FAILED),
        (2, "w2", AttemptOutcome.FAILED),
    ]
    assert [a.error_message for a in attempts] == ["disk hiccup", "again"]
    assert (await store.get("alice", job_id)).state is JobState.FAILED


async def test_expired_lease_closes_its_attempt_as_expired_and_refuses_its_report(
    store: JobStore, db_connection: Connection
) -> None:
    job_id = await submit(store)
    [stale] = await store.claim("w1", 1, lease_seconds=30)
    await expire_leases(db_connection, [job_id])
    await store.reap_expired(retry_delay_seconds=0)
    [fresh] = await store.claim("w2", 1, lease_seconds=30)

    with pytest.raises(LeaseLost):
        await store.complete(job_id, stale.fencing_token, result_of(0.1))
    await store.complete(job_id, fresh.fencing_token, result_of(0.2))

    attempts = await store.attempts("alice", job_id)
    assert [(a.worker, a.outcome) for a in attempts] == [
        ("w1", AttemptOutcome.EXPIRED),
        ("w2", AttemptOutcome.SUCCEEDED),
    ]
    assert "lease expired" in (attempts[0].error_message or "")


async def test_result_arriving_after_cancel_closes_the_attempt_as_cancelled(
    store: JobStore,
) -> None:
    job_id = await submit(store)
    [lease] = await store.claim("w1", 1, lease_seconds=30)
    await store.cancel("alice", job_id)

    state = await store.complete(job_id, lease.fencing_token, result_of(0.1))

    assert state is JobState.CANCELLED
    [attempt] = await store.attempts("alice", job_id)
    assert attempt.outcome is AttemptOutcome.CANCELLED
    assert attempt.error_message == "cancelled; its result was discarded"


async def test_acknowledged_cancel_closes_the_attempt_as_cancelled(
    store: JobStore,
) -> None:
    job_id = await submit(store)
    [lease] = await store.claim("w1", 1, lease_seconds=30)
    await store.cancel("alice", job_id)

    await store.acknowledge_cancel(job_id, lease.fencing_token)

    [attempt] = await store.attempts("alice", job_id)
    assert attempt.outcome is AttemptOutcome.CANCELLED


async def test_attempts_of_another_owners_job_are_not_shown(store: JobStore) -> None:
    job_id = await submit(store)
    await store.claim("w1", 1, lease_seconds=30)

    assert await store.attempts("mallory", job_id) == []
