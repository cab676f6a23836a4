"""Renewal of the leases a connected worker reports holding."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from backcast.errors import DatabaseUnavailable
from backcast.jobqueue.jobs import HeldLease, JobState
from backcast.jobqueue.store import JobStore
from backcast.scheduler.sessions import CancelReason, WorkerSession
from backcast.telemetry import EVENT, FENCING_TOKEN, JOB_ID, WORKER

logger = logging.getLogger(__name__)


class LeaseKeeper:
    """Renews all of a worker's leases in one statement per heartbeat, and
    tells the worker to stop attempts whose lease is lost or whose job is
    being cancelled.

    Workers also send a heartbeat early whenever a slot frees, to announce
    capacity; with short backtests that is several per second. Renewing on
    those would cost a statement per backtest for nothing, so a worker's
    leases are renewed at most every `min_interval_seconds` (half a
    heartbeat interval: the regular heartbeats still renew every time).
    """

    def __init__(
        self,
        store: JobStore,
        *,
        lease_seconds: float,
        min_interval_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._lease_seconds = lease_seconds
        self._min_interval_seconds = min_interval_seconds
        self._clock = clock

    async def renew(
        self,
        session: WorkerSession,
        leases: Sequence[HeldLease],
        reported: Sequence[HeldLease],
    ) -> None:
        """Renew `leases`; check the ones the worker itself `reported`.

        Skipped when this worker's leases were renewed less than
        `min_interval_seconds` ago, unless the session asks for a renewal
        (its hello listed leases).
        """
        if not leases:
            return
        now = self._clock()
        last = session.renewed_at
        if last is not None and now - last < self._min_interval_seconds:
            return
        session.renewed_at = now
        try:
            renewed = await self._store.renew(
                session.worker_id, leases, lease_seconds=self._lease_seconds
            )
        except DatabaseUnavailable:
            # Retried at the next heartbeat, early or not. Leases that ran
            # out meanwhile are safe: after an outage the reaper waits for
            # the workers' renewals before it requeues anything.
            session.renewed_at = None
            logger.warning(
                "lease renewal failed",
                extra={EVENT: "renew_failed", WORKER: session.worker_id},
            )
            return

        states = {(r.job_id, r.fencing_token): r.state for r in renewed}
        for lease in reported:
            state = states.get((lease.job_id, lease.fencing_token))
            if state is None:
                self._on_lost(session, lease)
            elif state is JobState.CANCELLING:
                self._on_cancelling(session, lease)
        for lease in leases:
            key = (lease.job_id, lease.fencing_token)
            if key not in states and session.is_pending(*key):
                # Assigned, then ended before the worker ever reported it.
                session.forget(lease.job_id)

    def _on_lost(self, session: WorkerSession, lease: HeldLease) -> None:
        if session.was_finished(lease.job_id, lease.fencing_token):
            return  # reported before this heartbeat was processed
        if not session.cancel(
            lease.job_id, lease.fencing_token, CancelReason.LEASE_LOST
        ):
            return
        logger.warning(
            "lease lost; worker told to drop the attempt",
            extra={
                EVENT: "lease_lost",
                JOB_ID: lease.job_id,
                FENCING_TOKEN: lease.fencing_token,
                WORKER: session.worker_id,
            },
        )

    def _on_cancelling(self, session: WorkerSession, lease: HeldLease) -> None:
        if not session.cancel(
            lease.job_id, lease.fencing_token, CancelReason.CANCELLED
        ):
            return
        logger.info(
            "cancel sent to worker",
            extra={
                EVENT: "cancel_sent",
                JOB_ID: lease.job_id,
                FENCING_TOKEN: lease.fencing_token,
                WORKER: session.worker_id,
                "reason": CancelReason.CANCELLED.value,
            },
        )
