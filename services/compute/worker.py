"""Assembly of a compute worker: slot pool, scheduler stream, reporting and
the health endpoint, with drain and stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc

from backcast.compute.attempts import AttemptRunner
from backcast.compute.config import WorkerConfig
from backcast.compute.connection import SchedulerConnection
from backcast.compute.reporting import Reporter
from backcast.compute.slots import ENGINE_ENTRY, SlotLimits, SlotPool
from backcast.rpc.server import CLIENT_OPTIONS, ServiceHost, start_server
from backcast.telemetry import EVENT, WORKER
from backcast.v1 import scheduler_service_pb2_grpc

logger = logging.getLogger(__name__)

# Reconnect quickly after a scheduler restart: gRPC's own default backoff
# grows to two minutes, far longer than a lease.
CHANNEL_OPTIONS = (
    *CLIENT_OPTIONS,
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1_000),
)


class Worker:
    """A running compute worker.

    `drain()` stops taking work and lets running attempts finish and be
    reported; `drained` is set once none is left. `stop()` ends everything at
    once (running attempts are lost; their leases expire and they run again).
    """

    def __init__(self, config: WorkerConfig, *, entry: str = ENGINE_ENTRY) -> None:
        self.config = config
        self._channel = grpc.aio.insecure_channel(
            config.scheduler_address, options=CHANNEL_OPTIONS
        )
        stub = scheduler_service_pb2_grpc.SchedulerServiceStub(self._channel)
        limits = SlotLimits(
            timeout_seconds=config.attempt_timeout_seconds,
            memory_mb=config.slot_memory_mb,
            faults=config.faults,
        )
        self.slots = SlotPool(
            config.n_slots, entry=entry, log_level=config.log_level, limits=limits
        )
        self.runner = AttemptRunner(
            self.slots,
            Reporter(stub, config.worker_id),
            config.worker_id,
            prefetch=config.prefetch,
        )
        self.connection = SchedulerConnection(
            stub, self.runner, config.worker_id, on_drain=self.drain
        )
        self.drain_requested = asyncio.Event()
        self._host: ServiceHost | None = None
        self._stream: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        assert self._host is not None
        return self._host.port

    async def start(self) -> None:
        self.slots.start()
        self._stream = asyncio.create_task(self.connection.run())
        self._host = await start_server([], self.config.address)
        logger.info(
            "worker started",
            extra={
                EVENT: "worker_started",
                WORKER: self.config.worker_id,
                "n_slots": self.config.n_slots,
            },
        )

    def drain(self) -> None:
        """Take no new work; finish and report what is running."""
        if self.drain_requested.is_set():
            return
        self.drain_requested.set()
        self.connection.draining = True
        self.connection.send_soon()
        logger.info(
            "worker draining",
            extra={EVENT: "worker_draining", WORKER: self.config.worker_id},
        )

    async def wait_drained(self) -> None:
        # LIMITATION: draining waits until every report is delivered; with no
        # scheduler reachable it waits until a second signal (or the
        # orchestrator's kill), and the leases then expire as after a crash.
        #
        # An assignment the scheduler sent before it saw the draining
        # heartbeat may still be on the wire; it lands within one heartbeat
        # round trip, and is run rather than left to an expiring lease.
        while True:
            await self.runner.wait_idle()
            await asyncio.sleep(self.connection.heartbeat_seconds)
            if self.runner.is_idle:
                return

    async def stop(self) -> None:
        """Close the stream, kill the slots and stop serving health."""
        if self._stream is not None:
            self._stream.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stream
        self.runner.close()
        await self._channel.close()
        if self._host is not None:
            await self._host.stop(grace_seconds=1.0, drain_seconds=0.0)
        logger.info(
            "worker stopped",
            extra={EVENT: "worker_stopped", WORKER: self.config.worker_id},
        )
