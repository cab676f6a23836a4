"""Fault 4: two schedulers on one database, each with workers of its own.
No job is ever held by two workers, and both schedulers get work."""

from __future__ import annotations

import threading
import uuid
from collections import Counter, defaultdict

import psycopg
import pytest
from head_faults_support import (
    Gateway,
    StartPlatform,
    SubmitFlow,
    attempt_rows,
    overlapping_attempts,
    small_spec,
    wait_until_finished,
    worker_attempts,
)

pytestmark = pytest.mark.e2e

INSTRUMENT = "SYN-SHARE"
ENV = {
    "BACKCAST_SCHEDULER_LEASE_SECONDS": "2",
    "BACKCAST_SCHEDULER_HEARTBEAT_SECONDS": "0.3",
    "BACKCAST_SCHEDULER_POLL_SECONDS": "0.5",
    # Attempts long enough that the queue outgrows the four slots and both
    # schedulers claim from it at once.
    "BACKCAST_FAULTS": f"attempt.start@{INSTRUMENT}=sleep(0.3)",
}
N_BURST = 40


class LeaseSampler:
    """Reads who holds each running job, as often as it can, until stopped."""

    def __init__(self, database_url: str) -> None:
        self._database_url = database_url
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        # (job id, fencing token) -> every worker seen holding it
        self.holders: dict[tuple[int, int], set[str]] = defaultdict(set)
        self.n_samples = 0

    def __enter__(self) -> LeaseSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        with psycopg.connect(self._database_url, autocommit=True) as conn:
            while not self._stop.wait(0.01):
                rows = conn.execute(
                    "SELECT id, fencing_token, lease_holder FROM jobs"
                    " WHERE state IN ('running', 'cancelling')"
                ).fetchall()
                for job_id, token, holder in rows:
                    self.holders[(job_id, token)].add(holder)
                self.n_samples += 1


def test_two_schedulers_share_the_queue_and_never_lease_a_job_twice(
    start_platform: StartPlatform, database_url: str
) -> None:
    east = start_platform(database_url, ENV, worker_id_prefix="east")
    west = start_platform(database_url, ENV, worker_id_prefix="west")
    workers = [*east.workers, *west.workers]

    with LeaseSampler(database_url) as sampler:
        with SubmitFlow(west.gateway_address, instrument=INSTRUMENT) as flow:
            # A burst queues far more than the slots, so both schedulers
            # wake to the same notification and race for the same rows.
            gateway = Gateway(east.gateway_address)
            burst = [
                gateway.submit(small_spec(i, INSTRUMENT), str(uuid.uuid4())).id
                for i in range(N_BURST)
            ]
            gateway.close()
            flow.wait_for_accepted(10)
        job_ids = [*burst, *flow.job_ids]
        rows = wait_until_finished(database_url, job_ids)

    assert not flow.unexpected
    assert {row.state for row in rows} == {"succeeded"}
    assert {row.attempt for row in rows} == {1}
    assert sampler.n_samples > 10
    shared = {key: held for key, held in sampler.holders.items() if len(held) > 1}
    assert not shared, shared

    # The attempts table agrees: one claim per job, never two at once.
    claims = attempt_rows(database_url)
    assert not overlapping_attempts(claims)
    assert sorted(claim.job_id for claim in claims) == sorted(job_ids)
    assert {claim.outcome for claim in claims} == {"succeeded"}

    # Each job reached exactly one worker, once.
    attempts = worker_attempts(workers)
    per_job = Counter(attempt.job_id for attempt in attempts)
    assert sorted(per_job) == sorted(job_ids)
    assert set(per_job.values()) == {1}

    assert {(a.job_id, a.worker) for a in attempts} == {
        (claim.job_id, claim.worker) for claim in claims
    }

    # Both schedulers handed out work.
    per_side = Counter(claim.worker.split("-")[0] for claim in claims)
    assert per_side["east"] >= 5 and per_side["west"] >= 5, per_side
