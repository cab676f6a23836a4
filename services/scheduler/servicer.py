"""SchedulerService over gRPC: translates between the wire and the domain."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Iterator

import grpc

from backcast.engine.spec import BacktestSpec
from backcast.errors import InvalidArgument, LeaseLost, Unavailable
from backcast.jobqueue.jobs import HeldLease, Lease
from backcast.jobqueue.results import stored_result
from backcast.rpc.translate import result_from_proto, spec_to_proto
from backcast.scheduler.completions import Completions, ResultReport
from backcast.scheduler.config import SchedulerConfig
from backcast.scheduler.dispatcher import Dispatcher
from backcast.scheduler.leases import LeaseKeeper
from backcast.scheduler.sessions import (
    Cancel,
    Heartbeat,
    Push,
    SessionRegistry,
    WorkerSession,
)
from backcast.telemetry import EVENT, JOB_ID, WORKER
from backcast.v1 import scheduler_service_pb2 as pb
from backcast.v1 import scheduler_service_pb2_grpc

logger = logging.getLogger(__name__)

MAX_WORKER_ID_LENGTH = 200
MAX_SLOTS = 4096
MAX_PREFETCH = 4096
MAX_REPORTS_PER_CALL = 1000
# A claim can hand a worker thousands of attempts when its prefetch is deep;
# splitting them keeps each message far below the stream's size limit and
# lets the worker start the first ones while later ones are still decoding.
ASSIGNMENTS_PER_MESSAGE = 256

ACCEPTED = pb.ReportReceipt(verdict=pb.REPORT_VERDICT_ACCEPTED)
LEASE_LOST = pb.ReportReceipt(verdict=pb.REPORT_VERDICT_LEASE_LOST)


class SchedulerServicer(scheduler_service_pb2_grpc.SchedulerServiceServicer):
    """Connect streams and CompleteAttempt calls of compute workers."""

    def __init__(
        self,
        config: SchedulerConfig,
        registry: SessionRegistry,
        keeper: LeaseKeeper,
        dispatcher: Dispatcher,
        completions: Completions,
    ) -> None:
        self._config = config
        self._registry = registry
        self._keeper = keeper
        self._dispatcher = dispatcher
        self._completions = completions

    async def Connect(
        self,
        request_iterator: AsyncIterator[pb.ConnectRequest],
        context: grpc.aio.ServicerContext[pb.ConnectRequest, pb.ConnectResponse],
    ) -> AsyncIterator[pb.ConnectResponse]:
        if self._registry.closing:
            raise Unavailable("scheduler is shutting down; connect to another one")
        first = await anext(aiter(request_iterator), None)
        if first is None:
            return
        hello = _hello_from_proto(first)
        held = tuple(_held_from_proto(h) for h in hello.held_leases)

        session = WorkerSession(
            hello.worker_id,
            hello.n_slots,
            hello.version,
            n_prefetch=hello.n_prefetch,
            takes_batches=hello.takes_assignment_batches,
        )
        session.record_hello(held)
        replaced = self._registry.add(session) is not None
        logger.info(
            "worker connected",
            extra={
                EVENT: "worker_connected",
                WORKER: session.worker_id,
                "n_slots": session.n_slots,
                "n_prefetch": session.n_prefetch,
                "n_held_leases": len(held),
                "version": session.version,
                "replaced_session": replaced,
            },
        )

        reader: asyncio.Task[None] | None = None
        try:
            # Leases held across a reconnect are renewed at once: the worker
            # may have been away for most of a lease.
            await self._keeper.renew(session, held, held)
            yield pb.ConnectResponse(
                welcome=pb.SchedulerWelcome(
                    heartbeat_seconds=self._config.heartbeat_seconds,
                    lease_seconds=self._config.lease_seconds,
                    scheduler_id=self._config.scheduler_id,
                )
            )
            reader = asyncio.create_task(
                self._read_heartbeats(request_iterator, session)
            )
            async for pushes in session.pushes():
                for message in pushes_to_proto(pushes, session.takes_batches):
                    yield message
        finally:
            if reader is not None:
                reader.cancel()
            session.close()
            self._registry.remove(session)
            logger.info(
                "worker disconnected",
                extra={EVENT: "worker_disconnected", WORKER: session.worker_id},
            )

    async def _read_heartbeats(
        self, requests: AsyncIterator[pb.ConnectRequest], session: WorkerSession
    ) -> None:
        try:
            async for request in requests:
                if request.WhichOneof("message") != "heartbeat":
                    logger.warning(
                        "unexpected message on a worker stream",
                        extra={EVENT: "unexpected_message", WORKER: session.worker_id},
                    )
                    continue
                heartbeat = _heartbeat_from_proto(request.heartbeat)
                leases = session.record_heartbeat(heartbeat)
                await self._keeper.renew(session, leases, heartbeat.held)
                if session.capacity(stale_after_seconds=self._config.lease_seconds):
                    self._dispatcher.wake()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the stream ends; leases expire
            logger.warning(
                "worker stream broke",
                exc_info=exc,
                extra={EVENT: "worker_stream_broken", WORKER: session.worker_id},
            )
        finally:
            # The worker closed its side or the stream broke: end ours too.
            session.close()

    async def CompleteAttempt(
        self,
        request: pb.CompleteAttemptRequest,
        context: grpc.aio.ServicerContext[
            pb.CompleteAttemptRequest, pb.CompleteAttemptResponse
        ],
    ) -> pb.CompleteAttemptResponse:
        job_id, token, worker = request.job_id, request.fencing_token, request.worker_id
        outcome = request.WhichOneof("outcome")
        if outcome == "result":
            result = stored_result(result_from_proto(request.result))
            await self._completions.record_result(job_id, token, worker, result)
        elif outcome == "failure":
            await self._completions.record_failure(
                job_id,
                token,
                worker,
                request.failure.message[:2000],
                retryable=request.failure.retryable,
            )
        elif outcome == "cancelled":
            await self._completions.record_cancelled(job_id, token, worker)
        else:
            raise InvalidArgument.of(
                "outcome", "not set; set one of result, failure, cancelled"
            )
        return pb.CompleteAttemptResponse()

    async def CompleteAttempts(
        self,
        request: pb.CompleteAttemptsRequest,
        context: grpc.aio.ServicerContext[
            pb.CompleteAttemptsRequest, pb.CompleteAttemptsResponse
        ],
    ) -> pb.CompleteAttemptsResponse:
        n = len(request.reports)
        if not 0 < n <= MAX_REPORTS_PER_CALL:
            raise InvalidArgument.of(
                "reports", f"holds {n} reports; send 1 to {MAX_REPORTS_PER_CALL}"
            )
        receipts: list[pb.ReportReceipt | None] = [None] * n
        # Results, the common case, are stored together; failures and
        # cancels are rare and take the single-report path.
        results: list[tuple[int, ResultReport]] = []
        for index, report in enumerate(request.reports):
            outcome = report.WhichOneof("outcome")
            try:
                if outcome == "result":
                    results.append((index, _result_report(report)))
                else:
                    await self.CompleteAttempt(report, context)
                    receipts[index] = ACCEPTED
            except LeaseLost:
                receipts[index] = LEASE_LOST
            except InvalidArgument as exc:
                receipts[index] = _rejected(exc)
        states = await self._completions.record_results([r for _, r in results])
        for (index, _), state in zip(results, states, strict=True):
            receipts[index] = LEASE_LOST if isinstance(state, LeaseLost) else ACCEPTED
        return pb.CompleteAttemptsResponse(receipts=receipts)


def _result_report(request: pb.CompleteAttemptRequest) -> ResultReport:
    return ResultReport(
        job_id=request.job_id,
        fencing_token=request.fencing_token,
        worker=request.worker_id,
        result=stored_result(result_from_proto(request.result)),
    )


def _rejected(error: InvalidArgument) -> pb.ReportReceipt:
    return pb.ReportReceipt(
        verdict=pb.REPORT_VERDICT_REJECTED,
        detail="; ".join(f"{v.field}: {v.description}" for v in error.violations)
        or error.message,
    )


def _hello_from_proto(request: pb.ConnectRequest) -> pb.WorkerHello:
    if request.WhichOneof("message") != "hello":
        raise InvalidArgument.of(
            "hello", "the first message of a Connect stream must be a hello"
        )
    hello = request.hello
    if not 0 < len(hello.worker_id) <= MAX_WORKER_ID_LENGTH:
        raise InvalidArgument.of(
            "hello.worker_id", f"must hold 1 to {MAX_WORKER_ID_LENGTH} characters"
        )
    if not 0 < hello.n_slots <= MAX_SLOTS:
        raise InvalidArgument.of(
            "hello.n_slots", f"{hello.n_slots} is outside [1, {MAX_SLOTS}]"
        )
    if not 0 <= hello.n_prefetch <= MAX_PREFETCH:
        raise InvalidArgument.of(
            "hello.n_prefetch",
            f"{hello.n_prefetch} is outside [0, {MAX_PREFETCH}]",
        )
    return hello


def _heartbeat_from_proto(message: pb.WorkerHeartbeat) -> Heartbeat:
    return Heartbeat(
        n_free_slots=max(0, message.n_free_slots),
        held=tuple(_held_from_proto(h) for h in message.held_leases),
        draining=message.draining,
    )


def _held_from_proto(message: pb.HeldLease) -> HeldLease:
    progress = message.progress if math.isfinite(message.progress) else 0.0
    return HeldLease(
        job_id=message.job_id,
        fencing_token=message.fencing_token,
        progress=min(1.0, max(0.0, progress)),
    )


def pushes_to_proto(
    pushes: list[Push], takes_batches: bool
) -> Iterator[pb.ConnectResponse]:
    """The messages of `pushes`, in order; assignments next to each other go
    in AssignmentBatch messages when the worker takes batches."""
    batch: list[pb.Assignment] = []
    for push in pushes:
        if isinstance(push, Cancel):
            yield from _batched(batch)
            batch = []
            yield _cancel_to_proto(push)
            continue
        assignment = _assignment_to_proto(push.lease, push.spec)
        if assignment is None:
            continue
        if not takes_batches:
            yield pb.ConnectResponse(assignment=assignment)
            continue
        batch.append(assignment)
        if len(batch) == ASSIGNMENTS_PER_MESSAGE:
            yield from _batched(batch)
            batch = []
    yield from _batched(batch)


def _batched(batch: list[pb.Assignment]) -> Iterator[pb.ConnectResponse]:
    if batch:
        yield pb.ConnectResponse(assignments=pb.AssignmentBatch(assignments=batch))


def _cancel_to_proto(cancel: Cancel) -> pb.ConnectResponse:
    return pb.ConnectResponse(
        cancel=pb.CancelAttempt(
            job_id=cancel.job_id,
            fencing_token=cancel.fencing_token,
            reason=cancel.reason.value,
        )
    )


def _assignment_to_proto(lease: Lease, spec: BacktestSpec) -> pb.Assignment | None:
    try:
        message = spec_to_proto(spec)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        # The dispatcher already checked the spec; should this still fail, the
        # lease expires and the job runs out of attempts instead of the whole
        # stream breaking.
        logger.error(
            "assignment could not be translated",
            exc_info=exc,
            extra={EVENT: "assignment_untranslatable", JOB_ID: lease.job_id},
        )
        return None
    return pb.Assignment(
        job_id=lease.job_id,
        fencing_token=lease.fencing_token,
        attempt=lease.attempt,
        spec=message,
    )
