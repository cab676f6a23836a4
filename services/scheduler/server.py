"""Assembly of a scheduler replica: gRPC server, dispatcher, reaper and the
notification listener, with their start and graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from backcast.jobqueue.store import JOB_CANCELS_CHANNEL, JOBS_QUEUED_CHANNEL, JobStore
from backcast.rpc.server import ServiceBinding, ServiceHost, start_server
from backcast.scheduler.cancels import CancelRelay
from backcast.scheduler.completions import Completions
from backcast.scheduler.config import SchedulerConfig
from backcast.scheduler.dispatcher import Dispatcher
from backcast.scheduler.history import HistoryPruner, warn_if_autovacuum_is_off
from backcast.scheduler.leases import LeaseKeeper
from backcast.scheduler.notifications import NotificationListener
from backcast.scheduler.reaper import Reaper
from backcast.scheduler.servicer import SchedulerServicer
from backcast.scheduler.sessions import SessionRegistry
from backcast.telemetry import EVENT, SCHEDULER
from backcast.v1 import scheduler_service_pb2, scheduler_service_pb2_grpc

logger = logging.getLogger(__name__)

SERVICE_NAME = scheduler_service_pb2.DESCRIPTOR.services_by_name[
    "SchedulerService"
].full_name


class Scheduler:
    """A running scheduler replica."""

    def __init__(
        self,
        config: SchedulerConfig,
        host: ServiceHost,
        registry: SessionRegistry,
        dispatcher: Dispatcher,
        listener: NotificationListener,
        tasks: list[asyncio.Task[None]],
    ) -> None:
        self.config = config
        self.host = host
        self.registry = registry
        self.dispatcher = dispatcher
        self.listener = listener
        self._tasks = tasks

    @property
    def port(self) -> int:
        return self.host.port

    @classmethod
    async def start(cls, config: SchedulerConfig, store: JobStore) -> Scheduler:
        """Serve SchedulerService on `config.address` and start the loops."""
        await warn_if_autovacuum_is_off(store)
        registry = SessionRegistry()
        dispatcher = Dispatcher(
            store,
            registry,
            lease_seconds=config.lease_seconds,
            poll_seconds=config.poll_seconds,
        )
        keeper = LeaseKeeper(
            store,
            lease_seconds=config.lease_seconds,
            min_interval_seconds=config.heartbeat_seconds / 2,
        )
        completions = Completions(store, registry, dispatcher)
        reaper = Reaper(
            store,
            interval_seconds=config.reap_interval_seconds,
            recovery_grace_seconds=2 * config.heartbeat_seconds,
        )

        listener = NotificationListener(config.database_url)
        listener.subscribe(JOBS_QUEUED_CHANNEL, lambda _: dispatcher.wake())
        listener.subscribe(JOB_CANCELS_CHANNEL, CancelRelay(registry).on_notification)
        # Jobs queued while the listener was away announced nothing.
        listener.on_connected(dispatcher.wake)

        servicer = SchedulerServicer(config, registry, keeper, dispatcher, completions)
        binding = ServiceBinding(
            SERVICE_NAME,
            servicer,
            scheduler_service_pb2_grpc.add_SchedulerServiceServicer_to_server,
        )
        host = await start_server([binding], config.address)

        loops: list[Coroutine[Any, Any, None]] = [
            dispatcher.run(),
            reaper.run(),
            listener.run(),
        ]
        if config.history_days > 0:
            pruner = HistoryPruner(
                store,
                retention_seconds=config.history_days * 86_400,
                interval_seconds=config.prune_interval_seconds,
            )
            loops.append(pruner.run())
        tasks = [asyncio.create_task(loop) for loop in loops]
        logger.info(
            "scheduler started",
            extra={
                EVENT: "scheduler_started",
                SCHEDULER: config.scheduler_id,
                "lease_seconds": config.lease_seconds,
                "heartbeat_seconds": config.heartbeat_seconds,
            },
        )
        return cls(config, host, registry, dispatcher, listener, tasks)

    async def stop(
        self, grace_seconds: float = 5.0, drain_seconds: float = 0.5
    ) -> None:
        """Stop assigning, end the workers' streams, then stop serving.

        Workers keep their attempts running and reconnect to another (or the
        restarted) scheduler, which renews their leases; nothing changes in
        the database.
        """
        self.registry.close_all()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.host.stop(grace_seconds, drain_seconds)
        logger.info(
            "scheduler stopped",
            extra={EVENT: "scheduler_stopped", SCHEDULER: self.config.scheduler_id},
        )
