"""Fixtures of the scheduler tests: an in-process scheduler and fake workers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest
from scheduler_support import FakeWorker, WorkerFactory, scheduler_config

from backcast.jobqueue.store import JobStore
from backcast.scheduler.server import Scheduler
from backcast.v1 import scheduler_service_pb2 as pb


@pytest.fixture
async def scheduler(store: JobStore, database_url: str) -> AsyncIterator[Scheduler]:
    running = await Scheduler.start(scheduler_config(database_url), store)
    await running.listener.connected.wait()
    try:
        yield running
    finally:
        await running.stop(grace_seconds=0.5, drain_seconds=0.0)


@pytest.fixture
async def connect_worker(scheduler: Scheduler) -> AsyncIterator[WorkerFactory]:
    """Connects fake workers to the scheduler; closes them after the test."""
    workers: list[FakeWorker] = []

    async def connect(
        worker_id: str = "w1",
        n_slots: int = 4,
        held: Sequence[pb.HeldLease] = (),
        n_prefetch: int = 0,
        *,
        takes_batches: bool = False,
    ) -> FakeWorker:
        worker = FakeWorker(
            scheduler.port, worker_id, n_slots, n_prefetch, takes_batches=takes_batches
        )
        await worker.connect(held)
        workers.append(worker)
        return worker

    yield connect
    for worker in workers:
        await worker.close()
