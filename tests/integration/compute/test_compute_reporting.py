"""Reports of attempts: retried until a scheduler takes them, dropped when the
lease is gone."""

from __future__ import annotations

import asyncio
import socket

import grpc
from compute_support import OWNER, crossover_spec, scheduler_config, submit

from backcast.compute.reporting import AttemptRef, Delivery, Reporter
from backcast.compute.slots import Failed
from backcast.jobqueue.jobs import JobState
from backcast.jobqueue.store import JobStore
from backcast.scheduler.server import Scheduler
from backcast.v1 import scheduler_service_pb2_grpc


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_report_waits_for_a_scheduler_to_come_back(
    store: JobStore, database_url: str
) -> None:
    job_id = await submit(store, crossover_spec(1_000))
    [lease] = await store.claim("w1", 1, lease_seconds=30)
    port = unused_port()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    reporter = Reporter(
        scheduler_service_pb2_grpc.SchedulerServiceStub(channel),
        "w1",
        timeout_seconds=1.0,
    )
    ref = AttemptRef(job_id, lease.fencing_token, lease.attempt)
    scheduler: Scheduler | None = None
    try:
        report = asyncio.create_task(reporter.report(ref, Failed("broken", False)))
        await asyncio.sleep(0.5)
        assert not report.done()

        config = scheduler_config(database_url, f"127.0.0.1:{port}")
        scheduler = await Scheduler.start(config, store)
        delivery = await asyncio.wait_for(report, 15)
    finally:
        await channel.close()
        if scheduler is not None:
            await scheduler.stop(grace_seconds=0.2, drain_seconds=0.0)

    assert delivery is Delivery.ACCEPTED
    job = await store.get(OWNER, job_id)
    assert job.state is JobState.FAILED


async def test_report_of_a_lost_lease_is_dropped(
    store: JobStore, database_url: str
) -> None:
    job_id = await submit(store, crossover_spec(1_000))
    [lease] = await store.claim("w1", 1, lease_seconds=30)
    scheduler = await Scheduler.start(scheduler_config(database_url), store)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{scheduler.port}")
    reporter = Reporter(scheduler_service_pb2_grpc.SchedulerServiceStub(channel), "w1")
    stale = AttemptRef(job_id, lease.fencing_token + 1, lease.attempt)
    try:
        delivery = await reporter.report(stale, Failed("broken", False))
    finally:
        await channel.close()
        await scheduler.stop(grace_seconds=0.2, drain_seconds=0.0)

    assert delivery is Delivery.LEASE_LOST
    job = await store.get(OWNER, job_id)
    assert job.state is JobState.RUNNING
