"""The worker's health stream to the scheduler: hello and heartbeats out,
assignments and cancels in."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from importlib import metadata

import grpc

from backcast.compute.attempts import Assignment, AttemptRunner, StopReason
from backcast.compute.backoff import Backoff
from backcast.compute.reporting import AttemptRef
from backcast.errors import InvalidArgument
from backcast.jobqueue.jobs import HeldLease
from backcast.rpc.translate import spec_from_proto
from backcast.telemetry import EVENT, SCHEDULER, WORKER
from backcast.v1 import scheduler_service_pb2 as pb
from backcast.v1 import scheduler_service_pb2_grpc

logger = logging.getLogger(__name__)

# Heartbeat interval until a welcome says otherwise.
DEFAULT_HEARTBEAT_SECONDS = 2.0


def worker_version() -> str:
    try:
        return metadata.version("backcast")
    except metadata.PackageNotFoundError:
        return "unknown"


class SchedulerConnection:
    """Keeps one Connect stream open, reconnecting with backoff.

    Attempts keep running while the stream is down; the hello of the next
    stream lists their leases so that the scheduler renews them again.
    """

    # LIMITATION: a worker cut off from every scheduler for longer than a lease
    # keeps running attempts whose leases have expired until it reconnects and
    # is told LEASE_LOST; only CPU is lost (the late report is rejected).
    # Resolve: stop attempts whose lease was last renewed a lease ago.

    def __init__(
        self,
        stub: scheduler_service_pb2_grpc.SchedulerServiceAsyncStub,
        runner: AttemptRunner,
        worker_id: str,
        *,
        on_drain: Callable[[], None],
    ) -> None:
        self._stub = stub
        self._runner = runner
        self._worker_id = worker_id
        self._on_drain = on_drain
        self._version = worker_version()
        # Capped at a second: a restarted scheduler must hear from its
        # workers well within a lease, or it takes their jobs back.
        self._backoff = Backoff(initial_seconds=0.1, cap_seconds=1.0)
        self.heartbeat_seconds = DEFAULT_HEARTBEAT_SECONDS
        self.draining = False
        self.connected = asyncio.Event()

    async def run(self) -> None:
        """Hold the stream until cancelled."""
        while True:
            try:
                await self._hold_stream()
            except grpc.aio.AioRpcError as exc:
                self._log_broken(exc.code().name)
            except asyncio.InvalidStateError:
                # A heartbeat written as the scheduler died: "RPC already
                # finished". The same loss as a broken stream.
                self._log_broken("FINISHED")
            except Exception as exc:  # noqa: BLE001 - the worker must reconnect
                logger.error(
                    "scheduler stream failed",
                    exc_info=exc,
                    extra={EVENT: "stream_failed", WORKER: self._worker_id},
                )
            finally:
                self.connected.clear()
            delay = self._backoff.next_delay()
            logger.info(
                "reconnecting to the scheduler",
                extra={
                    EVENT: "reconnecting",
                    WORKER: self._worker_id,
                    "delay_seconds": round(delay, 3),
                },
            )
            await asyncio.sleep(delay)

    def _log_broken(self, code: str) -> None:
        logger.warning(
            "scheduler stream broke",
            extra={EVENT: "stream_broken", WORKER: self._worker_id, "code": code},
        )

    def send_soon(self) -> None:
        """Send a heartbeat now rather than at the next interval."""
        self._runner.changed.set()

    async def _hold_stream(self) -> None:
        # Waits for the channel to connect instead of failing at once, so
        # the stream opens the moment a restarted scheduler listens.
        call = self._stub.Connect(wait_for_ready=True)
        try:
            await call.write(pb.ConnectRequest(hello=self._hello()))
            first = await call.read()
            if not isinstance(first, pb.ConnectResponse):
                return  # the stream ended at once
            if first.WhichOneof("message") != "welcome":
                return
            self._on_welcome(first.welcome)

            # Reading and heartbeating run side by side; whichever ends first
            # (the scheduler closed the stream, or it broke) ends the other.
            tasks = {
                asyncio.create_task(self._read_responses(call)),
                asyncio.create_task(self._send_heartbeats(call)),
            }
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for task in done:
                task.result()
        finally:
            call.cancel()

    def _on_welcome(self, welcome: pb.SchedulerWelcome) -> None:
        self.heartbeat_seconds = welcome.heartbeat_seconds or DEFAULT_HEARTBEAT_SECONDS
        self._backoff.reset()
        self.connected.set()
        logger.info(
            "connected to the scheduler",
            extra={
                EVENT: "connected",
                WORKER: self._worker_id,
                SCHEDULER: welcome.scheduler_id,
                "heartbeat_seconds": welcome.heartbeat_seconds,
                "lease_seconds": welcome.lease_seconds,
            },
        )

    async def _read_responses(
        self, call: grpc.aio.StreamStreamCall[pb.ConnectRequest, pb.ConnectResponse]
    ) -> None:
        while True:
            response = await call.read()
            if not isinstance(response, pb.ConnectResponse):
                return  # EOF: the scheduler closed the stream
            self._on_response(response)

    def _hello(self) -> pb.WorkerHello:
        return pb.WorkerHello(
            worker_id=self._worker_id,
            n_slots=self._runner.n_slots,
            n_prefetch=self._runner.prefetch,
            takes_assignment_batches=True,
            version=self._version,
            held_leases=_held_to_proto(self._runner.held_leases()),
        )

    async def _send_heartbeats(
        self, call: grpc.aio.StreamStreamCall[pb.ConnectRequest, pb.ConnectResponse]
    ) -> None:
        # The first heartbeat goes out at once: the scheduler assigns nothing
        # before it has heard the worker's free slots.
        while True:
            self._runner.changed.clear()
            await call.write(pb.ConnectRequest(heartbeat=self._heartbeat()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._runner.changed.wait(), self.heartbeat_seconds
                )

    def _heartbeat(self) -> pb.WorkerHeartbeat:
        n_free = 0 if self.draining else self._runner.n_free_slots()
        return pb.WorkerHeartbeat(
            n_free_slots=n_free,
            held_leases=_held_to_proto(self._runner.held_leases()),
            draining=self.draining,
        )

    def _on_response(self, response: pb.ConnectResponse) -> None:
        kind = response.WhichOneof("message")
        if kind == "assignment":
            self._runner.start(_assignment_from_proto(response.assignment))
        elif kind == "assignments":
            for assignment in response.assignments.assignments:
                self._runner.start(_assignment_from_proto(assignment))
        elif kind == "cancel":
            cancel = response.cancel
            try:
                reason = StopReason(cancel.reason)
            except ValueError:
                reason = StopReason.CANCELLED
            self._runner.stop(cancel.job_id, cancel.fencing_token, reason)
        elif kind == "drain":
            logger.info(
                "scheduler asked to drain",
                extra={EVENT: "drain_requested", WORKER: self._worker_id},
            )
            self._on_drain()


def _assignment_from_proto(message: pb.Assignment) -> Assignment:
    ref = AttemptRef(message.job_id, message.fencing_token, message.attempt)
    try:
        spec = spec_from_proto(message.spec)
    except InvalidArgument as exc:
        return Assignment(ref, None, problem=f"invalid spec: {exc.message}")
    return Assignment(ref, spec.to_dict())


def _held_to_proto(leases: list[HeldLease]) -> list[pb.HeldLease]:
    return [
        pb.HeldLease(
            job_id=lease.job_id,
            fencing_token=lease.fencing_token,
            progress=lease.progress,
        )
        for lease in leases
    ]
