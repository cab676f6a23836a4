"""The worker's reporter: reports that end while every call is out go
together in the next call, and each learns its own verdict."""

from __future__ import annotations

import asyncio
from dataclasses import fields

import grpc
import numpy as np

from backcast.compute.reporting import (
    CALLS_IN_FLIGHT,
    AttemptRef,
    Delivery,
    Reporter,
)
from backcast.compute.slots import Failed, Succeeded
from backcast.engine.results import BacktestResult, EquityCurve, Metrics, TradeTable
from backcast.v1 import scheduler_service_pb2 as pb


def rpc_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=code.name
    )


class ScriptedScheduler:
    """Answers report calls as a scheduler would, holding each batch call
    until the test releases it."""

    def __init__(self, *, batches_known: bool = True) -> None:
        self.batches: list[list[int]] = []
        self.requests: list[pb.CompleteAttemptsRequest] = []
        self.singles: list[int] = []
        self.lost: set[int] = set()
        self.failures: list[grpc.StatusCode] = []
        self.release = asyncio.Event()
        self._batches_known = batches_known

    async def CompleteAttempts(
        self, request: pb.CompleteAttemptsRequest, timeout: float
    ) -> pb.CompleteAttemptsResponse:
        if not self._batches_known:
            raise rpc_error(grpc.StatusCode.UNIMPLEMENTED)
        self.batches.append([report.job_id for report in request.reports])
        self.requests.append(request)
        await self.release.wait()
        if self.failures:
            raise rpc_error(self.failures.pop(0))
        return pb.CompleteAttemptsResponse(
            receipts=[self._receipt(report.job_id) for report in request.reports]
        )

    async def CompleteAttempt(
        self, request: pb.CompleteAttemptRequest, timeout: float
    ) -> pb.CompleteAttemptResponse:
        self.singles.append(request.job_id)
        if request.job_id in self.lost:
            raise rpc_error(grpc.StatusCode.ABORTED)
        return pb.CompleteAttemptResponse()

    def _receipt(self, job_id: int) -> pb.ReportReceipt:
        if job_id in self.lost:
            return pb.ReportReceipt(verdict=pb.REPORT_VERDICT_LEASE_LOST)
        return pb.ReportReceipt(verdict=pb.REPORT_VERDICT_ACCEPTED)


def failure() -> Failed:
    return Failed("broken", retryable=False)


async def test_reports_ending_while_every_call_is_out_travel_together() -> None:
    scheduler = ScriptedScheduler()
    reporter = Reporter(scheduler, "w1")  # type: ignore[arg-type]
    first_ids = list(range(1, CALLS_IN_FLIGHT + 1))
    later_ids = [CALLS_IN_FLIGHT + 1, CALLS_IN_FLIGHT + 2]
    scheduler.lost.add(later_ids[-1])

    first = []
    for job_id in first_ids:  # each sent as it ends, in a call of its own
        report = reporter.report(AttemptRef(job_id, 1, 1), failure())
        first.append(asyncio.create_task(report))
        await asyncio.sleep(0)
    later = [
        asyncio.create_task(reporter.report(AttemptRef(job_id, 1, 1), failure()))
        for job_id in later_ids
    ]
    await asyncio.sleep(0)
    scheduler.release.set()
    deliveries = await asyncio.gather(*first, *later)

    assert scheduler.batches == [[job_id] for job_id in first_ids] + [later_ids]
    assert deliveries[-1] is Delivery.LEASE_LOST
    assert set(deliveries[:-1]) == {Delivery.ACCEPTED}


async def test_batch_is_sent_again_while_the_scheduler_is_unavailable() -> None:
    scheduler = ScriptedScheduler()
    scheduler.failures.append(grpc.StatusCode.UNAVAILABLE)
    scheduler.release.set()
    reporter = Reporter(scheduler, "w1")  # type: ignore[arg-type]

    delivery = await asyncio.wait_for(
        reporter.report(AttemptRef(1, 1, 1), failure()), timeout=5
    )

    assert delivery is Delivery.ACCEPTED
    assert scheduler.batches == [[1], [1]]


async def test_batch_refused_outright_rejects_every_report() -> None:
    scheduler = ScriptedScheduler()
    scheduler.failures.append(grpc.StatusCode.INVALID_ARGUMENT)
    scheduler.release.set()
    reporter = Reporter(scheduler, "w1")  # type: ignore[arg-type]

    delivery = await reporter.report(AttemptRef(1, 1, 1), failure())

    assert delivery is Delivery.REJECTED


async def test_scheduler_without_batches_gets_one_report_per_call() -> None:
    scheduler = ScriptedScheduler(batches_known=False)
    scheduler.lost.add(2)
    reporter = Reporter(scheduler, "w1")  # type: ignore[arg-type]

    deliveries = await asyncio.gather(
        *(reporter.report(AttemptRef(job_id, 1, 1), failure()) for job_id in (1, 2))
    )

    assert deliveries == [Delivery.ACCEPTED, Delivery.LEASE_LOST]
    assert scheduler.singles == [1, 2]


def result_with_fractional_trade_times() -> BacktestResult:
    """A result whose metrics encode but whose trade times cannot (int64
    columns given floats), as a bug in the engine might make one."""
    one = np.array([1.5])
    return BacktestResult(
        metrics=Metrics(**{f.name: 0 for f in fields(Metrics)}),
        trades=TradeTable(one, one, one, one, one, one, one),
        equity_curve=EquityCurve(np.array([60]), np.array([100.0])),
    )


async def test_a_result_that_cannot_be_encoded_is_reported_as_a_failure() -> None:
    scheduler = ScriptedScheduler()
    scheduler.release.set()
    reporter = Reporter(scheduler, "w1")  # type: ignore[arg-type]

    report = Succeeded(result_with_fractional_trade_times())
    delivery = await reporter.report(AttemptRef(1, 1, 1), report)

    assert delivery is Delivery.ACCEPTED
    (sent,) = scheduler.requests[0].reports
    assert sent.WhichOneof("outcome") == "failure"
    assert sent.failure.message == "the backtest result could not be encoded"
    assert not sent.failure.retryable
    assert not sent.HasField("result")
