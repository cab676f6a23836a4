"""The job store: jobs and leases in PostgreSQL, the single source of truth.

The gateway submits, reads and cancels jobs; the scheduler claims, renews
and finishes them. Every write a worker makes through the scheduler is
fenced: it names the lease's fencing token and takes effect only while that
token is current.
"""

from __future__ import annotations

import logging
import select
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, LiteralString

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

# The one engine fact the store needs: the size of a stored trade record,
# to read a page of trades as a slice.
from backcast.engine.results import TRADE_RECORD_BYTES
from backcast.errors import (
    DatabaseUnavailable,
    JobAlreadyFinished,
    JobNotFound,
    LeaseLost,
    RequestIdReused,
    ResultNotReady,
)
from backcast.jobqueue import statements
from backcast.jobqueue.jobs import (
    Attempt,
    AttemptOutcome,
    HeldLease,
    Job,
    JobState,
    Lease,
    NewJob,
    ReapedJob,
    RenewedLease,
    ResultPage,
    StoredResult,
)
from backcast.telemetry import EVENT, JOB_ID, OWNER, WORKER

logger = logging.getLogger(__name__)

# Sent by the `jobs_notify` triggers; the names are fixed by the migrations.
# A job's events start with its first change: nobody can watch it earlier.
JOB_EVENTS_CHANNEL = "backcast_job_events"  # payload: job id, on any change
JOBS_QUEUED_CHANNEL = "backcast_jobs_queued"  # empty payload: work to claim
JOB_CANCELS_CHANNEL = "backcast_job_cancels"  # payload: id of a cancelled job

_MAX_JOB_ID = 2**63 - 1
# An engine error can quote a whole traceback; the job keeps its head.
_MAX_ERROR_MESSAGE_CHARS = 4000
_ALL_STATES = [state.value for state in JobState]

Row = DictRow
Connection = psycopg.AsyncConnection[DictRow]


class JobStore:
    """Jobs, leases and results on a pool of PostgreSQL connections."""

    def __init__(self, pool: AsyncConnectionPool[Connection]) -> None:
        self._pool = pool

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        timeout_seconds: float = 10.0,
    ) -> JobStore:
        """Connect a pool to `url` (a libpq URL) and wait for its first connection.

        `timeout_seconds` bounds how long opening, and later each call, waits
        for a connection before giving up with DatabaseUnavailable.

        Raises:
            DatabaseUnavailable: no connection could be made in time.
        """
        pool = AsyncConnectionPool(
            url,
            connection_class=Connection,
            min_size=min_size,
            max_size=max_size,
            kwargs={"autocommit": True, "row_factory": dict_row},
            # A connection that died while idle (server restart, terminated
            # backend) is replaced on checkout rather than failing the call.
            check=_check_if_closed_by_server,
            timeout=timeout_seconds,
            open=False,
            name="backcast-jobs",
        )
        try:
            await pool.open(wait=True, timeout=timeout_seconds)
        except psycopg.OperationalError as exc:
            await pool.close()
            raise DatabaseUnavailable() from exc
        return cls(pool)

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        try:
            async with self._pool.connection() as conn:
                yield conn
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable() from exc

    # The hot statements (claim, renew, complete, get, list) pass prepare=True
    # so each pooled connection parses and plans them once. PgBouncer in
    # transaction mode supports this from version 1.21 (max_prepared_statements).
    async def _fetch_one(
        self, query: LiteralString, params: Mapping[str, Any], *, prepare: bool = False
    ) -> Row | None:
        async with self._connection() as conn:
            cursor = await conn.execute(query, params, prepare=prepare or None)
            return await cursor.fetchone()

    async def _fetch_all(
        self, query: LiteralString, params: Mapping[str, Any], *, prepare: bool = False
    ) -> list[Row]:
        async with self._connection() as conn:
            cursor = await conn.execute(query, params, prepare=prepare or None)
            return await cursor.fetchall()

    async def ping(self) -> None:
        """Return once the database answers; DatabaseUnavailable if it does not."""
        await self._fetch_one("SELECT 1", {})

    async def autovacuum_enabled(self) -> bool:
        """Whether the server runs autovacuum (the `autovacuum` setting)."""
        row = await self._fetch_one("SELECT current_setting('autovacuum') AS on", {})
        return row is not None and row["on"] == "on"

    # --- gateway side -------------------------------------------------------

    async def submit(
        self,
        owner: str,
        spec: dict[str, Any],
        *,
        priority: int,
        max_attempts: int,
        request_id: str | None,
    ) -> Job:
        """Queue a job, or return the one an earlier submit with `request_id` made.

        Raises:
            RequestIdReused: `request_id` was used before for another request.
        """
        params = {
            "owner": owner,
            "request_id": request_id,
            "spec": Jsonb(spec),
            "priority": priority,
            "max_attempts": max_attempts,
        }
        async with self._connection() as conn:
            cursor = await conn.execute(statements.SUBMIT_JOB, params)
            row = await cursor.fetchone()
            if row is None:
                # The insert found the request id taken, and waited for its
                # transaction to commit: this read sees the row.
                cursor = await conn.execute(statements.GET_JOB_BY_REQUEST_ID, params)
                row = await cursor.fetchone()
                if row is None:
                    raise RuntimeError("job of a conflicting request id vanished")
                return self._existing_submission(row, request_id)

        job = job_from_row(row)
        logger.debug(
            "job submitted",
            extra={EVENT: "job_submitted", JOB_ID: job.id, OWNER: owner},
        )
        return job

    async def submit_many(self, owner: str, items: Sequence[NewJob]) -> list[Job]:
        """Queue every item in one transaction, or none; jobs in item order.

        An item whose request id an earlier submit used gets that job back,
        as `submit` does. Request ids must differ between the items.

        Raises:
            RequestIdReused: an item's request id was used before for
                another request; nothing of the batch is queued.
        """
        params = {
            "owner": owner,
            "request_ids": [item.request_id for item in items],
            # One JSON array, not a jsonb[]: array text needs every spec
            # escaped again, which costs more than the insert itself.
            "specs": Jsonb([item.spec for item in items]),
            "priorities": [item.priority for item in items],
            "max_attempts": [item.max_attempts for item in items],
        }
        async with self._connection() as conn, conn.transaction():
            cursor = await conn.execute(statements.SUBMIT_JOBS, params)
            inserted = await cursor.fetchall()
            existing: list[Row] = []
            if len(inserted) < len(items):
                cursor = await conn.execute(statements.GET_JOBS_BY_REQUEST_IDS, params)
                existing = await cursor.fetchall()
                for row in existing:
                    # Raising here rolls the whole batch back.
                    self._existing_submission(row, row["request_id"])
        jobs = _in_item_order(items, inserted, existing)
        logger.debug(
            "jobs submitted",
            extra={EVENT: "jobs_submitted", OWNER: owner, "n_jobs": len(jobs)},
        )
        return jobs

    @staticmethod
    def _existing_submission(row: Row, request_id: str | None) -> Job:
        job = job_from_row(row)
        if not row["same_request"]:
            assert request_id is not None
            raise RequestIdReused(request_id, job.id)
        logger.debug(
            "submit repeated",
            extra={EVENT: "job_submit_repeated", JOB_ID: job.id, OWNER: job.owner},
        )
        return job

    async def get(self, owner: str, job_id: int) -> Job:
        """The job `job_id` of `owner`; JobNotFound if absent or someone else's."""
        params = {"owner": owner, "job_id": job_id}
        row = await self._fetch_one(statements.GET_JOB, params, prepare=True)
        if row is None:
            raise JobNotFound(job_id)
        return job_from_row(row)

    async def attempts(self, owner: str, job_id: int) -> list[Attempt]:
        """Every attempt of `owner`'s job `job_id`, oldest first; [] if none
        (not yet run, absent, or someone else's)."""
        params = {"owner": owner, "job_id": job_id}
        rows = await self._fetch_all(statements.LIST_ATTEMPTS, params, prepare=True)
        return [
            Attempt(
                number=row["attempt"],
                worker=row["worker"],
                outcome=AttemptOutcome(row["outcome"]),
                error_message=row["error_message"],
                started_at=row["started_at"],
                finished_at=row["finished_at"],
            )
            for row in rows
        ]

    async def get_result(
        self, owner: str, job_id: int, *, first_trade: int, max_trades: int
    ) -> tuple[Job, ResultPage]:
        """The job and its result with trades `first_trade` up to
        `first_trade + max_trades` (fewer at the end).

        Raises:
            JobNotFound: no such job for this owner.
            ResultNotReady: the job has not succeeded.
        """
        params = {
            "owner": owner,
            "job_id": job_id,
            "first_trade": first_trade,
            "max_trades": max_trades,
            "record_bytes": TRADE_RECORD_BYTES,
        }
        row = await self._fetch_one(statements.GET_JOB_WITH_RESULT_PAGE, params)
        if row is None:
            raise JobNotFound(job_id)
        job = job_from_row(row)
        if job.state is not JobState.SUCCEEDED or row["summary"] is None:
            raise ResultNotReady(job_id, job.state.name)
        page = ResultPage(
            metrics=row["summary"],
            trade_records=row["trade_records"],
            total_trades=row["total_trades"],
            equity_points=row["equity_points"],
        )
        return job, page

    async def get_account_fills(
        self, owner: str, job_id: int
    ) -> tuple[Job, bytes | None, str | None]:
        """The job, its result's account fills (`AccountFills.to_bytes()`
        form) and the data version of its candles; None for either when the
        result was stored without it.

        Raises:
            JobNotFound: no such job for this owner.
            ResultNotReady: the job has not succeeded.
        """
        params = {"owner": owner, "job_id": job_id}
        row = await self._fetch_one(statements.GET_JOB_WITH_ACCOUNT_FILLS, params)
        if row is None:
            raise JobNotFound(job_id)
        job = job_from_row(row)
        if job.state is not JobState.SUCCEEDED or row["summary"] is None:
            raise ResultNotReady(job_id, job.state.name)
        return job, row["account_fills"], row["data_version"]

    async def list_jobs(
        self,
        owner: str,
        *,
        states: Sequence[JobState],
        limit: int,
        before_id: int | None,
    ) -> list[Job]:
        """`owner`'s jobs newest first, below `before_id`; no states means all."""
        params = {
            "owner": owner,
            "states": [state.value for state in states] or _ALL_STATES,
            "limit": limit,
            "before_id": _MAX_JOB_ID if before_id is None else before_id,
        }
        rows = await self._fetch_all(statements.LIST_JOBS, params, prepare=True)
        return [job_from_row(row) for row in rows]

    async def cancel(self, owner: str, job_id: int) -> Job:
        """Cancel a job: queued ones at once, running ones via their worker.

        A job already cancelling or cancelled is returned as it is.

        Raises:
            JobNotFound: no such job for this owner.
            JobAlreadyFinished: the job succeeded or failed.
        """
        params = {"owner": owner, "job_id": job_id}
        row = await self._fetch_one(statements.CANCEL_JOB, params)
        if row is not None:
            job = job_from_row(row)
            logger.debug(
                "job cancel requested",
                extra={EVENT: "job_cancel_requested", JOB_ID: job_id, OWNER: owner},
            )
            return job

        job = await self.get(owner, job_id)
        if job.state in (JobState.SUCCEEDED, JobState.FAILED):
            raise JobAlreadyFinished(
                job_id,
                job.state.name,
                "only queued or running backtests can be cancelled",
            )
        return job

    # --- scheduler side -----------------------------------------------------

    async def claim(self, worker: str, n: int, *, lease_seconds: float) -> list[Lease]:
        """Lease up to `n` ready jobs to `worker`: highest priority first, and
        within a priority, owners in fair turns (see `statements.CLAIM_JOBS`)."""
        if n <= 0:
            return []
        params = {
            "worker": worker,
            "n": n,
            "per_owner": 2 * n,
            "lease_seconds": lease_seconds,
        }
        rows = await self._fetch_all(statements.CLAIM_JOBS, params, prepare=True)

        # UPDATE ... RETURNING gives no order; hand out by priority.
        rows.sort(key=lambda row: (-row["priority"], row["id"]))
        leases = [
            Lease(
                job_id=row["id"],
                fencing_token=row["fencing_token"],
                attempt=row["attempt"],
                worker=worker,
                spec=row["spec"],
            )
            for row in rows
        ]
        logger.debug(
            "jobs claimed",
            extra={EVENT: "jobs_claimed", WORKER: worker, "n_jobs": len(leases)},
        )
        return leases

    async def renew(
        self, worker: str, held: Sequence[HeldLease], *, lease_seconds: float
    ) -> list[RenewedLease]:
        """Extend `worker`'s current leases and record progress, in one statement.

        Returns the leases still held, each with its job's state (CANCELLING
        means the attempt must stop); a lease missing from the answer is lost.
        """
        if not held:
            return []
        params = {
            "worker": worker,
            "lease_seconds": lease_seconds,
            "job_ids": [lease.job_id for lease in held],
            "fencing_tokens": [lease.fencing_token for lease in held],
            "progress": [float(lease.progress) for lease in held],
        }
        rows = await self._fetch_all(statements.RENEW_LEASES, params, prepare=True)
        renewed = [
            RenewedLease(row["id"], row["fencing_token"], JobState(row["state"]))
            for row in rows
        ]
        renewed.sort(key=lambda lease: lease.job_id)
        return renewed

    async def complete(
        self, job_id: int, fencing_token: int, result: StoredResult
    ) -> JobState:
        """Store the attempt's result and mark the job SUCCEEDED.

        A job being cancelled ends CANCELLED instead and the result is dropped.
        Repeating a call that took effect returns the final state again.

        Raises:
            LeaseLost: `fencing_token` is not the job's current lease.
        """
        params = {
            "job_id": job_id,
            "fencing_token": fencing_token,
            "metrics": Jsonb(result.metrics),
            "trade_records": result.trade_records,
            "equity_points": result.equity_points,
            "account_fills": result.account_fills,
            "data_version": result.data_version,
        }
        row = await self._fetch_one(statements.COMPLETE_JOB, params, prepare=True)
        if row is None:
            return await self._repeated_finish(job_id, fencing_token)
        return self._finished(job_id, fencing_token, row["state"])

    async def complete_many(
        self, reports: Sequence[tuple[int, int, StoredResult]]
    ) -> dict[int, JobState | LeaseLost]:
        """`complete` for each (job id, fencing token, result), in one
        statement and one transaction; job ids must differ.

        Returns each job's final state, or the LeaseLost that `complete`
        would have raised for it.
        """
        if not reports:
            return {}
        tokens = {job_id: token for job_id, token, _ in reports}
        if len(tokens) < len(reports):
            raise ValueError("a batch of results names a job twice")
        params = {
            "job_ids": list(tokens),
            "fencing_tokens": list(tokens.values()),
            "trade_records": [result.trade_records for _, _, result in reports],
            "account_fills": [result.account_fills for _, _, result in reports],
            "data_versions": [result.data_version for _, _, result in reports],
            "metrics": Jsonb([result.metrics for _, _, result in reports]),
            "equity_points": [result.equity_points for _, _, result in reports],
        }
        rows = await self._fetch_all(statements.COMPLETE_JOBS, params, prepare=True)
        states: dict[int, JobState | LeaseLost] = {
            row["id"]: self._finished(row["id"], tokens[row["id"]], row["state"])
            for row in rows
        }
        for job_id, fencing_token in tokens.items():
            if job_id in states:
                continue
            try:
                states[job_id] = await self._repeated_finish(job_id, fencing_token)
            except LeaseLost as exc:
                states[job_id] = exc
        return states

    async def fail(
        self,
        job_id: int,
        fencing_token: int,
        message: str,
        *,
        retryable: bool,
        retry_delay_seconds: float,
    ) -> JobState:
        """Record a failed attempt: requeue after the delay, or fail the job.

        The job is requeued when `retryable` and attempts remain, else FAILED
        with reason BACKTEST_ERROR; a job being cancelled ends CANCELLED.

        Raises:
            LeaseLost: `fencing_token` is not the job's current lease.
        """
        params = {
            "job_id": job_id,
            "fencing_token": fencing_token,
            "message": message[:_MAX_ERROR_MESSAGE_CHARS],
            "retryable": retryable,
            "retry_delay_seconds": retry_delay_seconds,
        }
        row = await self._fetch_one(statements.FAIL_JOB, params)
        if row is None:
            return await self._repeated_finish(job_id, fencing_token)
        return self._finished(job_id, fencing_token, row["state"])

    async def acknowledge_cancel(self, job_id: int, fencing_token: int) -> JobState:
        """The worker stopped a cancelled attempt: CANCELLING becomes CANCELLED.

        Raises:
            LeaseLost: `fencing_token` is not current, or the job is not
                being cancelled.
        """
        params = {"job_id": job_id, "fencing_token": fencing_token}
        row = await self._fetch_one(statements.ACKNOWLEDGE_CANCEL, params)
        if row is None:
            return await self._repeated_finish(job_id, fencing_token)
        return self._finished(job_id, fencing_token, row["state"])

    @staticmethod
    def _finished(job_id: int, fencing_token: int, state_value: str) -> JobState:
        state = JobState(state_value)
        logger.debug(
            "attempt finished",
            extra={
                EVENT: "attempt_finished",
                JOB_ID: job_id,
                "fencing_token": fencing_token,
                "state": state.value,
            },
        )
        return state

    async def _repeated_finish(self, job_id: int, fencing_token: int) -> JobState:
        # A fenced write matched nothing. If the job ended under this same
        # token, this is a retry of a call that already took effect (say, its
        # answer was lost with the connection), and the outcome stands.
        row = await self._fetch_one(statements.GET_FENCE, {"job_id": job_id})
        if row is None or row["fencing_token"] != fencing_token:
            raise LeaseLost(job_id, fencing_token)
        state = JobState(row["state"])
        if not state.is_terminal:
            raise LeaseLost(job_id, fencing_token)
        return state

    async def reap_expired(
        self, *, limit: int = 500, retry_delay_seconds: float = 1.0
    ) -> list[ReapedJob]:
        """Take back leases past their expiry.

        Cancelling jobs end CANCELLED, jobs out of attempts FAILED with reason
        WORKER_LOST, the rest go back to the queue after the delay. Rows
        another scheduler is reaping are skipped.
        """
        params = {"limit": limit, "retry_delay_seconds": retry_delay_seconds}
        rows = await self._fetch_all(statements.REAP_EXPIRED_LEASES, params)
        reaped = [
            ReapedJob(
                job_id=row["id"],
                fencing_token=row["fencing_token"],
                state=JobState(row["state"]),
                attempt=row["attempt"],
            )
            for row in rows
        ]
        reaped.sort(key=lambda job: job.job_id)
        for job in reaped:
            logger.debug(
                "lease expired",
                extra={
                    EVENT: "lease_expired",
                    JOB_ID: job.job_id,
                    "fencing_token": job.fencing_token,
                    "attempt": job.attempt,
                    "state": job.state.value,
                },
            )
        return reaped

    async def prune_finished(
        self, *, retention_seconds: float, limit: int = 1000
    ) -> int:
        """Delete up to `limit` jobs finished more than `retention_seconds`
        ago, with their results and attempts; returns how many went."""
        params = {"retention_seconds": retention_seconds, "limit": limit}
        async with self._connection() as conn:
            cursor = await conn.execute(statements.PRUNE_FINISHED_JOBS, params)
            return cursor.rowcount

    async def cancelling_jobs(self, job_ids: Sequence[int]) -> list[int]:
        """Which of `job_ids` are being cancelled, in ascending order."""
        if not job_ids:
            return []
        rows = await self._fetch_all(
            statements.CANCELLING_JOBS, {"job_ids": list(job_ids)}
        )
        return [row["id"] for row in rows]


async def _check_if_closed_by_server(conn: Connection) -> None:
    """Check a pooled connection only when its socket has something to read.

    An idle connection receives nothing, unless the server is closing it: a
    terminated backend or a stopping server sends a last error and closes,
    which makes the socket readable. Looking costs one non-blocking poll, not
    the round trip of a full check on every checkout (a fifth of a short
    statement's cost). A peer that vanished without a word (a cut network)
    is found by the statement itself, which fails with DatabaseUnavailable.
    """
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    if readable:
        await AsyncConnectionPool.check_connection(conn)


def _in_item_order(
    items: Sequence[NewJob], inserted: list[Row], existing: list[Row]
) -> list[Job]:
    by_request_id = {
        row["request_id"]: row for row in (*inserted, *existing) if row["request_id"]
    }
    # Rows without a request id were inserted, and numbered, in item order.
    anonymous = iter(sorted((r for r in inserted if not r["request_id"]), key=_id))
    jobs = []
    for item in items:
        row = by_request_id[item.request_id] if item.request_id else next(anonymous)
        # Each row's spec is the item's: just inserted, or equal to it (a
        # reused request id with another spec was refused).
        jobs.append(job_from_row({**row, "spec": item.spec}))
    return jobs


def _id(row: Row) -> int:
    return int(row["id"])


def job_from_row(row: Row) -> Job:
    """A Job from a row selected with `statements.JOB_COLUMNS`."""
    return Job(
        id=row["id"],
        owner=row["owner"],
        spec=row["spec"],
        priority=row["priority"],
        state=JobState(row["state"]),
        attempt=row["attempt"],
        max_attempts=row["max_attempts"],
        progress=row["progress"],
        request_id=row["request_id"],
        error_reason=row["error_reason"],
        error_message=row["error_message"],
        lease_holder=row["lease_holder"],
        lease_expires_at=row["lease_expires_at"],
        fencing_token=row["fencing_token"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        updated_at=row["updated_at"],
        summary=row["summary"],
    )
