"""Helpers of the worker tests: specs, job polling and scheduler settings."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from backcast.compute.config import WorkerConfig
from backcast.engine.spec import BacktestSpec, Interval, StrategySpec
from backcast.jobqueue.jobs import Job, JobState
from backcast.jobqueue.store import JobStore
from backcast.scheduler.config import SchedulerConfig

OWNER = "alice"


def scheduler_config(
    database_url: str, address: str = "127.0.0.1:0"
) -> SchedulerConfig:
    return SchedulerConfig(
        database_url=database_url,
        address=address,
        lease_seconds=2.0,
        heartbeat_seconds=0.3,
        poll_seconds=0.3,
        scheduler_id="s1",
    )


def worker_config(scheduler_port: int, worker_id: str = "w1") -> WorkerConfig:
    return WorkerConfig(
        scheduler_address=f"127.0.0.1:{scheduler_port}",
        n_slots=1,
        worker_id=worker_id,
        address="127.0.0.1:0",
    )


# The largest backtest a spec may ask for: a few seconds of engine time.
LONG_BACKTEST_CANDLES = 5_000_000


def crossover_spec(
    n_candles: int,
    instrument: str = "SYN-X",
    *,
    fast_period: int = 200,
    slow_period: int = 1000,
) -> dict[str, Any]:
    """Moving-average crossover over `n_candles` one-minute candles.

    Long averages keep the trade list, and so the result, small.
    """
    start = datetime(2015, 1, 1, tzinfo=UTC)
    params: dict[str, int | float | str] = {
        "fast_period": fast_period,
        "slow_period": slow_period,
        "kind": "simple",
    }
    spec = BacktestSpec(
        strategy=StrategySpec("moving_average_crossover", params),
        instrument=instrument,
        interval=Interval.ONE_MINUTE,
        start_at=start,
        end_at=start + timedelta(minutes=n_candles),
    )
    return spec.to_dict()


async def submit(store: JobStore, spec: dict[str, Any], max_attempts: int = 3) -> int:
    job = await store.submit(
        OWNER, spec, priority=0, max_attempts=max_attempts, request_id=None
    )
    return job.id


async def wait_for_job(
    store: JobStore,
    job_id: int,
    accept: Callable[[Job], bool],
    *,
    timeout_seconds: float = 30.0,
) -> Job:
    deadline = asyncio.get_running_loop().time() + timeout_seconds
    while True:
        job = await store.get(OWNER, job_id)
        if accept(job):
            return job
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"job {job_id} stuck in {job.state} ({job})")
        await asyncio.sleep(0.05)


async def wait_for_state(
    store: JobStore, job_id: int, state: JobState, *, timeout_seconds: float = 30.0
) -> Job:
    return await wait_for_job(
        store, job_id, lambda job: job.state is state, timeout_seconds=timeout_seconds
    )


async def wait_until(
    condition: Callable[[], bool], timeout_seconds: float = 10.0
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_seconds
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)
