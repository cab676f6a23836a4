"""Fixtures of the worker tests: an in-process scheduler and a real worker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from compute_support import scheduler_config, worker_config

from backcast.compute.worker import Worker
from backcast.jobqueue.store import JobStore
from backcast.scheduler.server import Scheduler


@pytest.fixture
async def scheduler(store: JobStore, database_url: str) -> AsyncIterator[Scheduler]:
    running = await Scheduler.start(scheduler_config(database_url), store)
    await running.listener.connected.wait()
    try:
        yield running
    finally:
        await running.stop(grace_seconds=0.5, drain_seconds=0.0)


@pytest.fixture
async def worker(scheduler: Scheduler) -> AsyncIterator[Worker]:
    """A one-slot worker running the real engine, connected to `scheduler`."""
    running = Worker(worker_config(scheduler.port))
    await running.start()
    await running.connection.connected.wait()
    try:
        yield running
    finally:
        await running.stop()
