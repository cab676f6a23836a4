"""Reports how attempts ended to the scheduler, until it takes the report."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from enum import Enum

import grpc

from backcast.compute.backoff import Backoff
from backcast.compute.slots import Failed, Succeeded
from backcast.rpc.translate import result_to_proto
from backcast.telemetry import ATTEMPT, EVENT, FENCING_TOKEN, JOB_ID, WORKER
from backcast.v1 import scheduler_service_pb2 as pb
from backcast.v1 import scheduler_service_pb2_grpc

logger = logging.getLogger(__name__)

# Deadline of one CompleteAttempt call; results of a few MiB fit well within.
REPORT_TIMEOUT_SECONDS = 30.0

# Codes after which the same report is sent again: the scheduler or its
# database is away for now (a restart, a network cut).
RETRYABLE_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
)


@dataclass(frozen=True)
class AttemptRef:
    """Which attempt a report is about."""

    job_id: int
    fencing_token: int
    attempt: int


@dataclass(frozen=True)
class Cancelled:
    """The attempt was stopped because its job was cancelled."""


Report = Succeeded | Failed | Cancelled


class Delivery(Enum):
    """What became of a report."""

    ACCEPTED = "accepted"
    # The lease had moved on; the outcome no longer counts.
    LEASE_LOST = "lease_lost"
    # The scheduler refused it for another reason (a bug); the lease expires.
    REJECTED = "rejected"


class Reporter:
    """Sends CompleteAttempt with the lease's fencing token.

    Retrying is safe because the scheduler applies a report at most once and
    answers a repeat with success. A report outlives a scheduler restart: the
    channel reconnects and the call is sent again.
    """

    def __init__(
        self,
        stub: scheduler_service_pb2_grpc.SchedulerServiceAsyncStub,
        worker_id: str,
        *,
        timeout_seconds: float = REPORT_TIMEOUT_SECONDS,
    ) -> None:
        self._stub = stub
        self._worker_id = worker_id
        self._timeout_seconds = timeout_seconds

    async def report(self, ref: AttemptRef, report: Report) -> Delivery:
        request = self._request(ref, report)
        backoff = Backoff(initial_seconds=0.2, cap_seconds=5.0)
        fields = {
            JOB_ID: ref.job_id,
            FENCING_TOKEN: ref.fencing_token,
            ATTEMPT: ref.attempt,
            WORKER: self._worker_id,
        }
        while True:
            try:
                await self._stub.CompleteAttempt(request, timeout=self._timeout_seconds)
                return Delivery.ACCEPTED
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                if code == grpc.StatusCode.ABORTED:
                    logger.warning(
                        "lease lost; attempt dropped",
                        extra={EVENT: "report_lease_lost", **fields},
                    )
                    return Delivery.LEASE_LOST
                if code not in RETRYABLE_CODES:
                    logger.error(
                        "report rejected",
                        extra={EVENT: "report_rejected", "code": code.name, **fields},
                    )
                    return Delivery.REJECTED
                delay = backoff.next_delay()
                logger.warning(
                    "report not delivered; retrying",
                    extra={
                        EVENT: "report_retry",
                        "code": code.name,
                        "delay_seconds": round(delay, 3),
                        **fields,
                    },
                )
            await asyncio.sleep(delay)

    def _request(self, ref: AttemptRef, report: Report) -> pb.CompleteAttemptRequest:
        request = pb.CompleteAttemptRequest(
            job_id=ref.job_id,
            fencing_token=ref.fencing_token,
            worker_id=self._worker_id,
        )
        if isinstance(report, Succeeded):
            try:
                result = result_to_proto(report.result, trade_columns=True)
            except (KeyError, TypeError, ValueError, OverflowError):
                logger.error(
                    "backtest result could not be encoded",
                    exc_info=True,
                    extra={EVENT: "result_unencodable", JOB_ID: ref.job_id},
                )
                report = Failed("the backtest result could not be encoded", False)
            else:
                request.result.CopyFrom(result)
                return request
        if isinstance(report, Failed):
            request.failure.message = report.message
            request.failure.retryable = report.retryable
        else:
            request.cancelled.SetInParent()
        return request
