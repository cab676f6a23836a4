"""Deletes finished jobs once they are older than the retention period.

Queued and running jobs live in partial indexes that finished jobs never
enter, so history does not slow the queue; pruning keeps the table, its
other indexes and the results from growing without bound.
"""

from __future__ import annotations

import asyncio
import logging

from backcast.errors import DatabaseUnavailable
from backcast.jobqueue.store import JobStore
from backcast.telemetry import EVENT

logger = logging.getLogger(__name__)

# Jobs deleted per statement: short transactions that hold few row locks.
BATCH_SIZE = 1000


async def warn_if_autovacuum_is_off(store: JobStore) -> bool:
    """Log a warning when the server does not vacuum; returns whether it did.

    Every state change leaves a dead row version in `jobs` and entries in
    its indexes. Without autovacuum they pile up until a manual VACUUM, and
    every read of the table walks past them (on a test server with it off,
    counting one owner's 20,000 jobs had grown to 40 ms after three drains).
    """
    try:
        enabled = await store.autovacuum_enabled()
    except DatabaseUnavailable:
        return False  # nothing to say about a server that is not there
    if enabled:
        return False
    logger.warning(
        "autovacuum is off on the job database; the jobs table and its queue "
        "indexes will bloat and claims slow down: turn it on, or VACUUM jobs "
        "regularly",
        extra={EVENT: "autovacuum_off"},
    )
    return True


class HistoryPruner:
    """Every `interval_seconds`, deletes jobs finished more than
    `retention_seconds` ago, with their results and attempts."""

    def __init__(
        self, store: JobStore, *, retention_seconds: float, interval_seconds: float
    ) -> None:
        self._store = store
        self._retention_seconds = retention_seconds
        self._interval_seconds = interval_seconds

    async def run(self) -> None:
        while True:
            try:
                await self.prune()
            except DatabaseUnavailable:
                logger.warning(
                    "pruning finished jobs failed; retrying",
                    extra={EVENT: "prune_failed"},
                )
            except Exception as exc:  # noqa: BLE001 - the loop must outlive a bug
                logger.error(
                    "pruning finished jobs failed",
                    exc_info=exc,
                    extra={EVENT: "prune_failed"},
                )
            await asyncio.sleep(self._interval_seconds)

    async def prune(self) -> int:
        """Delete batches until none is full; returns how many jobs went."""
        total = 0
        while True:
            deleted = await self._store.prune_finished(
                retention_seconds=self._retention_seconds, limit=BATCH_SIZE
            )
            total += deleted
            if deleted < BATCH_SIZE:
                break
        if total:
            logger.info(
                "finished jobs pruned",
                extra={EVENT: "jobs_pruned", "n_jobs": total},
            )
        return total
