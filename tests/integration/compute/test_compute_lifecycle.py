"""Worker life cycle: drain on SIGTERM, and surviving a scheduler restart."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from compute_support import (
    LONG_BACKTEST_CANDLES,
    OWNER,
    crossover_spec,
    scheduler_config,
    submit,
    wait_for_job,
    wait_for_state,
    wait_until,
    worker_config,
)

from backcast.compute.worker import Worker
from backcast.jobqueue.jobs import JobState
from backcast.jobqueue.store import JobStore
from backcast.rpc.server import replace_port
from backcast.scheduler.server import Scheduler


async def test_sigterm_lets_the_running_backtest_finish_before_exit(
    store: JobStore, scheduler: Scheduler, tmp_path: Path
) -> None:
    job_id = await submit(store, crossover_spec(LONG_BACKTEST_CANDLES))
    env = {
        **os.environ,
        "BACKCAST_WORKER_SCHEDULER": f"127.0.0.1:{scheduler.port}",
        "BACKCAST_WORKER_SLOTS": "1",
        "BACKCAST_WORKER_ID": "w-drain",
    }
    with open(tmp_path / "worker.log", "wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "backcast.compute", env=env, stdout=log, stderr=log
        )
        try:
            # Progress shows the backtest is under way in the worker's slot.
            await wait_for_job(store, job_id, lambda job: job.progress > 0)
            process.send_signal(signal.SIGTERM)
            later_id = await submit(store, crossover_spec(5_000))
            exit_code = await asyncio.wait_for(process.wait(), 30)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    log_text = (tmp_path / "worker.log").read_text()
    assert exit_code == 0, log_text
    job, result = await store.get_result(
        OWNER, job_id, first_trade=0, max_trades=10_000
    )
    assert job.attempt == 1
    assert result.metrics["n_candles"] == LONG_BACKTEST_CANDLES
    # The scheduler assigns nothing once it has seen the draining heartbeat
    # (tests/integration/scheduler proves it); an assignment that crossed
    # that heartbeat on the wire is still run to the end, never dropped.
    later = await store.get(OWNER, later_id)
    assert later.state in (JobState.QUEUED, JobState.SUCCEEDED), later
    assert '"event": "worker_draining"' in log_text


async def test_running_attempt_survives_a_scheduler_restart(
    store: JobStore, database_url: str
) -> None:
    first = await Scheduler.start(scheduler_config(database_url), store)
    address = replace_port("127.0.0.1:0", first.port)
    worker = Worker(worker_config(first.port))
    await worker.start()
    second: Scheduler | None = None
    try:
        job_id = await submit(store, crossover_spec(LONG_BACKTEST_CANDLES))
        [slot] = worker.slots.slots
        await wait_until(lambda: slot.busy)

        await first.stop(grace_seconds=0.2, drain_seconds=0.0)
        second = await Scheduler.start(scheduler_config(database_url, address), store)

        job = await wait_for_state(store, job_id, JobState.SUCCEEDED)
    finally:
        await worker.stop()
        if second is not None:
            await second.stop(grace_seconds=0.2, drain_seconds=0.0)

    # Same lease throughout: the new scheduler renewed it and took the report.
    assert job.attempt == 1
    assert job.fencing_token == 1
