"""Takes back the leases that live workers stopped renewing."""

from __future__ import annotations

import asyncio
import logging

from backcast.errors import DatabaseUnavailable
from backcast.jobqueue.store import JobStore
from backcast.telemetry import ATTEMPT, EVENT, FENCING_TOKEN, JOB_ID

logger = logging.getLogger(__name__)


class Reaper:
    """Every `interval_seconds`, requeues or ends jobs whose lease expired.

    Any number of scheduler replicas may reap at once: the store skips rows
    another replica has locked.
    """

    def __init__(
        self,
        store: JobStore,
        *,
        interval_seconds: float,
        recovery_grace_seconds: float = 0.0,
    ) -> None:
        self._store = store
        self._interval_seconds = interval_seconds
        self._recovery_grace_seconds = recovery_grace_seconds
        self._database_lost = False

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_seconds)
            try:
                if self._database_lost:
                    await self._wait_for_renewals()
                await self.reap()
            except DatabaseUnavailable:
                self._database_lost = True
                logger.warning(
                    "reaping expired leases failed; retrying",
                    extra={EVENT: "reap_failed"},
                )
            except Exception as exc:  # noqa: BLE001 - the loop must outlive a bug
                logger.error(
                    "reaping expired leases failed",
                    exc_info=exc,
                    extra={EVENT: "reap_failed"},
                )

    async def _wait_for_renewals(self) -> None:
        # Every lease ran out while the database was away, live workers'
        # too: their renewals failed with it. Reaping the moment it is back
        # would requeue jobs that are still running, so the workers' next
        # heartbeats get the grace period to renew them first.
        await self._store.ping()
        self._database_lost = False
        logger.info(
            "database back; reaping resumes after the workers renew",
            extra={
                EVENT: "reap_resuming",
                "grace_seconds": self._recovery_grace_seconds,
            },
        )
        await asyncio.sleep(self._recovery_grace_seconds)

    async def reap(self) -> int:
        """One pass; returns how many jobs changed state."""
        # Requeued ready at once: the worker died, not the backtest, so no
        # backoff is owed, and another worker should start it right away.
        reaped = await self._store.reap_expired(retry_delay_seconds=0.0)
        for job in reaped:
            logger.warning(
                "lease expired",
                extra={
                    EVENT: "lease_expired",
                    JOB_ID: job.job_id,
                    FENCING_TOKEN: job.fencing_token,
                    ATTEMPT: job.attempt,
                    "state": job.state.value,
                },
            )
        return len(reaped)
