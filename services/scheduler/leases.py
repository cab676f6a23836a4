"""Renewal of the leases a connected worker reports holding."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from backcast.errors import DatabaseUnavailable
from backcast.jobqueue.jobs import HeldLease, JobState
from backcast.jobqueue.store import JobStore
from backcast.scheduler.sessions import CancelReason, WorkerSession
from backcast.telemetry import EVENT, FENCING_TOKEN, JOB_ID, WORKER

logger = logging.getLogger(__name__)


class LeaseKeeper:
    """Renews all of a worker's leases in one statement per heartbeat, and
    tells the worker to stop attempts whose lease is lost or whose job is
    being cancelled."""

    def __init__(self, store: JobStore, *, lease_seconds: float) -> None:
        self._store = store
        self._lease_seconds = lease_seconds

    async def renew(
        self,
        session: WorkerSession,
        leases: Sequence[HeldLease],
        reported: Sequence[HeldLease],
    ) -> None:
        """Renew `leases`; check the ones the worker itself `reported`."""
        if not leases:
            return
        try:
            renewed = await self._store.renew(
                session.worker_id, leases, lease_seconds=self._lease_seconds
            )
        except DatabaseUnavailable:
            # LIMITATION: a failed renewal is not retried before the next
            # heartbeat; heartbeats come at least twice per lease, so only an
            # outage longer than half a lease lets a live worker's job be
            # requeued (it then runs twice; only the later result is kept).
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
