"""Reports how attempts ended to the scheduler, until it takes the report."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
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

# Deadline of one report call; results of a few MiB fit well within.
REPORT_TIMEOUT_SECONDS = 30.0

# Bounds of one CompleteAttempts call, within the scheduler's 1,000 reports
# and far from the 64 MiB message limit; a larger report goes alone.
MAX_REPORTS_PER_CALL = 500
MAX_BATCH_BYTES = 8 * 1024 * 1024
# Report calls out at once. Reports gather while every call is out, so
# short backtests are stored in batches; with a second call the next report
# is not held up while a large result (a year's trades) is being stored,
# which measured 66 backtests per second of the seed workload against 50.
CALLS_IN_FLIGHT = 2

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


@dataclass(eq=False)
class _Pending:
    """A report waiting for its delivery."""

    ref: AttemptRef
    report: Report
    wire_bytes: int
    delivery: asyncio.Future[Delivery]


class Reporter:
    """Sends reports with the lease's fencing token, in CompleteAttempts calls.

    At most CALLS_IN_FLIGHT calls are out at once; the reports that end
    while they are go together in the next one. Short backtests end many at
    a time, and then the scheduler stores a whole batch in one statement.

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
        self._queue: deque[_Pending] = deque()
        self._senders: set[asyncio.Task[None]] = set()
        # Cleared when the scheduler does not know CompleteAttempts (an
        # older version, during a rolling upgrade).
        self._batches_known = True

    async def report(self, ref: AttemptRef, report: Report) -> Delivery:
        """Deliver `report`; returns once the scheduler took or refused it."""
        delivery = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(ref, report, _wire_bytes(report), delivery))
        if len(self._senders) < CALLS_IN_FLIGHT:
            sender = asyncio.create_task(self._send_queued())
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)
        return await delivery

    def close(self) -> None:
        """Stop sending; reports not yet delivered are abandoned (their
        leases expire and the attempts run again)."""
        for sender in self._senders:
            sender.cancel()
        while self._queue:
            self._queue.popleft().delivery.cancel()

    async def _send_queued(self) -> None:
        while self._queue:
            batch = self._next_batch()
            try:
                if self._batches_known:
                    await self._deliver_batch(batch)
                else:
                    for pending in batch:
                        _settle(pending, await self._deliver_alone(pending))
            except Exception as exc:  # noqa: BLE001 - each caller logs it
                for pending in batch:
                    if not pending.delivery.done():
                        pending.delivery.set_exception(exc)
            finally:
                for pending in batch:
                    pending.delivery.cancel()  # no-op once settled

    def _next_batch(self) -> list[_Pending]:
        batch = [self._queue.popleft()]
        n_bytes = batch[0].wire_bytes
        while self._queue and len(batch) < MAX_REPORTS_PER_CALL:
            n_bytes += self._queue[0].wire_bytes
            if n_bytes > MAX_BATCH_BYTES:
                break
            batch.append(self._queue.popleft())
        return batch

    async def _deliver_batch(self, batch: list[_Pending]) -> None:
        # Each report is built in place: copying a year's result into the
        # batch would cost as much as encoding it.
        request = pb.CompleteAttemptsRequest()
        for pending in batch:
            self._fill(request.reports.add(), pending)
        backoff = Backoff(initial_seconds=0.2, cap_seconds=5.0)
        while True:
            try:
                response = await self._stub.CompleteAttempts(
                    request, timeout=self._timeout_seconds
                )
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                if code == grpc.StatusCode.UNIMPLEMENTED:
                    self._batches_known = False
                    for pending in batch:
                        _settle(pending, await self._deliver_alone(pending))
                    return
                if code not in RETRYABLE_CODES:
                    for pending in batch:
                        self._log_rejected(pending, code.name)
                        _settle(pending, Delivery.REJECTED)
                    return
                delay = backoff.next_delay()
                self._log_retry(batch, code.name, delay)
                await asyncio.sleep(delay)
                continue
            receipts = list(response.receipts)
            for index, pending in enumerate(batch):
                verdict = receipts[index].verdict if index < len(receipts) else None
                _settle(pending, self._delivery_of(pending, verdict))
            return

    def _delivery_of(self, pending: _Pending, verdict: int | None) -> Delivery:
        if verdict == pb.REPORT_VERDICT_ACCEPTED:
            return Delivery.ACCEPTED
        if verdict == pb.REPORT_VERDICT_LEASE_LOST:
            self._log_lease_lost(pending)
            return Delivery.LEASE_LOST
        self._log_rejected(pending, "REJECTED")
        return Delivery.REJECTED

    async def _deliver_alone(self, pending: _Pending) -> Delivery:
        request = pb.CompleteAttemptRequest()
        self._fill(request, pending)
        backoff = Backoff(initial_seconds=0.2, cap_seconds=5.0)
        while True:
            try:
                await self._stub.CompleteAttempt(request, timeout=self._timeout_seconds)
                return Delivery.ACCEPTED
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                if code == grpc.StatusCode.ABORTED:
                    self._log_lease_lost(pending)
                    return Delivery.LEASE_LOST
                if code not in RETRYABLE_CODES:
                    self._log_rejected(pending, code.name)
                    return Delivery.REJECTED
                delay = backoff.next_delay()
                self._log_retry([pending], code.name, delay)
            await asyncio.sleep(delay)

    def _fields(self, ref: AttemptRef) -> dict[str, object]:
        return {
            JOB_ID: ref.job_id,
            FENCING_TOKEN: ref.fencing_token,
            ATTEMPT: ref.attempt,
            WORKER: self._worker_id,
        }

    def _log_lease_lost(self, pending: _Pending) -> None:
        logger.warning(
            "lease lost; attempt dropped",
            extra={EVENT: "report_lease_lost", **self._fields(pending.ref)},
        )

    def _log_rejected(self, pending: _Pending, code: str) -> None:
        logger.error(
            "report rejected",
            extra={EVENT: "report_rejected", "code": code, **self._fields(pending.ref)},
        )

    def _log_retry(self, batch: list[_Pending], code: str, delay: float) -> None:
        for pending in batch:
            logger.warning(
                "report not delivered; retrying",
                extra={
                    EVENT: "report_retry",
                    "code": code,
                    "delay_seconds": round(delay, 3),
                    **self._fields(pending.ref),
                },
            )

    def _fill(self, request: pb.CompleteAttemptRequest, pending: _Pending) -> None:
        ref, report = pending.ref, pending.report
        request.job_id = ref.job_id
        request.fencing_token = ref.fencing_token
        request.worker_id = self._worker_id
        if isinstance(report, Succeeded):
            try:
                result_to_proto(report.result, columns=True, into=request.result)
            except (KeyError, TypeError, ValueError, OverflowError):
                logger.error(
                    "backtest result could not be encoded",
                    exc_info=True,
                    extra={EVENT: "result_unencodable", JOB_ID: ref.job_id},
                )
                # Setting the failure below drops the half-written result:
                # the two are one oneof.
                report = Failed("the backtest result could not be encoded", False)
            else:
                return
        if isinstance(report, Failed):
            request.failure.message = report.message
            request.failure.retryable = report.retryable
        else:
            request.cancelled.SetInParent()


def _wire_bytes(report: Report) -> int:
    """About the size of `report` on the wire, counted from the result's
    columns: measuring the encoded message (`ByteSize`) walks every equity
    point, 0.8 ms for a year of minutes."""
    if isinstance(report, Succeeded):
        result = report.result
        fills = result.account_fills
        n_fills = 0 if fills is None else len(fills.at)
        n_points = len(result.equity_curve.at)
        return 4096 + 56 * len(result.trades.entry_at) + 24 * n_fills + 16 * n_points
    if isinstance(report, Failed):
        return 64 + len(report.message.encode())
    return 64


def _settle(pending: _Pending, delivery: Delivery) -> None:
    if not pending.delivery.done():
        pending.delivery.set_result(delivery)
