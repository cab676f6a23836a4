"""Relays a user's cancel of a running job to the worker that runs it."""

from __future__ import annotations

import logging

from backcast.scheduler.sessions import CancelReason, SessionRegistry
from backcast.telemetry import EVENT, FENCING_TOKEN, JOB_ID, WORKER

logger = logging.getLogger(__name__)


class CancelRelay:
    """Handles `backcast_job_cancels` notifications.

    Only the scheduler holding the worker's stream can push the cancel; every
    other replica ignores the notification. A notification missed while the
    listener was down is caught by the next heartbeat, whose renewal reports
    the job as cancelling.
    """

    def __init__(self, registry: SessionRegistry) -> None:
        self._registry = registry

    def on_notification(self, payload: str) -> None:
        try:
            job_id = int(payload)
        except ValueError:
            logger.warning(
                "cancel notification without a job id",
                extra={EVENT: "cancel_notification_invalid"},
            )
            return
        self.relay(job_id)

    def relay(self, job_id: int) -> bool:
        """Push a cancel for `job_id` if its worker is connected here."""
        holder = self._registry.holder_of(job_id)
        if holder is None:
            return False
        session, fencing_token = holder
        if not session.cancel(job_id, fencing_token, CancelReason.CANCELLED):
            return False
        logger.info(
            "cancel sent to worker",
            extra={
                EVENT: "cancel_sent",
                JOB_ID: job_id,
                FENCING_TOKEN: fencing_token,
                WORKER: session.worker_id,
                "reason": CancelReason.CANCELLED.value,
            },
        )
        return True
