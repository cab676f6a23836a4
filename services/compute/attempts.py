"""The attempts a worker holds: waiting for a slot, running in one, or being
reported. Every one of them keeps its lease renewed until its report lands."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from enum import Enum
from typing import Any

from backcast.compute.reporting import AttemptRef, Cancelled, Report, Reporter
from backcast.compute.slots import Failed, Outcome, Slot, SlotPool, Stopped, Succeeded
from backcast.jobqueue.jobs import HeldLease
from backcast.telemetry import ATTEMPT, EVENT, FENCING_TOKEN, JOB_ID, SLOT, WORKER

logger = logging.getLogger(__name__)


class StopReason(Enum):
    """Why the scheduler told the worker to stop an attempt."""

    CANCELLED = "CANCELLED"
    LEASE_LOST = "LEASE_LOST"


@dataclass(frozen=True)
class Assignment:
    """An attempt the scheduler leased to this worker.

    `problem` is set (and `spec` None) when the spec failed validation here;
    such an attempt is reported as a failure another attempt cannot fix.
    """

    ref: AttemptRef
    spec: dict[str, Any] | None
    problem: str | None = None


@dataclass(eq=False)
class _Attempt:
    ref: AttemptRef
    spec: dict[str, Any] | None
    progress: float = 0.0
    slot: Slot | None = None
    # Index of the slot the attempt ran in, kept for logs after it ended.
    slot_index: int | None = None
    stop_reason: StopReason | None = None


class AttemptRunner:
    """Runs assigned attempts in the slot pool and reports how they end."""

    def __init__(
        self,
        slots: SlotPool,
        reporter: Reporter,
        worker_id: str,
        *,
        prefetch: int = 0,
    ) -> None:
        self._slots = slots
        self._prefetch = prefetch
        self._reporter = reporter
        self._worker_id = worker_id
        self._attempts: dict[int, _Attempt] = {}
        self._waiting: deque[_Attempt] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        # Set when a heartbeat should go out early (a slot freed up).
        self.changed = asyncio.Event()

    @property
    def n_slots(self) -> int:
        return self._slots.n_slots

    @property
    def prefetch(self) -> int:
        return self._prefetch

    def n_free_slots(self) -> int:
        """Attempts this worker can take now: its free slots, plus room for
        `prefetch` attempts waiting for a slot.

        Attempts waiting here start the moment a slot frees, without a
        round trip to the scheduler, which keeps slots busy when backtests
        are short; they hold their leases (renewed) while they wait.
        """
        return max(0, self._slots.n_free + self._prefetch - len(self._waiting))

    def held_leases(self) -> list[HeldLease]:
        return [
            HeldLease(a.ref.job_id, a.ref.fencing_token, a.progress)
            for a in self._attempts.values()
        ]

    def start(self, assignment: Assignment) -> None:
        ref = assignment.ref
        existing = self._attempts.get(ref.job_id)
        attempt = _Attempt(ref, assignment.spec)
        if existing is not None:
            if existing.ref.fencing_token == ref.fencing_token:
                return  # the same assignment again; it is already ours
            # A newer lease of the same job: the old attempt's lease is gone.
            self.stop(
                existing.ref.job_id, existing.ref.fencing_token, StopReason.LEASE_LOST
            )
            self._attempts.pop(ref.job_id, None)

        self._attempts[ref.job_id] = attempt
        self._idle.clear()
        logger.info(
            "attempt received",
            extra={EVENT: "attempt_received", **self._fields(attempt)},
        )
        if assignment.problem is not None:
            failure = Failed(assignment.problem, retryable=False)
            self._spawn(self._conclude(attempt, failure))
            return
        if self._slots.n_free == 0 and len(self._waiting) >= self._prefetch:
            logger.warning(
                "assignment beyond free slots and prefetch; waiting for a slot",
                extra={EVENT: "attempt_waiting", **self._fields(attempt)},
            )
        self._waiting.append(attempt)
        self._start_waiting()

    def stop(self, job_id: int, fencing_token: int, reason: StopReason) -> None:
        """Stop the attempt; a cancelled one is reported, a lost one dropped."""
        attempt = self._attempts.get(job_id)
        if attempt is None or attempt.ref.fencing_token != fencing_token:
            return
        if attempt.stop_reason is not None:
            return
        if attempt.slot is None and attempt not in self._waiting:
            return  # it already ended and is being reported

        attempt.stop_reason = reason
        fields = self._fields(attempt)
        if reason is StopReason.LEASE_LOST:
            logger.warning(
                "lease lost; attempt stopped",
                extra={EVENT: "attempt_lease_lost", **fields},
            )
        else:
            logger.info(
                "attempt cancelled", extra={EVENT: "attempt_cancelled", **fields}
            )
        if attempt.slot is not None:
            attempt.slot.stop()  # its task sees Stopped and reports or drops
        else:
            self._waiting.remove(attempt)
            self.changed.set()  # its room among the prefetched is free again
            self._spawn(self._conclude(attempt, Stopped()))

    async def wait_idle(self) -> None:
        """Return once no attempt is held (all ran and were reported)."""
        await self._idle.wait()

    @property
    def is_idle(self) -> bool:
        return self._idle.is_set()

    def close(self) -> None:
        """Kill every slot and forget every attempt; their leases expire."""
        for task in self._tasks:
            task.cancel()
        self._reporter.close()
        self._slots.close()

    def _start_waiting(self) -> None:
        while self._waiting:
            slot = self._slots.free_slot()
            if slot is None:
                return
            attempt = self._waiting.popleft()
            assert attempt.spec is not None
            attempt.slot = slot
            attempt.slot_index = slot.index
            outcome = slot.run(attempt.spec, functools.partial(_set_progress, attempt))
            self._spawn(self._await_outcome(attempt, outcome))
            logger.info(
                "attempt started",
                extra={EVENT: "attempt_started", **self._fields(attempt)},
            )

    async def _await_outcome(
        self, attempt: _Attempt, outcome: asyncio.Future[Outcome]
    ) -> None:
        result = await outcome
        attempt.slot = None
        self._start_waiting()
        # The report that follows changes no capacity and waits for the next
        # regular heartbeat.
        if self._wants_work():
            self.changed.set()
        await self._conclude(attempt, result)

    def _wants_work(self) -> bool:
        """Whether freed room is worth a heartbeat now.

        An idle slot always is. Room among the prefetched is announced once
        half of it is free, so that short backtests are claimed and
        assigned in batches rather than one per freed slot; the other half
        keeps the slots busy while the batch is on its way.
        """
        if self._slots.n_free > 0 and not self._waiting:
            return True
        return self.n_free_slots() >= max(1, self._prefetch // 2)

    async def _conclude(self, attempt: _Attempt, outcome: Outcome) -> None:
        try:
            report = self._report_of(attempt, outcome)
            if report is not None:
                await self._reporter.report(attempt.ref, report)
        except Exception as exc:  # noqa: BLE001 - the lease expires; it runs again
            logger.error(
                "reporting the attempt failed",
                exc_info=exc,
                extra={EVENT: "report_failed", **self._fields(attempt)},
            )
        finally:
            if self._attempts.get(attempt.ref.job_id) is attempt:
                del self._attempts[attempt.ref.job_id]
            if not self._attempts:
                self._idle.set()

    def _report_of(self, attempt: _Attempt, outcome: Outcome) -> Report | None:
        fields = self._fields(attempt)
        if isinstance(outcome, Stopped):
            if attempt.stop_reason is StopReason.CANCELLED:
                return Cancelled()
            return None  # the lease is gone: nobody wants this attempt's outcome
        if isinstance(outcome, Succeeded):
            logger.info(
                "attempt succeeded", extra={EVENT: "attempt_succeeded", **fields}
            )
        else:
            logger.info(
                "attempt failed",
                extra={
                    EVENT: "attempt_failed",
                    "retryable": outcome.retryable,
                    **fields,
                },
            )
        return outcome

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _fields(self, attempt: _Attempt) -> dict[str, Any]:
        fields: dict[str, Any] = {
            JOB_ID: attempt.ref.job_id,
            FENCING_TOKEN: attempt.ref.fencing_token,
            ATTEMPT: attempt.ref.attempt,
            WORKER: self._worker_id,
        }
        if attempt.slot_index is not None:
            fields[SLOT] = attempt.slot_index
        return fields


def _set_progress(attempt: _Attempt, fraction: float) -> None:
    attempt.progress = min(1.0, max(0.0, fraction))
