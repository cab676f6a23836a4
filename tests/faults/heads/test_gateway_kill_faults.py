"""Fault 7: the gateway killed with SIGKILL while a burst of submits is in
flight. Each client retries with its request id against the restarted
gateway and gets exactly one job."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass

import grpc
import psycopg
import pytest
from head_faults_support import (
    RETRY_CODES,
    Gateway,
    StartPlatform,
    Submission,
    job_rows,
    service_pids,
    small_spec,
    wait_for,
    wait_until_finished,
)

from backcast.cli.platform import Platform

pytestmark = pytest.mark.e2e

ENV = {
    "BACKCAST_SCHEDULER_LEASE_SECONDS": "2",
    "BACKCAST_SCHEDULER_HEARTBEAT_SECONDS": "0.3",
    "BACKCAST_SCHEDULER_POLL_SECONDS": "0.5",
}
N_CLIENTS = 8
MAX_ROUNDS = 3


@dataclass
class Client:
    """One client thread's submissions; it stops at its first failed call."""

    submissions: list[Submission]
    thread: threading.Thread


def test_submits_retried_after_a_gateway_kill_make_exactly_one_job_each(
    start_platform: StartPlatform, database_url: str
) -> None:
    platform = start_platform(database_url, ENV)
    assert platform.gateway is not None
    gateway_service = platform.gateway
    pids_before = service_pids(platform)

    submissions: list[Submission] = []
    # A kill proves the point once some submit was committed and then lost
    # its answer; how many are depends on timing, so try a few bursts.
    for _ in range(MAX_ROUNDS):
        cut_off = _burst_then_kill(platform, submissions)
        committed_unanswered = _stored_request_ids(
            database_url, [s.request_id for s in cut_off]
        )
        platform.restart(gateway_service)
        if committed_unanswered:
            break
    assert committed_unanswered, "no kill landed between a commit and its answer"
    print(f"{len(committed_unanswered)} cut-off submits had been committed")

    answered_before = {s.request_id: s.job_id for s in submissions if s.job_id}
    retry_gateway = Gateway(platform.gateway_address)
    for submission in submissions:
        job_id = _submit_until_accepted(retry_gateway, submission)
        if submission.request_id in answered_before:
            assert job_id == answered_before[submission.request_id]
        submission.job_id = job_id
    retry_gateway.close()

    rows = job_rows(database_url)
    jobs_per_request = Counter(row.request_id for row in rows)
    assert jobs_per_request == Counter(s.request_id for s in submissions)
    by_request = {row.request_id: row.id for row in rows}
    assert all(by_request[s.request_id] == s.job_id for s in submissions)

    finished = wait_until_finished(database_url, [row.id for row in rows])
    assert {row.state for row in finished} == {"succeeded"}
    # Only the gateway went down.
    pids_after = service_pids(platform)
    del pids_before[gateway_service.name], pids_after[gateway_service.name]
    assert pids_after == pids_before


def _burst_then_kill(
    platform: Platform, submissions: list[Submission]
) -> list[Submission]:
    """Kill the gateway amid back-to-back submits; returns those cut off."""
    assert platform.gateway is not None
    # Every client submits back to back, so that at any moment several
    # submits are somewhere between the gateway's socket and its commit.
    clients = [_start_client(platform.gateway_address) for _ in range(N_CLIENTS)]
    wait_for(
        lambda: _n_accepted(clients) >= 20,
        timeout_seconds=30,
        what="submits to be accepted",
    )
    platform.gateway.kill_group()
    assert platform.gateway.returncode() == -signal.SIGKILL
    for client in clients:
        client.thread.join(30)
        assert not client.thread.is_alive()

    burst = [s for c in clients for s in c.submissions]
    submissions += burst
    cut_off = [s for s in burst if s.job_id is None]
    assert len(cut_off) == N_CLIENTS
    assert all(s.failures == [grpc.StatusCode.UNAVAILABLE.name] for s in cut_off)
    return cut_off


def _start_client(address: str) -> Client:
    submissions: list[Submission] = []

    def submit_until_cut_off() -> None:
        gateway = Gateway(address)
        try:
            for n in range(10_000):
                submission = Submission(str(uuid.uuid4()), small_spec(n))
                submissions.append(submission)
                try:
                    submission.job_id = gateway.submit(
                        submission.spec, submission.request_id
                    ).id
                except grpc.RpcError as error:
                    submission.failures.append(error.code().name)
                    return
        finally:
            gateway.close()

    thread = threading.Thread(target=submit_until_cut_off, daemon=True)
    thread.start()
    return Client(submissions, thread)


def _n_accepted(clients: list[Client]) -> int:
    return sum(1 for c in clients for s in c.submissions if s.job_id is not None)


def _submit_until_accepted(gateway: Gateway, submission: Submission) -> int:
    deadline = time.monotonic() + 30
    while True:
        try:
            return gateway.submit(submission.spec, submission.request_id).id
        except grpc.RpcError as error:
            if error.code() not in RETRY_CODES or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _stored_request_ids(database_url: str, request_ids: list[str]) -> set[str]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT request_id FROM jobs WHERE request_id = ANY(%s)", (request_ids,)
        ).fetchall()
    return {row[0] for row in rows}
