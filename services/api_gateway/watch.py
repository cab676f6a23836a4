"""Change feed for WatchBacktest: one LISTEN connection fanned out to waiters.

A trigger on `jobs` notifies `backcast_job_events` with the job id at every
change of state or progress. One connection per gateway listens and wakes
the watchers of that job; each watcher then re-reads its job, so the
notification is only a hint and PostgreSQL stays the truth. Watchers also
re-read on a slow timer, which covers notifications lost while the listening
connection was down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
from psycopg import sql

from backcast.errors import Unavailable
from backcast.jobqueue.jobs import Job
from backcast.jobqueue.store import JOB_EVENTS_CHANNEL, JobStore
from backcast.telemetry import EVENT, JOB_ID

logger = logging.getLogger(__name__)

# Names the listening session in pg_stat_activity.
APPLICATION_NAME = "backcast-gateway-job-events"
_MIN_RETRY_SECONDS = 0.2
_MAX_RETRY_SECONDS = 5.0


class JobEvents:
    """Wakes the waiters of a job when PostgreSQL announces a change to it."""

    def __init__(self, database_url: str, *, check_seconds: float = 15.0) -> None:
        self._url = database_url
        self._check_seconds = check_seconds
        self._waiters: dict[int, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        # Set while LISTEN is active; lets tests and probes wait for it.
        self.listening = asyncio.Event()

    @property
    def closed(self) -> bool:
        return self._closed

    def start(self) -> None:
        """Start listening in the background; reconnects until `close`."""
        self._task = asyncio.create_task(self._listen_forever(), name="job-events")

    async def close(self) -> None:
        """Stop listening and wake every waiter, which then sees `closed`."""
        self._closed = True
        self._wake_all()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.listening.clear()

    @contextlib.contextmanager
    def subscribe(self, job_id: int) -> Iterator[asyncio.Event]:
        """An event set whenever job `job_id` may have changed."""
        changed = asyncio.Event()
        if self._closed:
            changed.set()
        self._waiters.setdefault(job_id, set()).add(changed)
        try:
            yield changed
        finally:
            waiters = self._waiters.get(job_id, set())
            waiters.discard(changed)
            if not waiters:
                self._waiters.pop(job_id, None)

    async def _listen_forever(self) -> None:
        delay = _MIN_RETRY_SECONDS
        while True:
            try:
                async with await self._connect() as conn:
                    await self._start_listening(conn)
                    delay = _MIN_RETRY_SECONDS
                    await self._relay(conn)
            except (psycopg.Error, OSError, TimeoutError):
                logger.warning(
                    "job events connection lost",
                    extra={EVENT: "job_events_disconnected"},
                )
            except Exception:
                # Watchers still poll, so keep going rather than end the feed.
                logger.error(
                    "job events listener failed",
                    exc_info=True,
                    extra={EVENT: "job_events_failed"},
                )
            self.listening.clear()
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, _MAX_RETRY_SECONDS)

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        # libpq TCP keepalive, so a silently dead server is noticed within
        # about 25 s instead of the kernel's default of hours.
        return await psycopg.AsyncConnection.connect(
            self._url,
            autocommit=True,
            application_name=APPLICATION_NAME,
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
        )

    # LIMITATION: LISTEN needs a session; behind a transaction-mode pooler
    # (PgBouncer) no notification arrives and watches fall back to the poll.
    async def _start_listening(self, conn: psycopg.AsyncConnection[Any]) -> None:
        channel = sql.Identifier(JOB_EVENTS_CHANNEL)
        await conn.execute(sql.SQL("LISTEN {}").format(channel))
        self.listening.set()
        # Notifications sent while no connection listened are lost; waking
        # everyone makes each watcher re-read its job once.
        self._wake_all()
        logger.info("listening for job events", extra={EVENT: "job_events_listening"})

    async def _relay(self, conn: psycopg.AsyncConnection[Any]) -> None:
        while True:
            async for notify in conn.notifies(timeout=self._check_seconds):
                self._wake(notify.payload)
            # A quiet spell: make sure the connection is still alive.
            await asyncio.wait_for(conn.execute("SELECT 1"), self._check_seconds)

    def _wake(self, payload: str) -> None:
        try:
            job_id = int(payload)
        except ValueError:
            logger.debug("ignored job event", extra={EVENT: "job_event_ignored"})
            return
        for changed in self._waiters.get(job_id, ()):
            changed.set()

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for changed in waiters:
                changed.set()


async def watch_job(
    store: JobStore,
    events: JobEvents,
    owner: str,
    job_id: int,
    *,
    poll_seconds: float,
) -> AsyncIterator[Job]:
    """The job now, then each changed snapshot, until a terminal state.

    Raises:
        JobNotFound: when the owner has no such job.
        Unavailable: when the gateway stops first; watch again elsewhere.
    """
    # Subscribe before the first read, so a change right after it still wakes us.
    with events.subscribe(job_id) as changed:
        job = await store.get(owner, job_id)
        yield job

        while not job.state.is_terminal:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), poll_seconds)
            if events.closed:
                logger.debug(
                    "watch ended by stop",
                    extra={EVENT: "watch_stopped", JOB_ID: job_id},
                )
                raise Unavailable("gateway is stopping; watch again to resume")

            # LIMITATION: one read per watch and wake-up; thousands of watches
            # on busy jobs load the pool. Resolve by one shared read per job.
            changed.clear()
            latest = await store.get(owner, job_id)
            if _differs(latest, job):
                job = latest
                yield job


def _differs(a: Job, b: Job) -> bool:
    return _version(a) != _version(b)


def _version(job: Job) -> tuple[object, ...]:
    return (job.state, job.progress, job.attempt, job.updated_at)
