"""Leases through the scheduler: renewal, fenced reports, cancels."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import psycopg
import pytest
from scheduler_support import (
    HEARTBEAT_SECONDS,
    OWNER,
    WorkerFactory,
    empty_result,
    held_of,
    submit,
    wait_for_job,
    wait_for_state,
)

from backcast.jobqueue.jobs import JobState
from backcast.jobqueue.store import JobStore
from backcast.v1 import scheduler_service_pb2 as pb

Connection = psycopg.AsyncConnection[tuple[Any, ...]]


async def test_heartbeat_renews_leases_and_records_progress(
    store: JobStore, connect_worker: WorkerFactory
) -> None:
    [job_id] = await submit(store)
    worker = await connect_worker()
    await worker.heartbeat(n_free_slots=1)
    assignments = await worker.assignments(1)
    before = await store.get(OWNER, job_id)
    assert before.lease_expires_at is not None

    await asyncio.sleep(0.3)
    await worker.heartbeat(n_free_slots=0, held=held_of(assignments, progress=0.5))

    after = await wait_for_job(store, job_id, lambda job: job.progress == 0.5)
    assert after.lease_expires_at is not None
    assert after.lease_expires_at > before.lease_expires_at
    assert after.state is JobState.RUNNING


async def test_reconnecting_worker_keeps_its_leases(
    store: JobStore, connect_worker: WorkerFactory
) -> None:
    [job_id] = await submit(store)
    worker = await connect_worker("w1", n_slots=1)
    await worker.heartbeat(n_free_slots=1)
    assignments = await worker.assignments(1)
    before = await store.get(OWNER, job_id)
    await worker.close()

    await asyncio.sleep(0.3)
    await connect_worker("w1", n_slots=1, held=held_of(assignments))

    after = await wait_for_job(
        store,
        job_id,
        lambda job: (
            job.lease_expires_at is not None
            and before.lease_expires_at is not None
            and job.lease_expires_at > before.lease_expires_at
        ),
    )
    assert after.fencing_token == before.fencing_token


async def test_complete_with_a_stale_token_is_aborted_and_a_repeat_succeeds(
    store: JobStore, connect_worker: WorkerFactory
) -> None:
    [job_id] = await submit(store)
    worker = await connect_worker()
    await worker.heartbeat(n_free_slots=1)
    [assignment] = await worker.assignments(1)
    token = assignment.fencing_token

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await worker.complete(job_id, token + 1, empty_result())
    assert caught.value.code() == grpc.StatusCode.ABORTED

    await worker.complete(job_id, token, empty_result())
    await worker.complete(job_id, token, empty_result())

    job, result = await store.get_result(
        OWNER, job_id, first_trade=0, max_trades=10_000
    )
    assert job.state is JobState.SUCCEEDED
    assert result.metrics["n_candles"] == 240


async def test_retryable_failure_requeues_the_job(
    store: JobStore, connect_worker: WorkerFactory
) -> None:
    [job_id] = await submit(store)
    worker = await connect_worker()
    await worker.heartbeat(n_free_slots=1)
    [assignment] = await worker.assignments(1)

    failure = pb.AttemptFailure(message="slot process died", retryable=True)
    await worker.complete(
        job_id, assignment.fencing_token, pb.CompleteAttemptRequest(failure=failure)
    )

    job = await store.get(OWNER, job_id)
    assert job.state is JobState.QUEUED
    assert job.attempt == 1


async def test_non_retryable_failure_fails_the_job(
    store: JobStore, connect_worker: WorkerFactory
) -> None:
    [job_id] = await submit(store)
    worker = await connect_worker()
    await worker.heartbeat(n_free_slots=1)
    [assignment] = await worker.assignments(1)

    failure = pb.AttemptFailure(message="no market data", retryable=False)
    await worker.complete(
        job_id, assignment.fencing_token, pb.CompleteAttemptRequest(failure=failure)
    )

    job = await store.get(OWNER, job_id)
    assert job.state is JobState.FAILED
    assert job.error_message == "no market data"


async def test_cancel_of_a_running_job_reaches_its_worker(
    store: JobStore, connect_worker: WorkerFactory
) -> None:
    [job_id] = await submit(store)
    worker = await connect_worker()
    await worker.heartbeat(n_free_slots=1)
    [assignment] = await worker.assignments(1)

    await store.cancel(OWNER, job_id)
    message = await worker.receive(timeout_seconds=2.0)

    assert message.WhichOneof("message") == "cancel"
    assert message.cancel.job_id == job_id
    assert message.cancel.fencing_token == assignment.fencing_token
    assert message.cancel.reason == "CANCELLED"

    await worker.complete(
        job_id,
        assignment.fencing_token,
        pb.CompleteAttemptRequest(cancelled=pb.AttemptCancelled()),
    )
    job = await wait_for_state(store, job_id, JobState.CANCELLED)
    assert job.error_reason == "CANCELLED"


async def test_heartbeat_finds_a_cancel_the_notification_missed(
    store: JobStore, connect_worker: WorkerFactory, db_connection: Connection
) -> None:
    [job_id] = await submit(store)
    worker = await connect_worker()
    await worker.heartbeat(n_free_slots=1)
    [assignment] = await worker.assignments(1)

    # Mark the job cancelling without the notification a cancel sends.
    await db_connection.execute(
        "UPDATE jobs SET state = 'cancelling' WHERE id = %s", [job_id]
    )
    await worker.heartbeat(n_free_slots=0, held=held_of([assignment]))

    message = await worker.receive(timeout_seconds=2.0)
    assert message.WhichOneof("message") == "cancel"
    assert message.cancel.job_id == job_id
    assert message.cancel.reason == "CANCELLED"


async def test_worker_whose_lease_expired_is_told_it_is_lost(
    store: JobStore, connect_worker: WorkerFactory, db_connection: Connection
) -> None:
    [job_id] = await submit(store)
    worker = await connect_worker(n_slots=1)
    await worker.heartbeat(n_free_slots=1)
    [assignment] = await worker.assignments(1)

    # As if heartbeats had stopped for a whole lease: the reaper takes it back.
    await db_connection.execute(
        "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = %s",
        [job_id],
    )
    await wait_for_state(store, job_id, JobState.QUEUED)
    await worker.heartbeat(n_free_slots=0, held=held_of([assignment]))

    message = await worker.receive(timeout_seconds=2.0)
    assert message.WhichOneof("message") == "cancel"
    assert message.cancel.job_id == job_id
    assert message.cancel.fencing_token == assignment.fencing_token
    assert message.cancel.reason == "LEASE_LOST"


async def test_heartbeat_crossing_the_report_of_a_new_assignment_cancels_nothing(
    store: JobStore, connect_worker: WorkerFactory
) -> None:
    [job_id] = await submit(store)
    worker = await connect_worker()
    await worker.heartbeat(n_free_slots=1)
    [assignment] = await worker.assignments(1)

    # The worker reports before any heartbeat listed the assignment; a
    # heartbeat it sent just before the report arrives after it.
    await worker.complete(job_id, assignment.fencing_token, empty_result())
    await worker.heartbeat(n_free_slots=0, held=held_of([assignment]))

    await worker.assert_quiet(3 * HEARTBEAT_SECONDS)
    assert (await store.get(OWNER, job_id)).state is JobState.SUCCEEDED
