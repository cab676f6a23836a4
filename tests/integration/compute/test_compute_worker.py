"""The real worker against an in-process scheduler and a real engine."""

from __future__ import annotations

import asyncio
import dataclasses

from compute_support import (
    LONG_BACKTEST_CANDLES,
    OWNER,
    crossover_spec,
    submit,
    wait_for_job,
    wait_for_state,
    wait_until,
    worker_config,
)

from backcast.compute.faults import parse_faults
from backcast.compute.worker import Worker
from backcast.engine.results import EquityCurve
from backcast.jobqueue.jobs import JobState
from backcast.jobqueue.store import JobStore
from backcast.scheduler.server import Scheduler


async def test_worker_runs_a_backtest_to_success(
    store: JobStore, worker: Worker
) -> None:
    job_id = await submit(store, crossover_spec(20_000, fast_period=10, slow_period=30))

    await wait_for_state(store, job_id, JobState.SUCCEEDED)

    job, result = await store.get_result(
        OWNER, job_id, first_trade=0, max_trades=10_000
    )
    assert job.attempt == 1
    assert result.metrics["n_candles"] == 20_000
    assert result.metrics["n_trades"] == result.total_trades
    assert len(EquityCurve.from_bytes(result.equity_points)) > 1


async def test_cancel_stops_a_running_backtest(store: JobStore, worker: Worker) -> None:
    job_id = await submit(store, crossover_spec(LONG_BACKTEST_CANDLES))
    [slot] = worker.slots.slots
    await wait_until(lambda: slot.busy)
    pid_before = slot.pid

    await store.cancel(OWNER, job_id)
    job = await wait_for_state(store, job_id, JobState.CANCELLED, timeout_seconds=2.0)

    assert job.error_reason == "CANCELLED"
    # The slot's process was killed and replaced, not left to finish.
    assert slot.pid != pid_before
    assert not slot.busy


async def test_unknown_instrument_fails_without_retry(
    store: JobStore, worker: Worker
) -> None:
    job_id = await submit(store, crossover_spec(1_000, instrument="BTCUSD"))

    job = await wait_for_state(store, job_id, JobState.FAILED)

    assert job.attempt == 1
    assert job.error_message is not None
    assert "BTCUSD" in job.error_message


async def test_spec_the_worker_rejects_fails_without_retry(
    store: JobStore, worker: Worker
) -> None:
    spec = crossover_spec(1_000)
    spec["strategy"]["params"] = {
        "fast_period": 50,
        "slow_period": 20,
        "kind": "simple",
    }
    job_id = await submit(store, spec)

    job = await wait_for_state(store, job_id, JobState.FAILED)

    assert job.attempt == 1
    assert job.error_message is not None
    assert "slow_period" in job.error_message


async def test_progress_is_reported_while_running(
    store: JobStore, scheduler: Scheduler
) -> None:
    # The backtest itself takes a moment; holding its slot after the run
    # keeps the attempt RUNNING long enough to read what it reported.
    config = dataclasses.replace(
        worker_config(scheduler.port),
        faults=parse_faults("attempt.finish@SYN-SLOW=sleep(5)"),
    )
    worker = Worker(config)
    await worker.start()
    try:
        job_id = await submit(store, crossover_spec(100_000, instrument="SYN-SLOW"))

        job = await wait_for_job(store, job_id, lambda job: job.progress > 0)

        assert job.state is JobState.RUNNING
        await store.cancel(OWNER, job_id)
        await wait_for_job(store, job_id, lambda job: job.state.is_terminal)
    finally:
        await worker.stop()


async def test_busy_worker_leaves_the_next_job_in_the_queue_for_any_worker(
    store: JobStore, worker: Worker
) -> None:
    long_id = await submit(store, crossover_spec(LONG_BACKTEST_CANDLES))
    [slot] = worker.slots.slots
    await wait_until(lambda: slot.busy)

    next_id = await submit(store, crossover_spec(20_000))
    # Several heartbeats: each says the worker has no room.
    await asyncio.sleep(1.0)

    assert (await store.get(OWNER, next_id)).state is JobState.QUEUED
    await store.cancel(OWNER, long_id)
    job = await wait_for_state(store, next_id, JobState.SUCCEEDED)
    assert job.attempt == 1


async def test_prefetched_attempt_waits_for_the_busy_slot_then_runs(
    store: JobStore, scheduler: Scheduler
) -> None:
    config = dataclasses.replace(worker_config(scheduler.port), prefetch=1)
    worker = Worker(config)
    await worker.start()
    try:
        long_id = await submit(store, crossover_spec(LONG_BACKTEST_CANDLES))
        [slot] = worker.slots.slots
        await wait_until(lambda: slot.busy)

        next_id = await submit(store, crossover_spec(20_000))
        # Leased to the worker while its only slot is still busy.
        await wait_for_state(store, next_id, JobState.RUNNING)
        assert slot.busy
        assert (await store.get(OWNER, long_id)).state is JobState.RUNNING

        await store.cancel(OWNER, long_id)
        job = await wait_for_state(store, next_id, JobState.SUCCEEDED)
        assert job.attempt == 1
    finally:
        await worker.stop()
