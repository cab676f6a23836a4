"""Fault 8: cancel racing completion. A cancelled job never ends SUCCEEDED,
and a result that arrives after the cancel is discarded."""

from __future__ import annotations

import random
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from worker_faults_support import (
    STATE,
    TERMINAL,
    Fleet,
    JobFlow,
    attempts_of,
    job_row,
    log_events,
    small_spec,
    wait_for,
    wait_for_event,
    wait_for_progress,
    wait_until_finished,
)

from backcast.cli.client import GatewayClient

pytestmark = pytest.mark.e2e


def test_result_arriving_after_the_cancel_is_discarded(
    fleet: Fleet, gateway: GatewayClient
) -> None:
    # Worker A reaches the scheduler through a proxy and holds its result a
    # while; worker B keeps the flow of other jobs going.
    proxy = fleet.proxy_to_scheduler()
    worker_a = fleet.add_worker(
        "worker-a",
        faults="attempt.finish@SYN-RACE=sleep(2)",
        scheduler_address=proxy.address,
    )
    race = gateway.submit(small_spec("SYN-RACE")).id
    worker_b = fleet.add_worker("worker-b", n_slots=2, wait=False)
    wait_for_event(worker_a, "attempt_started", job_id=race)

    with JobFlow(fleet.platform.gateway_address) as flow:
        # Nothing reaches A any more, so the cancel cannot stop its attempt;
        # A's heartbeats, and then its result, still reach the scheduler.
        proxy.blackhole(upstream=False, downstream=True)
        cancelling = gateway.cancel(race)
        assert cancelling.state == STATE.STATE_CANCELLING

        finished = wait_until_finished(gateway, [race], timeout_seconds=30)[race]
        proxy.heal()
        fleet.wait_connected(worker_b)
        flow.assert_all_succeeded(gateway)

    assert finished.state == STATE.STATE_CANCELLED, finished
    assert finished.error.reason == "CANCELLED"
    # The result came after the cancel, from the lease holder itself, and
    # was dropped: the job has no result, and its only attempt was cancelled.
    race_1 = {"job_id": race, "fencing_token": 1}
    assert log_events(worker_a, "attempt_succeeded", **race_1)
    assert not log_events(worker_a, "attempt_cancelled", **race_1)
    recorded = wait_for_event(fleet.scheduler, "attempt_recorded", **race_1)
    assert (recorded["outcome"], recorded["state"]) == ("result", "cancelled")
    assert len(log_events(fleet.scheduler, "attempt_recorded", **race_1)) == 1
    summary = [
        (a.attempt, a.worker, a.outcome) for a in attempts_of(fleet.database_url, race)
    ]
    assert summary == [(1, worker_a.name, "cancelled")]

    # Still so once the link healed and the flow drained.
    row = job_row(fleet.database_url, race)
    assert (row.state, row.has_result) == ("cancelled", False)
    with pytest.raises(grpc.RpcError) as refused:
        gateway.get_result(race)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_cancel_sent_to_a_frozen_worker_wins_over_the_result_it_resumes_with(
    fleet: Fleet, gateway: GatewayClient
) -> None:
    worker_a = fleet.add_worker("worker-a", faults="attempt.finish@SYN-RACE=sleep(1)")
    race = gateway.submit(small_spec("SYN-RACE")).id
    worker_b = fleet.add_worker("worker-b", n_slots=2, wait=False)
    wait_for_progress(gateway, race)

    with JobFlow(fleet.platform.gateway_address) as flow:
        # The worker stops while its slot process holds the result; the cancel
        # waits in the worker's socket and the result in its pipe, and the
        # resumed worker meets both at once. Resumed within the lease, so
        # that the worker, not the reaper, settles the race.
        worker_a.signal(signal.SIGSTOP)
        try:
            assert gateway.cancel(race).state == STATE.STATE_CANCELLING
            time.sleep(1.2)
        finally:
            worker_a.signal(signal.SIGCONT)
        finished = wait_until_finished(gateway, [race], timeout_seconds=30)[race]
        fleet.wait_connected(worker_b)
        flow.assert_all_succeeded(gateway)

    assert finished.state == STATE.STATE_CANCELLED, finished
    row = job_row(fleet.database_url, race)
    assert (row.state, row.has_result) == ("cancelled", False)
    [attempt] = attempts_of(fleet.database_url, race)
    assert (attempt.worker, attempt.outcome) == (worker_a.name, "cancelled")


def test_cancel_racing_completion_never_lets_a_cancelled_job_succeed(
    fleet: Fleet, gateway: GatewayClient
) -> None:
    # Each attempt holds its result for a fixed time, and each cancel comes at
    # a random moment around that time: some cancels land before the result,
    # some after it, some in between its report and its store.
    faults = "attempt.finish@SYN-RACE=sleep(0.4)"
    for name in ("worker-a", "worker-b"):
        fleet.add_worker(name, n_slots=2, faults=faults, wait=False)
    for worker in fleet.workers:
        fleet.wait_connected(worker)
    rng = random.Random(20261203)
    ids = [gateway.submit(small_spec("SYN-RACE", i)).id for i in range(16)]
    # From the first progress the scheduler hears of, the result comes out
    # within the hold plus one heartbeat, and is stored a round trip later.
    delays = {job_id: rng.uniform(0.0, 1.0) for job_id in ids}

    def cancel_once_under_way(job_id: int) -> str:
        with fleet.client() as client:

            def under_way() -> bool:
                backtest = client.get_status(job_id)
                return backtest.progress > 0 or backtest.state in TERMINAL

            wait_for(
                under_way,
                timeout_seconds=60,
                what=f"progress of job {job_id}",
                poll_seconds=0.05,
            )
            time.sleep(delays[job_id])
            try:
                return STATE.Name(client.cancel(job_id).state)
            except grpc.RpcError as error:
                return error.code().name

    with JobFlow(fleet.platform.gateway_address) as flow:
        with ThreadPoolExecutor(max_workers=len(ids)) as pool:
            answers = dict(zip(ids, pool.map(cancel_once_under_way, ids), strict=True))
        wait_until_finished(gateway, ids, timeout_seconds=60)
        flow.assert_all_succeeded(gateway)

    outcomes = {}
    for job_id, answer in answers.items():
        row = job_row(fleet.database_url, job_id)
        outcomes[job_id] = (answer, row.state, row.has_result)
    print(f"cancel answer, final state, result stored: {outcomes}")
    for job_id, (answer, state, has_result) in outcomes.items():
        if answer in ("STATE_CANCELLING", "STATE_CANCELLED"):
            # The cancel was accepted: nothing may overturn it.
            assert (state, has_result) == ("cancelled", False), job_id
            assert attempts_of(fleet.database_url, job_id)[-1].outcome == "cancelled"
        else:
            # The result won: the cancel was refused as too late.
            assert answer == "FAILED_PRECONDITION", (job_id, answer)
            assert (state, has_result) == ("succeeded", True), job_id
