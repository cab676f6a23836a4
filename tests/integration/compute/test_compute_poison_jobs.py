"""Backtests that crash, hang, exhaust memory or fail cannot take a worker
down and cannot loop forever: each ends FAILED after its attempts, and the
worker goes on running other jobs."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest
from compute_support import crossover_spec, submit, wait_for_state, worker_config

from backcast.compute.faults import parse_faults
from backcast.compute.worker import Worker
from backcast.jobqueue.jobs import JobState
from backcast.jobqueue.store import JobStore
from backcast.scheduler.server import Scheduler

FAULTS = ";".join(
    (
        "attempt.start@SYN-CRASH=crash",
        "attempt.start@SYN-EXIT=exit(3)",
        "attempt.start@SYN-HANG=sleep(60)",
        "attempt.start@SYN-FLAKY=fail(retryable)",
        "attempt.start@SYN-FATAL=fail(fatal)",
        "attempt.start@SYN-GREEDY=allocate(6144)",
        "attempt.start@SYN-BUGGY=raise(index out of range)",
    )
)


# Long enough for a healthy backtest on a busy machine, short enough for a
# hanging one to be cut twice in a test.
ATTEMPT_TIMEOUT_SECONDS = 3.0


@pytest.fixture
async def poisoned_worker(scheduler: Scheduler) -> AsyncIterator[Worker]:
    """A one-slot worker whose slots misbehave on the instruments above."""
    config = dataclasses.replace(
        worker_config(scheduler.port),
        attempt_timeout_seconds=ATTEMPT_TIMEOUT_SECONDS,
        slot_memory_mb=4096,
        faults=parse_faults(FAULTS),
    )
    running = Worker(config)
    await running.start()
    await running.connection.connected.wait()
    try:
        yield running
    finally:
        await running.stop()


async def assert_worker_still_serves(store: JobStore) -> None:
    job_id = await submit(store, crossover_spec(2_000, fast_period=5, slow_period=20))
    await wait_for_state(store, job_id, JobState.SUCCEEDED)


@pytest.mark.parametrize(
    ("instrument", "message"),
    [
        ("SYN-CRASH", "the slot process died (killed by SIGSEGV)"),
        ("SYN-EXIT", "the slot process died (exit code 3)"),
        ("SYN-HANG", "the backtest ran past the execution timeout of 3 s"),
        ("SYN-GREEDY", "the backtest ran out of memory"),
        ("SYN-BUGGY", "the backtest engine raised RuntimeError: index out of range"),
    ],
)
async def test_attempt_that_raises_or_breaks_its_slot_is_retried_then_fails(
    store: JobStore, poisoned_worker: Worker, instrument: str, message: str
) -> None:
    job_id = await submit(store, crossover_spec(2_000, instrument), max_attempts=2)

    job = await wait_for_state(store, job_id, JobState.FAILED)

    assert job.attempt == 2
    assert job.error_reason == "BACKTEST_ERROR"
    assert job.error_message == message
    await assert_worker_still_serves(store)


async def test_retryable_failure_runs_every_attempt_and_keeps_the_last_error(
    store: JobStore, poisoned_worker: Worker
) -> None:
    job_id = await submit(store, crossover_spec(2_000, "SYN-FLAKY"), max_attempts=3)

    job = await wait_for_state(store, job_id, JobState.FAILED)

    assert job.attempt == 3
    assert job.error_message == "injected retryable failure at attempt.start"


async def test_failure_no_retry_can_fix_ends_the_job_at_once(
    store: JobStore, poisoned_worker: Worker
) -> None:
    job_id = await submit(store, crossover_spec(2_000, "SYN-FATAL"), max_attempts=3)

    job = await wait_for_state(store, job_id, JobState.FAILED)

    assert job.attempt == 1
    assert job.error_message == "injected fatal failure at attempt.start"
