"""Connected workers: one session per health stream, with the worker's
capacity, the leases it holds and the messages waiting to be pushed to it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import Enum

from backcast.engine.spec import BacktestSpec
from backcast.jobqueue.jobs import HeldLease, Lease


class CancelReason(Enum):
    """Why a worker must stop an attempt."""

    # A user cancelled the job; the worker reports the attempt as cancelled.
    CANCELLED = "CANCELLED"
    # The lease moved on; the worker drops the attempt without reporting.
    LEASE_LOST = "LEASE_LOST"


@dataclass(frozen=True)
class Assign:
    """Run this leased attempt of the (already read) `spec`."""

    lease: Lease
    spec: BacktestSpec


@dataclass(frozen=True)
class Cancel:
    """Stop the attempt of `job_id` under `fencing_token`."""

    job_id: int
    fencing_token: int
    reason: CancelReason


Push = Assign | Cancel


@dataclass(frozen=True)
class Heartbeat:
    """What a worker reported in one heartbeat."""

    n_free_slots: int
    held: tuple[HeldLease, ...]
    draining: bool


class WorkerSession:
    """The scheduler's view of one worker over one stream.

    Capacity is the free slots of the last heartbeat minus the assignments
    sent that no heartbeat has acknowledged yet, so a heartbeat that crossed
    an assignment on the wire cannot make the scheduler overfill the worker.
    """

    def __init__(
        self,
        worker_id: str,
        n_slots: int,
        version: str,
        *,
        n_prefetch: int = 0,
        takes_batches: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.worker_id = worker_id
        self.n_slots = n_slots
        self.n_prefetch = n_prefetch
        # Whether the worker reads several assignments in one message.
        self.takes_batches = takes_batches
        self.version = version
        self.draining = False
        self.closed = False
        self._clock = clock
        self._n_free_slots = 0
        # Set while assignments go unacknowledged; see record_heartbeat.
        self._unheard = False
        # job id -> fencing token of the assignments given up as unheard; one
        # that a later heartbeat lists arrived late, and the worker hears.
        self._given_up: dict[int, int] = {}
        # When the LeaseKeeper last renewed this worker's leases; None until
        # the first heartbeat, which always renews.
        self.renewed_at: float | None = None
        self._heartbeat_at: float | None = None
        self._n_heartbeats = 0
        # job id -> fencing token, as the worker last reported them
        self._reported: dict[int, int] = {}
        # job id -> (fencing token, heartbeats seen when it was assigned)
        self._pending: dict[int, tuple[int, int]] = {}
        self._finished: set[tuple[int, int]] = set()
        self._cancels_sent: set[tuple[int, int]] = set()
        self._outbox: asyncio.Queue[Push | None] = asyncio.Queue()

    def record_hello(self, held: tuple[HeldLease, ...]) -> None:
        self._reported = {lease.job_id: lease.fencing_token for lease in held}

    def record_heartbeat(self, heartbeat: Heartbeat) -> list[HeldLease]:
        """Take in a heartbeat; return every lease to renew for the worker."""
        self._n_heartbeats += 1
        self._heartbeat_at = self._clock()
        most = self.n_slots + self.n_prefetch
        self._n_free_slots = max(0, min(heartbeat.n_free_slots, most))
        self.draining = heartbeat.draining
        self._reported = {h.job_id: h.fencing_token for h in heartbeat.held}

        # An assignment missing from two heartbeats in a row either ended on
        # the worker between them (its report is on the way) or never reached
        # it: a worker whose heartbeats arrive but which hears nothing back.
        # It no longer takes a slot, and until the worker shows it hears us
        # (a heartbeat lists an assignment, or a report comes) it is given
        # nothing more, which would only burn attempts on leases it never
        # sees.
        for job_id, (token, seen) in list(self._pending.items()):
            if self._reported.get(job_id) == token:
                del self._pending[job_id]
                self._unheard = False
            elif self._n_heartbeats - seen >= 2:
                del self._pending[job_id]
                self._given_up[job_id] = token
                self._unheard = True
        # Messages held up on the way (a stalled network) arrive late: the
        # worker hears again, and the leases of what it holds are checked
        # like any other.
        if self._lists_any(self._given_up):
            self._given_up.clear()
            self._unheard = False
        # Keep only what concerns leases the worker still reports, so these
        # sets stay as small as the worker's slots however long it lives.
        self._finished = {
            key for key in self._finished if self._reported.get(key[0]) == key[1]
        }
        self._cancels_sent = {
            key for key in self._cancels_sent if self._reported.get(key[0]) == key[1]
        }

        pending = [HeldLease(job, token) for job, (token, _) in self._pending.items()]
        return [*heartbeat.held, *pending]

    def _lists_any(self, tokens: dict[int, int]) -> bool:
        """Whether the last heartbeat holds any of `tokens` (job id -> token)."""
        reported = self._reported
        return any(reported.get(job_id) == token for job_id, token in tokens.items())

    def capacity(self, stale_after_seconds: float) -> int:
        """How many more attempts the worker can start right now."""
        if self.closed or self.draining or self._heartbeat_at is None:
            return 0
        if self._unheard:
            return 0
        # A worker whose heartbeats stopped is not trusted with new work even
        # while its stream stays open.
        if self._clock() - self._heartbeat_at > stale_after_seconds:
            return 0
        return max(0, self._n_free_slots - len(self._pending))

    def assign(self, lease: Lease, spec: BacktestSpec) -> None:
        self._pending[lease.job_id] = (lease.fencing_token, self._n_heartbeats)
        self._outbox.put_nowait(Assign(lease, spec))

    def cancel(self, job_id: int, fencing_token: int, reason: CancelReason) -> bool:
        """Push a cancel unless this stream already carried it; True if pushed."""
        key = (job_id, fencing_token)
        if self.closed or key in self._cancels_sent:
            return False
        self._cancels_sent.add(key)
        if reason is CancelReason.LEASE_LOST:
            self.forget(job_id)
        self._outbox.put_nowait(Cancel(job_id, fencing_token, reason))
        return True

    def token_of(self, job_id: int) -> int | None:
        """The fencing token under which the worker holds `job_id`, if any."""
        pending = self._pending.get(job_id)
        if pending is not None:
            return pending[0]
        return self._reported.get(job_id)

    def finish(self, job_id: int, fencing_token: int) -> None:
        """The attempt was reported; later heartbeats may still list it.

        A report proves the worker received what it was assigned. It is
        kept even when no heartbeat has listed the attempt yet: one sent
        before the report may arrive after it, and must not read as a lost
        lease. The next heartbeat that no longer lists it drops it.
        """
        self._unheard = False
        self._given_up.clear()
        if self._pending.get(job_id, (None, 0))[0] == fencing_token:
            del self._pending[job_id]
        self._finished.add((job_id, fencing_token))

    def was_finished(self, job_id: int, fencing_token: int) -> bool:
        return (job_id, fencing_token) in self._finished

    def is_pending(self, job_id: int, fencing_token: int) -> bool:
        return self._pending.get(job_id, (None, 0))[0] == fencing_token

    def forget(self, job_id: int) -> None:
        self._pending.pop(job_id, None)
        self._reported.pop(job_id, None)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._outbox.put_nowait(None)

    async def pushes(self) -> AsyncIterator[list[Push]]:
        """Messages for the worker, in order, until the session closes; each
        time, all that queued up since the last (one claim's assignments
        come together)."""
        while True:
            group: list[Push] = []
            push = await self._outbox.get()
            while push is not None:
                group.append(push)
                if self._outbox.empty():
                    break
                push = self._outbox.get_nowait()
            if group:
                yield group
            if push is None:
                return


class SessionRegistry:
    """The live sessions of this scheduler, one per worker id."""

    def __init__(self) -> None:
        self._sessions: dict[str, WorkerSession] = {}
        self.closing = False

    def add(self, session: WorkerSession) -> WorkerSession | None:
        """Register `session`; a previous session of the same worker is closed
        and returned (the worker reconnected)."""
        previous = self._sessions.get(session.worker_id)
        self._sessions[session.worker_id] = session
        if previous is not None:
            previous.close()
        return previous

    def remove(self, session: WorkerSession) -> None:
        if self._sessions.get(session.worker_id) is session:
            del self._sessions[session.worker_id]

    def get(self, worker_id: str) -> WorkerSession | None:
        return self._sessions.get(worker_id)

    def sessions(self) -> list[WorkerSession]:
        return list(self._sessions.values())

    def holder_of(self, job_id: int) -> tuple[WorkerSession, int] | None:
        """The session holding `job_id` and its fencing token, if connected here."""
        for session in self._sessions.values():
            token = session.token_of(job_id)
            if token is not None:
                return session, token
        return None

    def close_all(self) -> None:
        """End every stream and refuse new ones (the scheduler is stopping)."""
        self.closing = True
        for session in self._sessions.values():
            session.close()
        self._sessions.clear()
