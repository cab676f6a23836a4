"""Fault 5: PostgreSQL connections terminated under load, and PostgreSQL
down then back. Every service recovers by itself, no accepted job is lost,
and clients are told to retry while the database is away."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from functools import partial

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from head_faults_support import (
    ControlledPostgres,
    Gateway,
    StartPlatform,
    SubmitFlow,
    attempt_rows,
    events_of,
    overlapping_attempts,
    service_pids,
    small_spec,
    started_job_ids,
    terminate_backends,
    wait_for,
    wait_until_finished,
)

from backcast.cli.platform import Platform, ServiceProcess
from backcast.v1 import backtest_service_pb2 as api

pytestmark = pytest.mark.e2e

HOLD_INSTRUMENT = "SYN-HOLD"
ENV = {
    "BACKCAST_SCHEDULER_LEASE_SECONDS": "3",
    "BACKCAST_SCHEDULER_HEARTBEAT_SECONDS": "0.3",
    "BACKCAST_SCHEDULER_POLL_SECONDS": "0.5",
    # Attempts that are running whenever the database goes away.
    "BACKCAST_FAULTS": f"attempt.start@{HOLD_INSTRUMENT}=sleep(2)",
}
N_TERMINATIONS = 5
# Half the command-line client's deadline: a client must learn that the
# database is away well within the deadline it would usually give a call.
PROBE_DEADLINE_SECONDS = 5.0
SUCCEEDED = api.Backtest.State.STATE_SUCCEEDED


def test_terminated_database_sessions_lose_no_job_and_need_no_restart(
    start_platform: StartPlatform, database_url: str
) -> None:
    platform = start_platform(database_url, ENV, slots_per_worker=2)
    pids_before = service_pids(platform)
    gateway = Gateway(platform.gateway_address)

    with SubmitFlow(platform.gateway_address, interval_seconds=0.05) as flow:
        held = _submit_held(gateway, 2)
        flow.wait_for_accepted(5)
        n_terminated = 0
        for _ in range(N_TERMINATIONS):
            n_terminated += terminate_backends(database_url)
            time.sleep(0.5)
        n_accepted = len(flow.job_ids)
        flow.wait_for_accepted(n_accepted + 5)

    # Every service had sessions to lose: two pools and two listeners.
    assert n_terminated >= N_TERMINATIONS * 2
    assert not flow.unexpected, flow.unexpected
    rows = wait_until_finished(database_url, [*held, *flow.job_ids])
    assert {row.state for row in rows} == {"succeeded"}
    _assert_one_result_each(database_url, [row.id for row in rows])
    _assert_nothing_internal(platform)
    assert gateway.get_status(held[0]).state == SUCCEEDED
    assert service_pids(platform) == pids_before
    gateway.close()
    _assert_listening_again(platform)


def test_database_outage_answers_unavailable_and_every_job_survives_it(
    start_platform: StartPlatform, embedded_postgres: ControlledPostgres
) -> None:
    database_url = embedded_postgres.url
    platform = start_platform(database_url, ENV, slots_per_worker=2)
    pids_before = service_pids(platform)
    # A deadline shorter than the gateway's wait for a database connection
    # would hide the answer behind DEADLINE_EXCEEDED.
    gateway = Gateway(platform.gateway_address, timeout_seconds=PROBE_DEADLINE_SECONDS)

    with SubmitFlow(platform.gateway_address) as flow:
        held = _submit_held(gateway, 2)
        flow.wait_for_accepted(5)
        wait_for(
            lambda: set(held) <= started_job_ids(platform.workers),
            timeout_seconds=30,
            what="the held attempts to start",
        )

        embedded_postgres.stop()
        try:
            for call in (
                lambda: gateway.submit(small_spec(0), str(uuid.uuid4())),
                lambda: gateway.get_status(held[0]),
            ):
                _assert_told_to_retry(call)
        finally:
            embedded_postgres.start()
        n_accepted = len(flow.job_ids)
        flow.wait_for_accepted(n_accepted + 5)

    assert not flow.unexpected, flow.unexpected
    rows = wait_until_finished(database_url, [*held, *flow.job_ids])
    assert {row.state for row in rows} == {"succeeded"}
    _assert_one_result_each(database_url, [row.id for row in rows])
    _assert_nothing_internal(platform)
    assert gateway.get_status(held[0]).state == SUCCEEDED
    assert service_pids(platform) == pids_before
    gateway.close()
    _assert_listening_again(platform)


def _assert_nothing_internal(platform: Platform) -> None:
    # INTERNAL is what an unexpected exception becomes: the interceptor logs
    # it as rpc_failed, and a worker whose report got it logs report_rejected.
    for service in platform.services:
        assert not events_of(service, "rpc_failed"), service.name
    for worker in platform.workers:
        assert not events_of(worker, "report_rejected"), worker.name


def _assert_listening_again(platform: Platform) -> None:
    # The LISTEN sessions lost with the database come back by themselves,
    # after a backoff of up to 5 s.
    assert platform.scheduler is not None and platform.gateway is not None
    for service, event in (
        (platform.scheduler, "listen_started"),
        (platform.gateway, "job_events_listening"),
    ):
        wait_for(
            partial(_logged_twice, service, event),
            timeout_seconds=30,
            what=f"{service.name} to listen again",
            poll_seconds=0.2,
        )


def _logged_twice(service: ServiceProcess, event: str) -> bool:
    return len(events_of(service, event)) >= 2


def _assert_one_result_each(database_url: str, job_ids: list[int]) -> None:
    # A requeue after a lost renewal may run a job twice; only one attempt
    # may ever end succeeded, and never two at once.
    claims = attempt_rows(database_url)
    assert not overlapping_attempts(claims)
    succeeded = Counter(c.job_id for c in claims if c.outcome == "succeeded")
    assert succeeded == Counter(job_ids)


def _submit_held(gateway: Gateway, n: int) -> list[int]:
    return [
        gateway.submit(small_spec(i, HOLD_INSTRUMENT), str(uuid.uuid4())).id
        for i in range(n)
    ]


def _assert_told_to_retry(call: Callable[[], object]) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    error = caught.value
    assert error.code() == grpc.StatusCode.UNAVAILABLE, error
    assert "retry" in (error.details() or ""), error.details()
    status = rpc_status.from_call(error)
    assert status is not None
    assert any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status.details)
