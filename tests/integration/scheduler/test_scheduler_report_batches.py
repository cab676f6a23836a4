"""CompleteAttempts: many reports in one call, each with its own receipt."""

from __future__ import annotations

import grpc
import pytest
from scheduler_support import (
    OWNER,
    FakeWorker,
    WorkerFactory,
    empty_result,
    held_of,
    submit,
)

from backcast.jobqueue.jobs import JobState
from backcast.jobqueue.store import JobStore
from backcast.v1 import scheduler_service_pb2 as pb


async def _leased(
    store: JobStore, connect_worker: WorkerFactory, n: int
) -> tuple[FakeWorker, list[pb.Assignment]]:
    await submit(store, n)
    worker = await connect_worker(n_slots=n)
    await worker.heartbeat(n_free_slots=n)
    return worker, await worker.assignments(n)


async def test_batch_records_each_report_and_names_the_lost_lease(
    store: JobStore, connect_worker: WorkerFactory
) -> None:
    worker, [won, failed, stale, empty] = await _leased(store, connect_worker, 4)
    failure = pb.AttemptFailure(message="no market data", retryable=False)

    receipts = await worker.complete_many(
        [
            worker.report(won.job_id, won.fencing_token, empty_result()),
            worker.report(
                failed.job_id,
                failed.fencing_token,
                pb.CompleteAttemptRequest(failure=failure),
            ),
            worker.report(stale.job_id, stale.fencing_token + 1, empty_result()),
            worker.report(
                empty.job_id, empty.fencing_token, pb.CompleteAttemptRequest()
            ),
        ]
    )

    assert [r.verdict for r in receipts] == [
        pb.REPORT_VERDICT_ACCEPTED,
        pb.REPORT_VERDICT_ACCEPTED,
        pb.REPORT_VERDICT_LEASE_LOST,
        pb.REPORT_VERDICT_REJECTED,
    ]
    assert "outcome" in receipts[3].detail
    job, page = await store.get_result(OWNER, won.job_id, first_trade=0, max_trades=1)
    assert job.state is JobState.SUCCEEDED
    assert page.metrics["n_candles"] == 240
    assert (await store.get(OWNER, failed.job_id)).state is JobState.FAILED
    # The stale and the empty report changed nothing: their leases run on.
    assert (await store.get(OWNER, stale.job_id)).state is JobState.RUNNING
    assert (await store.get(OWNER, empty.job_id)).state is JobState.RUNNING


async def test_repeated_batch_is_accepted_and_changes_nothing(
    store: JobStore, connect_worker: WorkerFactory
) -> None:
    worker, assignments = await _leased(store, connect_worker, 3)
    reports = [
        worker.report(a.job_id, a.fencing_token, empty_result()) for a in assignments
    ]

    first = await worker.complete_many(reports)
    finished = [await store.get(OWNER, a.job_id) for a in assignments]
    again = await worker.complete_many(reports)

    accepted = [pb.REPORT_VERDICT_ACCEPTED] * 3
    assert [r.verdict for r in first] == accepted
    assert [r.verdict for r in again] == accepted
    for before, assignment in zip(finished, assignments, strict=True):
        after = await store.get(OWNER, assignment.job_id)
        assert after.state is JobState.SUCCEEDED
        assert after.finished_at == before.finished_at
        assert len(await store.attempts(OWNER, assignment.job_id)) == 1


async def test_job_reported_twice_in_one_batch_is_recorded_once(
    store: JobStore, connect_worker: WorkerFactory
) -> None:
    worker, [assignment] = await _leased(store, connect_worker, 1)
    report = worker.report(assignment.job_id, assignment.fencing_token, empty_result())

    receipts = await worker.complete_many([report, report])

    assert [r.verdict for r in receipts] == [pb.REPORT_VERDICT_ACCEPTED] * 2
    job = await store.get(OWNER, assignment.job_id)
    assert job.state is JobState.SUCCEEDED


async def test_batch_of_no_reports_is_invalid(
    store: JobStore, connect_worker: WorkerFactory
) -> None:
    worker = await connect_worker()

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await worker.complete_many([])

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "reports" in (caught.value.details() or "")


async def test_reported_slots_free_the_worker_for_more_work(
    store: JobStore, connect_worker: WorkerFactory
) -> None:
    await submit(store, 4)
    worker = await connect_worker(n_slots=2)
    await worker.heartbeat(n_free_slots=2)
    first = await worker.assignments(2)

    await worker.complete_many(
        [worker.report(a.job_id, a.fencing_token, empty_result()) for a in first]
    )

    # No heartbeat in between: the reports themselves freed the slots.
    second = await worker.assignments(2)
    assert {a.job_id for a in second}.isdisjoint(a.job_id for a in first)
    await worker.heartbeat(n_free_slots=0, held=held_of(second))
