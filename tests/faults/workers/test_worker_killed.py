"""Fault 1: a worker killed with SIGKILL mid-attempt loses no job."""

from __future__ import annotations

import signal
import time

import pytest
from worker_faults_support import (
    STATE,
    Fleet,
    JobFlow,
    attempts_of,
    database_now,
    lease_expiry,
    small_spec,
    wait_for_event,
    wait_until_finished,
)

from backcast.cli.client import GatewayClient

pytestmark = pytest.mark.e2e


def test_jobs_of_a_killed_worker_run_again_on_another_worker_and_succeed(
    fleet: Fleet, gateway: GatewayClient
) -> None:
    # Worker A's slots hold these attempts, so they are surely running (and
    # not finished) when it dies; worker B runs them at once.
    worker_a = fleet.add_worker(
        "worker-a", n_slots=2, faults="attempt.start@SYN-KILL=sleep(60)"
    )
    held = [gateway.submit(small_spec("SYN-KILL", i)).id for i in range(2)]
    # Starts while A takes the jobs; it connects only after A holds them.
    worker_b = fleet.add_worker("worker-b", n_slots=2, wait=False)
    for job_id in held:
        wait_for_event(worker_a, "attempt_started", job_id=job_id)
    fleet.wait_connected(worker_b)

    with JobFlow(fleet.platform.gateway_address) as flow:
        killed_at = database_now(fleet.database_url)
        # The worker and its slot processes die at once, as with a lost host.
        worker_a.kill_group()
        assert worker_a.returncode() == -signal.SIGKILL

        finished = wait_until_finished(gateway, held, timeout_seconds=60)
        flow.assert_all_succeeded(gateway)

    for job_id in held:
        assert finished[job_id].state == STATE.STATE_SUCCEEDED, finished[job_id]
        attempts = attempts_of(fleet.database_url, job_id)
        summary = [(a.attempt, a.worker, a.outcome) for a in attempts]
        assert summary == [
            (1, worker_a.name, "expired"),
            (2, worker_b.name, "succeeded"),
        ]
        assert gateway.get_result(job_id).result.metrics.n_candles > 0

        rerun_after = (attempts[1].started_at - killed_at).total_seconds()
        timings = fleet.timings
        # The lease expires at most a lease after the kill (it was renewed
        # last before it); the reaper notices within one interval, and the
        # job then waits out the requeue delay before a claim.
        bound = (
            timings.lease_seconds
            + timings.reap_interval_seconds
            + timings.requeue_delay_seconds
            + timings.poll_seconds
        )
        print(f"job {job_id} ran again {rerun_after:.2f} s after the kill")
        assert rerun_after < bound + 2.0


def test_dead_workers_job_runs_again_within_the_lease_plus_one_heartbeat(
    fleet: Fleet, gateway: GatewayClient
) -> None:
    worker_a = fleet.add_worker("worker-a", faults="attempt.start@SYN-KILL=sleep(60)")
    job_id = gateway.submit(small_spec("SYN-KILL")).id
    worker_b = fleet.add_worker("worker-b", wait=False)
    wait_for_event(worker_a, "attempt_started", job_id=job_id)
    fleet.wait_connected(worker_b)

    worker_a.kill_group()
    # No renewal can come after the kill, so this is when the lease runs
    # out: at most one lease after the kill. A heartbeat already on the wire
    # lands within one more heartbeat, so read it after that.
    time.sleep(2 * fleet.timings.heartbeat_seconds)
    expires_at = lease_expiry(fleet.database_url, job_id)
    wait_until_finished(gateway, [job_id], timeout_seconds=60)

    rerun = attempts_of(fleet.database_url, job_id)[1]
    assert rerun.worker == worker_b.name
    gap = (rerun.started_at - expires_at).total_seconds()
    print(f"job ran again {gap:.2f} s after its lease ran out")
    # Both times come from the database clock; the allowance covers a
    # scheduler slowed down by a loaded machine.
    assert gap <= fleet.timings.heartbeat_seconds + 0.5
