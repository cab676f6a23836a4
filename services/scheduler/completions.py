"""Records how attempts ended, fenced by the lease's token."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass

from backcast.errors import LeaseLost
from backcast.jobqueue.jobs import JobState, StoredResult
from backcast.jobqueue.store import JobStore
from backcast.scheduler.backoff import retry_delay_seconds
from backcast.scheduler.dispatcher import Dispatcher
from backcast.scheduler.sessions import SessionRegistry
from backcast.telemetry import EVENT, FENCING_TOKEN, JOB_ID, WORKER

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResultReport:
    """A worker's report that the attempt under `fencing_token` succeeded."""

    job_id: int
    fencing_token: int
    worker: str
    result: StoredResult


class Completions:
    """Stores a worker's report of an attempt's end.

    Every store call is idempotent: a retried report that already took effect
    returns the job's final state, and a stale token raises LeaseLost.
    """

    def __init__(
        self, store: JobStore, registry: SessionRegistry, dispatcher: Dispatcher
    ) -> None:
        self._store = store
        self._registry = registry
        self._dispatcher = dispatcher

    async def record_result(
        self, job_id: int, fencing_token: int, worker: str, result: StoredResult
    ) -> JobState:
        stored = self._store.complete(job_id, fencing_token, result)
        return await self._record(job_id, fencing_token, worker, "result", stored)

    async def record_results(
        self, reports: Sequence[ResultReport]
    ) -> list[JobState | LeaseLost]:
        """`record_result` for many reports with one store call; returns, in
        order, each job's final state or the LeaseLost it raised."""
        # A job named twice (a worker bug) has its first report batched and
        # the others recorded alone, where they read as repeats or lost leases.
        firsts: dict[int, ResultReport] = {}
        for report in reports:
            firsts.setdefault(report.job_id, report)
        for report in firsts.values():
            self._mark_finished(report.job_id, report.fencing_token, report.worker)
        states = await self._store.complete_many(
            [(r.job_id, r.fencing_token, r.result) for r in firsts.values()]
        )
        outcomes: list[JobState | LeaseLost] = []
        for report in reports:
            if firsts[report.job_id] is report:
                state = states[report.job_id]
                self._settle(report.job_id, report.fencing_token, report.worker)
                self._log_recorded(
                    report.job_id, report.fencing_token, report.worker, "result", state
                )
                outcomes.append(state)
                continue
            job_id, token, worker = report.job_id, report.fencing_token, report.worker
            try:
                outcomes.append(
                    await self.record_result(job_id, token, worker, report.result)
                )
            except LeaseLost as exc:
                outcomes.append(exc)
        return outcomes

    async def record_failure(
        self,
        job_id: int,
        fencing_token: int,
        worker: str,
        message: str,
        *,
        retryable: bool,
    ) -> JobState:
        # The token counts the job's claims, so it is the attempt number.
        delay = retry_delay_seconds(fencing_token)
        stored = self._store.fail(
            job_id,
            fencing_token,
            message,
            retryable=retryable,
            retry_delay_seconds=delay,
        )
        state = await self._record(job_id, fencing_token, worker, "failure", stored)
        if state is JobState.QUEUED:
            logger.warning(
                "attempt failed; job will be retried",
                extra={
                    EVENT: "retry_scheduled",
                    JOB_ID: job_id,
                    FENCING_TOKEN: fencing_token,
                    "delay_seconds": round(delay, 3),
                },
            )
        return state

    async def record_cancelled(
        self, job_id: int, fencing_token: int, worker: str
    ) -> JobState:
        stored = self._store.acknowledge_cancel(job_id, fencing_token)
        return await self._record(job_id, fencing_token, worker, "cancelled", stored)

    async def _record(
        self,
        job_id: int,
        fencing_token: int,
        worker: str,
        outcome: str,
        stored: Awaitable[JobState],
    ) -> JobState:
        # Marked before the store call: a heartbeat renewed meanwhile finds
        # the job ended and would otherwise take its lease for lost.
        self._mark_finished(job_id, fencing_token, worker)
        try:
            state = await stored
        except LeaseLost as exc:
            self._settle(job_id, fencing_token, worker)
            self._log_recorded(job_id, fencing_token, worker, outcome, exc)
            raise
        self._settle(job_id, fencing_token, worker)
        self._log_recorded(job_id, fencing_token, worker, outcome, state)
        return state

    @staticmethod
    def _log_recorded(
        job_id: int,
        fencing_token: int,
        worker: str,
        outcome: str,
        state: JobState | LeaseLost,
    ) -> None:
        fields = {JOB_ID: job_id, FENCING_TOKEN: fencing_token, WORKER: worker}
        if isinstance(state, LeaseLost):
            logger.warning(
                "report for a lost lease rejected",
                extra={EVENT: "report_rejected", "outcome": outcome, **fields},
            )
            return
        logger.info(
            "attempt recorded",
            extra={
                EVENT: "attempt_recorded",
                "outcome": outcome,
                "state": state.value,
                **fields,
            },
        )

    def _mark_finished(self, job_id: int, fencing_token: int, worker: str) -> None:
        session = self._registry.get(worker)
        if session is not None:
            session.finish(job_id, fencing_token)

    def _settle(self, job_id: int, fencing_token: int, worker: str) -> None:
        self._mark_finished(job_id, fencing_token, worker)
        # The worker's next heartbeat will show the freed slot; waking now
        # costs one cheap claim round at most.
        self._dispatcher.wake()
