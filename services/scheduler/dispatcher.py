"""The assignment loop: leases queued jobs to workers with free slots."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from backcast.engine.spec import STRATEGIES, BacktestSpec
from backcast.errors import DatabaseUnavailable, LeaseLost
from backcast.jobqueue.jobs import Lease
from backcast.jobqueue.store import JobStore
from backcast.scheduler.sessions import SessionRegistry, WorkerSession
from backcast.telemetry import ATTEMPT, EVENT, FENCING_TOKEN, JOB_ID, WORKER

logger = logging.getLogger(__name__)


class Dispatcher:
    """Claims jobs for each worker's free slots and pushes them as assignments.

    It wakes on a queued-job notification, on a heartbeat or completion that
    may have freed a slot, and every `poll_seconds` as a safety net.
    """

    def __init__(
        self,
        store: JobStore,
        registry: SessionRegistry,
        *,
        lease_seconds: float,
        poll_seconds: float,
    ) -> None:
        self._store = store
        self._registry = registry
        self._lease_seconds = lease_seconds
        self._poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self._turn = 0

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Assign until cancelled."""
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self._poll_seconds)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.assign_queued()
            except DatabaseUnavailable:
                logger.warning(
                    "claiming jobs failed; retrying", extra={EVENT: "claim_failed"}
                )
                await asyncio.sleep(self._poll_seconds)
            except Exception as exc:  # noqa: BLE001 - the loop must outlive a bug
                logger.error(
                    "assignment round failed",
                    exc_info=exc,
                    extra={EVENT: "assignment_failed"},
                )
                await asyncio.sleep(self._poll_seconds)

    async def assign_queued(self) -> int:
        """One round over the connected workers; returns the jobs assigned."""
        n_assigned = 0
        for session in self._sessions_in_turn():
            n_wanted = session.capacity(stale_after_seconds=self._lease_seconds)
            if n_wanted == 0:
                continue
            leases = await self._store.claim(
                session.worker_id, n_wanted, lease_seconds=self._lease_seconds
            )
            n_assigned += await self._deliver(session, leases)
            if len(leases) < n_wanted:
                break  # nothing more is ready; the other workers would get nothing
        return n_assigned

    def _sessions_in_turn(self) -> list[WorkerSession]:
        # Start each round at a different worker so that, when the queue holds
        # fewer jobs than free slots, the same worker is not always served first.
        sessions = self._registry.sessions()
        if not sessions:
            return sessions
        self._turn = (self._turn + 1) % len(sessions)
        return sessions[self._turn :] + sessions[: self._turn]

    async def _deliver(self, session: WorkerSession, leases: Sequence[Lease]) -> int:
        # The worker may have reconnected while the claim ran; its new stream
        # gets the work.
        target = session
        if session.closed:
            target = self._registry.get(session.worker_id) or session

        n_delivered = 0
        for lease in leases:
            spec = await self._readable_spec(lease)
            if spec is None:
                continue
            fields = {
                JOB_ID: lease.job_id,
                FENCING_TOKEN: lease.fencing_token,
                ATTEMPT: lease.attempt,
                WORKER: lease.worker,
            }
            if target.closed:
                # LIMITATION: a job claimed for a worker whose stream ended
                # during the claim waits for its lease to expire (and uses up
                # an attempt) instead of going back to the queue at once.
                # Rare: it needs a disconnect within one claim's round trip.
                # Resolve: a store call that releases an unstarted lease.
                logger.warning(
                    "worker gone before its assignment was sent",
                    extra={EVENT: "assignment_undelivered", **fields},
                )
                continue
            target.assign(lease, spec)
            n_delivered += 1
            logger.info("attempt assigned", extra={EVENT: "attempt_assigned", **fields})
        return n_delivered

    async def _readable_spec(self, lease: Lease) -> BacktestSpec | None:
        """The lease's spec; None (and the job failed for good) when unreadable."""
        try:
            spec: BacktestSpec | None = BacktestSpec.from_dict(lease.spec)
        except (KeyError, TypeError, ValueError):
            spec = None
        if spec is None or spec.strategy.name not in STRATEGIES:
            logger.error(
                "stored spec unreadable; job failed",
                extra={EVENT: "spec_unreadable", JOB_ID: lease.job_id},
            )
            try:
                await self._store.fail(
                    lease.job_id,
                    lease.fencing_token,
                    "the stored spec could not be read",
                    retryable=False,
                    retry_delay_seconds=0.0,
                )
            except LeaseLost:
                pass
            return None
        return spec
