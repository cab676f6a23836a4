"""Assignment over the Connect stream: capacity, drain and reassignment."""

from __future__ import annotations

import grpc
import pytest
from scheduler_support import (
    HEARTBEAT_SECONDS,
    LEASE_SECONDS,
    OWNER,
    WorkerFactory,
    held_of,
    submit,
    wait_for_state,
)

from backcast.jobqueue.jobs import JobState
from backcast.jobqueue.store import JobStore
from backcast.scheduler.server import Scheduler
from backcast.v1 import scheduler_service_pb2 as pb
from backcast.v1 import scheduler_service_pb2_grpc


async def test_welcome_tells_heartbeat_and_lease_timing(
    connect_worker: WorkerFactory,
) -> None:
    worker = await connect_worker()

    assert worker.welcome is not None
    assert worker.welcome.heartbeat_seconds == HEARTBEAT_SECONDS
    assert worker.welcome.lease_seconds == LEASE_SECONDS
    assert worker.welcome.scheduler_id == "s1"


async def test_first_message_must_be_a_hello(scheduler: Scheduler) -> None:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{scheduler.port}")
    try:
        call = scheduler_service_pb2_grpc.SchedulerServiceStub(channel).Connect()
        await call.write(pb.ConnectRequest(heartbeat=pb.WorkerHeartbeat()))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call.read()
    finally:
        await channel.close()

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_assignments_never_exceed_reported_free_slots(
    store: JobStore, connect_worker: WorkerFactory
) -> None:
    job_ids = await submit(store, 5)
    worker = await connect_worker(n_slots=4)

    await worker.heartbeat(n_free_slots=2)
    first = await worker.assignments(2)
    await worker.assert_quiet(3 * HEARTBEAT_SECONDS)

    # A heartbeat sent before the assignments arrived still says 2 free: the
    # scheduler must count the 2 in flight against it.
    await worker.heartbeat(n_free_slots=2)
    await worker.assert_quiet(3 * HEARTBEAT_SECONDS)

    await worker.heartbeat(n_free_slots=2, held=held_of(first))
    second = await worker.assignments(2)
    await worker.heartbeat(n_free_slots=0, held=held_of(first + second))
    await worker.assert_quiet(3 * HEARTBEAT_SECONDS)

    assigned = [a.job_id for a in first + second]
    assert len(set(assigned)) == 4
    assert assigned == job_ids[:4]  # oldest first at equal priority
    left = await store.get(OWNER, job_ids[4])
    assert left.state is JobState.QUEUED


async def test_assignment_carries_the_lease_and_spec(
    store: JobStore, connect_worker: WorkerFactory
) -> None:
    [job_id] = await submit(store)
    worker = await connect_worker()

    await worker.heartbeat(n_free_slots=1)
    [assignment] = await worker.assignments(1)

    job = await store.get(OWNER, job_id)
    assert job.state is JobState.RUNNING
    assert job.lease_holder == "w1"
    assert assignment.job_id == job_id
    assert assignment.fencing_token == job.fencing_token
    assert assignment.attempt == 1
    assert assignment.spec.instrument == "SYN-X"
    assert assignment.spec.strategy.WhichOneof("kind") == "buy_and_hold"


async def test_no_work_is_assigned_before_the_first_heartbeat(
    store: JobStore, connect_worker: WorkerFactory
) -> None:
    await submit(store)
    worker = await connect_worker()

    await worker.assert_quiet(3 * HEARTBEAT_SECONDS)


async def test_draining_worker_gets_no_assignments(
    store: JobStore, connect_worker: WorkerFactory
) -> None:
    draining = await connect_worker("w-draining")
    await draining.heartbeat(n_free_slots=2, draining=True)

    [job_id] = await submit(store)
    await draining.assert_quiet(3 * HEARTBEAT_SECONDS)
    assert (await store.get(OWNER, job_id)).state is JobState.QUEUED

    other = await connect_worker("w-other")
    await other.heartbeat(n_free_slots=1)
    [assignment] = await other.assignments(1)
    assert assignment.job_id == job_id


async def test_worker_that_stops_heartbeating_has_its_job_reassigned(
    store: JobStore, connect_worker: WorkerFactory
) -> None:
    [job_id] = await submit(store)
    silent = await connect_worker("w-silent", n_slots=1)
    await silent.heartbeat(n_free_slots=1)
    [lost] = await silent.assignments(1)

    survivor = await connect_worker("w-survivor", n_slots=1)
    assigned: list[pb.Assignment] = []
    survivor.keep_heartbeating(lambda: (1 - len(assigned), held_of(assigned)))

    # Lease expiry, one reaper pass, the retry delay and a poll.
    assigned += await survivor.assignments(1, timeout_seconds=4 * LEASE_SECONDS)
    [again] = assigned
    assert again.job_id == job_id
    assert again.fencing_token == lost.fencing_token + 1
    assert again.attempt == 2

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await silent.complete(
            job_id,
            lost.fencing_token,
            pb.CompleteAttemptRequest(cancelled=pb.AttemptCancelled()),
        )
    assert caught.value.code() == grpc.StatusCode.ABORTED
    job = await wait_for_state(store, job_id, JobState.RUNNING)
    assert job.lease_holder == "w-survivor"


async def test_reconnect_with_the_same_worker_id_replaces_the_session(
    store: JobStore, scheduler: Scheduler, connect_worker: WorkerFactory
) -> None:
    [job_id] = await submit(store)
    first = await connect_worker("w1", n_slots=1)
    await first.heartbeat(n_free_slots=1)
    [assignment] = await first.assignments(1)

    second = await connect_worker("w1", n_slots=1)
    await second.heartbeat(n_free_slots=0, held=held_of([assignment]))

    assert [s.worker_id for s in scheduler.registry.sessions()] == ["w1"]
    await second.assert_quiet(3 * HEARTBEAT_SECONDS)
    job = await store.get(OWNER, job_id)
    assert job.state is JobState.RUNNING
    assert job.fencing_token == assignment.fencing_token


async def test_prefetch_announced_in_the_hello_raises_the_worker_capacity(
    store: JobStore, connect_worker: WorkerFactory
) -> None:
    await submit(store, 6)
    worker = await connect_worker(n_slots=1, n_prefetch=3)

    # A worker claiming more than its slots and prefetch gets only those.
    await worker.heartbeat(n_free_slots=10)
    assignments = await worker.assignments(4)
    await worker.heartbeat(n_free_slots=0, held=held_of(assignments))
    await worker.assert_quiet(3 * HEARTBEAT_SECONDS)

    assert len({a.job_id for a in assignments}) == 4


async def test_hello_with_negative_prefetch_is_invalid(scheduler: Scheduler) -> None:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{scheduler.port}")
    try:
        call = scheduler_service_pb2_grpc.SchedulerServiceStub(channel).Connect()
        hello = pb.WorkerHello(worker_id="w1", n_slots=1, n_prefetch=-1)
        await call.write(pb.ConnectRequest(hello=hello))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call.read()
    finally:
        await channel.close()

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "n_prefetch" in (caught.value.details() or "")


async def test_one_claims_assignments_reach_a_batch_taking_worker_in_one_message(
    store: JobStore, connect_worker: WorkerFactory
) -> None:
    job_ids = await submit(store, 3)
    worker = await connect_worker(n_slots=3, takes_batches=True)

    await worker.heartbeat(n_free_slots=3)
    message = await worker.receive()

    assert message.WhichOneof("message") == "assignments"
    batch = list(message.assignments.assignments)
    assert [a.job_id for a in batch] == job_ids
    assert all(a.spec.instrument == "SYN-X" for a in batch)
    await worker.heartbeat(n_free_slots=0, held=held_of(batch))
    await worker.assert_quiet(3 * HEARTBEAT_SECONDS)
