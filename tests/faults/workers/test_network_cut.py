"""Fault 6: the network between a worker and its scheduler cut, then healed."""

from __future__ import annotations

import time

import pytest
from worker_faults_support import (
    STATE,
    Fleet,
    assert_new_holder_result_kept,
    attempts_of,
    log_events,
    small_spec,
    strand_worker,
    wait_until_finished,
)

from backcast.cli.client import GatewayClient

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("how", ["cut", "blackhole"])
def test_cut_off_worker_late_progress_and_result_are_refused_after_heal(
    fleet: Fleet, gateway: GatewayClient, how: str
) -> None:
    # `cut` closes every connection and resets new ones; `blackhole` keeps
    # them open and holds every byte until the link heals.
    proxy = fleet.proxy_to_scheduler()
    break_link = getattr(proxy, how)

    jobs = strand_worker(
        fleet,
        gateway,
        isolate=lambda _: break_link(),
        restore=lambda _: proxy.heal(),
        scheduler_address=proxy.address,
    )

    assert_new_holder_result_kept(fleet, jobs)
    # The same worker process came back over the healed link: on a new
    # stream after a cut, on the stream that was held up after a blackhole.
    assert jobs.stranded.returncode() is None
    n_streams = len(
        log_events(fleet.scheduler, "worker_connected", worker=jobs.stranded.name)
    )
    if how == "cut":
        assert n_streams >= 2
    else:
        assert n_streams == 1


def test_worker_that_cannot_hear_its_scheduler_does_not_use_up_attempts(
    fleet: Fleet, gateway: GatewayClient
) -> None:
    # Heartbeats still reach the scheduler, so the worker looks healthy;
    # nothing the scheduler sends reaches the worker.
    proxy = fleet.proxy_to_scheduler()
    worker = fleet.add_worker("worker-a", scheduler_address=proxy.address)
    proxy.blackhole(upstream=False, downstream=True)
    try:
        job_id = gateway.submit(small_spec("SYN-DEAF")).id
        # Three leases' worth of lost assignments: as many as the job's
        # attempts under the default max_attempts.
        time.sleep(6 * fleet.timings.lease_seconds)
    finally:
        proxy.heal()

    [finished] = wait_until_finished(gateway, [job_id], timeout_seconds=60).values()
    summary = [(a.worker, a.outcome) for a in attempts_of(fleet.database_url, job_id)]
    print(f"attempts: {summary}")
    assert finished.state == STATE.STATE_SUCCEEDED, (finished.error, summary)
    assert worker.returncode() is None
