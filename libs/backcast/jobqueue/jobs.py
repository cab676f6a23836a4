"""Jobs and leases as the queue sees them.

A job is one requested backtest: a row with owner, spec, priority and state.
A lease is a worker's time-limited exclusive claim on a job; its fencing
token grows by one at every claim, so only the latest holder's reports count.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any


class JobState(Enum):
    """Life cycle: QUEUED -> RUNNING -> SUCCEEDED | FAILED | CANCELLED.

    RUNNING goes back to QUEUED when a lease expires or a retryable attempt
    fails; CANCELLING is RUNNING with a cancel on its way to the worker.
    """

    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES

    @property
    def is_leased(self) -> bool:
        return self in (JobState.RUNNING, JobState.CANCELLING)


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


@dataclass(frozen=True)
class Job:
    """A snapshot of one job row. `spec` is `BacktestSpec.to_dict()`."""

    id: int
    owner: str
    spec: dict[str, Any]
    priority: int
    state: JobState
    attempt: int
    max_attempts: int
    progress: float
    request_id: str | None
    error_reason: str | None
    error_message: str | None
    lease_holder: str | None
    lease_expires_at: datetime | None
    fencing_token: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    summary: dict[str, Any] | None = None


@dataclass(frozen=True)
class NewJob:
    """A job to queue: its spec (`BacktestSpec.to_dict()`) and options."""

    spec: dict[str, Any]
    priority: int
    max_attempts: int
    request_id: str | None = None


class AttemptOutcome(Enum):
    """How an attempt ended; RUNNING while its lease is held."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Attempt:
    """One execution of a job: the worker that held its lease, and its end.

    `number` counts from 1 and equals the lease's fencing token.
    """

    number: int
    worker: str
    outcome: AttemptOutcome
    error_message: str | None
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class Lease:
    """A job leased to a worker for one attempt."""

    job_id: int
    fencing_token: int
    attempt: int
    worker: str
    spec: dict[str, Any]


@dataclass(frozen=True)
class HeldLease:
    """A lease a worker reports holding, with its attempt's progress."""

    job_id: int
    fencing_token: int
    progress: float = 0.0


@dataclass(frozen=True)
class RenewedLease:
    """A held lease that is still current after renewal, and the job's state
    (CANCELLING means the worker must stop the attempt)."""

    job_id: int
    fencing_token: int
    state: JobState


@dataclass(frozen=True)
class ReapedJob:
    """A job whose lease expired, and the state the reaper moved it to."""

    job_id: int
    fencing_token: int
    state: JobState
    attempt: int


@dataclass(frozen=True)
class StoredResult:
    """A succeeded attempt's result in the forms the results table keeps.

    `metrics` is JSON (`Metrics.to_dict`); the closed trades are fixed-size
    records in time order (`TradeTable.to_bytes`), so a page of them is one
    slice of the bytes; the equity curve is `EquityCurve.to_bytes` and the
    account fills are `AccountFills.to_bytes`.
    """

    metrics: dict[str, Any]
    trade_records: bytes
    equity_points: bytes
    account_fills: bytes | None = None
    data_version: str | None = None


@dataclass(frozen=True)
class ResultPage:
    """A stored result with the records of one run of its trades."""

    metrics: dict[str, Any]
    # Records of trades first_trade .. first_trade + n, in time order.
    trade_records: bytes
    total_trades: int
    equity_points: bytes
