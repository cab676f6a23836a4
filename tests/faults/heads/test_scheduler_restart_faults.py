"""Fault 3: the scheduler killed with SIGKILL and restarted on its port while
jobs flow. Workers reconnect by themselves and nothing runs twice."""

from __future__ import annotations

import signal
import uuid
from collections import defaultdict
from datetime import datetime
from functools import partial

import pytest
from head_faults_support import (
    Gateway,
    StartPlatform,
    SubmitFlow,
    attempt_rows,
    events_of,
    lease_expiry,
    overlapping_attempts,
    small_spec,
    started_job_ids,
    wait_for,
    wait_until_finished,
    worker_attempts,
)

pytestmark = pytest.mark.e2e

HOLD_SECONDS = 10
LEASE_SECONDS = 8
# The held attempts outlast a lease, so they finish with attempt 1 only if
# the restarted scheduler renews their leases.
ENV = {
    "BACKCAST_SCHEDULER_LEASE_SECONDS": str(LEASE_SECONDS),
    "BACKCAST_SCHEDULER_HEARTBEAT_SECONDS": "0.5",
    "BACKCAST_SCHEDULER_POLL_SECONDS": "0.5",
    "BACKCAST_FAULTS": f"attempt.start@SYN-HOLD=sleep({HOLD_SECONDS})",
}


def test_killed_scheduler_comes_back_and_every_job_finishes_without_a_rerun(
    start_platform: StartPlatform, database_url: str
) -> None:
    platform = start_platform(database_url, ENV, n_workers=2, slots_per_worker=2)
    assert platform.scheduler is not None
    scheduler = platform.scheduler
    worker_pids = {w.name: w.pid for w in platform.workers}
    gateway = Gateway(platform.gateway_address)

    with SubmitFlow(platform.gateway_address) as flow:
        flow.wait_for_accepted(5)
        held = [
            gateway.submit(small_spec(i, "SYN-HOLD"), str(uuid.uuid4())).id
            for i in range(2)
        ]
        wait_for(
            lambda: set(held) <= started_job_ids(platform.workers),
            timeout_seconds=30,
            what="the held attempts to start",
        )

        scheduler.kill_group()
        assert scheduler.returncode() == -signal.SIGKILL
        n_accepted_at_kill = len(flow.job_ids)
        expiry_at_kill = {job_id: lease_expiry(database_url, job_id) for job_id in held}

        platform.restart(scheduler)
        n_accepted_at_restart = len(flow.job_ids)
        # Renewed by the new scheduler, past what the old one granted.
        for job_id in held:
            wait_for(
                partial(_renewed_since, database_url, job_id, expiry_at_kill[job_id]),
                timeout_seconds=LEASE_SECONDS,
                what=f"the lease of held job {job_id} to be renewed",
            )
        flow.wait_for_accepted(n_accepted_at_restart + 10)

    gateway.close()
    assert not flow.unexpected
    # Jobs were accepted while no scheduler ran; they must still run.
    assert n_accepted_at_restart > n_accepted_at_kill

    rows = wait_until_finished(database_url, [*flow.job_ids, *held])
    failed = [row for row in rows if row.state != "succeeded"]
    assert not failed, failed

    attempts = {row.id: row.attempt for row in rows}
    assert [attempts[job_id] for job_id in held] == [1, 1]

    # A job runs again only when its first assignment died with the killed
    # scheduler before any worker received it; a received one never does.
    received = defaultdict(list)
    for worker_attempt in worker_attempts(platform.workers):
        received[worker_attempt.job_id].append(worker_attempt.fencing_token)
    for job_id, attempt in attempts.items():
        if attempt > 1:
            assert 1 not in received[job_id], (job_id, received[job_id])
        else:
            assert received[job_id] == [1], (job_id, received[job_id])

    # The attempts table tells the same: one claim per job that reached a
    # worker, none expired, and the held jobs kept their first worker.
    claims = attempt_rows(database_url)
    assert not overlapping_attempts(claims)
    expired = [claim for claim in claims if claim.outcome == "expired"]
    assert all(1 not in received[claim.job_id] for claim in expired), expired
    holders = {w.job_id: w.worker for w in worker_attempts(platform.workers)}
    for claim in claims:
        if claim.job_id in held:
            assert (claim.attempt, claim.outcome) == (1, "succeeded")
            assert claim.worker == holders[claim.job_id]

    # The workers never restarted: each reconnected on its own.
    assert {w.name: w.pid for w in platform.workers} == worker_pids
    for worker in platform.workers:
        assert worker.returncode() is None
        assert len(events_of(worker, "connected")) >= 2, worker.name
    held_on_return = sum(
        record["n_held_leases"] for record in events_of(scheduler, "worker_connected")
    )
    assert held_on_return >= len(held)


def _renewed_since(database_url: str, job_id: int, expiry: datetime | None) -> bool:
    renewed = lease_expiry(database_url, job_id)
    return renewed is not None and expiry is not None and renewed > expiry
