"""SQLAlchemy models of the job and candle tables the migrations build.

The job store speaks plain SQL (`backcast.jobqueue.statements`); these models
describe the same tables for Alembic's autogenerate checks and for tools
that read them, so keep them in step with `migrations/versions`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

JOB_STATES = ("queued", "running", "cancelling", "succeeded", "failed", "cancelled")


class Base(DeclarativeBase):
    pass


class JobRow(Base):
    """One backtest job: its request, its place in the queue and its lease."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    owner: Mapped[str] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(Text)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONB)
    priority: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    state: Mapped[str] = mapped_column(Text, server_default=text("'queued'"))
    attempt: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    max_attempts: Mapped[int] = mapped_column(Integer)
    lease_holder: Mapped[str | None] = mapped_column(Text)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    fencing_token: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    run_after: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    progress: Mapped[float] = mapped_column(Double, server_default=text("0"))
    error_reason: Mapped[str | None] = mapped_column(Text)
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        # NULL request ids never conflict: Postgres treats NULLs as distinct.
        UniqueConstraint("owner", "request_id", name="jobs_owner_request_id_key"),
        CheckConstraint(
            "state IN ('queued', 'running', 'cancelling', 'succeeded', 'failed', "
            "'cancelled')",
            name="jobs_state_check",
        ),
        CheckConstraint("max_attempts >= 1", name="jobs_max_attempts_check"),
        CheckConstraint("attempt >= 0", name="jobs_attempt_check"),
        CheckConstraint("progress BETWEEN 0 AND 1", name="jobs_progress_check"),
        CheckConstraint(
            "state NOT IN ('running', 'cancelling') OR lease_expires_at IS NOT NULL",
            name="jobs_lease_check",
        ),
        # Only queued rows are indexed, so the claim query stays as cheap with
        # millions of finished jobs as with none.
        Index(
            "jobs_queued_owner_idx",
            "owner",
            text("priority DESC"),
            "id",
            postgresql_where=text("state = 'queued'"),
        ),
        Index(
            "jobs_leased_owner_idx",
            "owner",
            postgresql_where=text("state IN ('running', 'cancelling')"),
        ),
        Index(
            "jobs_finished_idx",
            "finished_at",
            postgresql_where=text("state IN ('succeeded', 'failed', 'cancelled')"),
        ),
        Index(
            "jobs_leased_idx",
            "lease_expires_at",
            postgresql_where=text("state IN ('running', 'cancelling')"),
        ),
        Index("jobs_owner_idx", "owner", text("id DESC")),
    )


class ResultRow(Base):
    """The output of a succeeded job, stored apart so job reads stay small."""

    __tablename__ = "results"

    job_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONB)
    # Closed trades as 56-byte records, `TradeTable.to_bytes` (STORAGE
    # EXTERNAL: uncompressed, so a page of them is read alone).
    trade_records: Mapped[bytes] = mapped_column(LargeBinary)
    # The downsampled equity curve as 16-byte points, `EquityCurve.to_bytes`.
    equity_points: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    # The account after every fill, as `AccountFills.to_bytes` lays it out,
    # and the data version of the candles; NULL in older results.
    account_fills: Mapped[bytes | None] = mapped_column(LargeBinary)
    data_version: Mapped[str | None] = mapped_column(Text)


class CandleChunkRow(Base):
    """Up to 65,536 candles of one instrument and interval, column by column.

    Times are epoch seconds, UTC; each array column holds the little-endian
    bytes of a numpy array (int64 `times`, float64 prices and volume).
    """

    __tablename__ = "candle_chunks"

    instrument: Mapped[str] = mapped_column(Text)
    interval: Mapped[str] = mapped_column(Text)
    chunk_start: Mapped[int] = mapped_column(BigInteger)
    n_candles: Mapped[int] = mapped_column(Integer)
    first_time: Mapped[int] = mapped_column(BigInteger)
    last_time: Mapped[int] = mapped_column(BigInteger)
    times: Mapped[bytes] = mapped_column(LargeBinary)
    open: Mapped[bytes] = mapped_column(LargeBinary)
    high: Mapped[bytes] = mapped_column(LargeBinary)
    low: Mapped[bytes] = mapped_column(LargeBinary)
    close: Mapped[bytes] = mapped_column(LargeBinary)
    volume: Mapped[bytes] = mapped_column(LargeBinary)
    imported_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    __table_args__ = (
        PrimaryKeyConstraint(
            "instrument", "interval", "chunk_start", name="candle_chunks_pkey"
        ),
        CheckConstraint(
            "n_candles BETWEEN 1 AND 65536", name="candle_chunks_n_candles_check"
        ),
        CheckConstraint(
            "chunk_start <= first_time AND first_time <= last_time",
            name="candle_chunks_times_check",
        ),
    )


class AttemptRow(Base):
    """One attempt of a job: the worker that held its lease, and its end."""

    __tablename__ = "attempts"

    job_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("jobs.id", ondelete="CASCADE")
    )
    attempt: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(Text, server_default=text("'running'"))
    error_message: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        PrimaryKeyConstraint("job_id", "attempt", name="attempts_pkey"),
        CheckConstraint(
            "outcome IN ('running', 'succeeded', 'failed', 'cancelled', 'expired')",
            name="attempts_outcome_check",
        ),
        CheckConstraint("attempt >= 1", name="attempts_attempt_check"),
    )


class CandleImportRow(Base):
    """The data version of one stored series, raised by every import of it."""

    __tablename__ = "candle_imports"

    instrument: Mapped[str] = mapped_column(Text)
    interval: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(BigInteger)
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        PrimaryKeyConstraint("instrument", "interval", name="candle_imports_pkey"),
    )


class OwnerTurnRow(Base):
    """When an owner was last given a slot, to break ties in fair claims."""

    __tablename__ = "owner_turns"

    owner: Mapped[str] = mapped_column(Text, primary_key=True)
    last_claimed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
