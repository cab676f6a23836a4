"""Candles stored as columnar chunks, and the coverage of each instrument.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("times", "open", "high", "low", "close", "volume")


def upgrade() -> None:
    # One row holds up to 65,536 candles of one instrument and interval; each
    # column is the raw little-endian bytes of a numpy array (int64 epoch
    # seconds for `times`, float64 for the rest). Times are epoch seconds,
    # UTC, and `chunk_start` is a multiple of the chunk span, so every
    # candle has exactly one chunk it can live in.
    op.create_table(
        "candle_chunks",
        sa.Column("instrument", sa.Text, nullable=False),
        sa.Column("interval", sa.Text, nullable=False),
        sa.Column("chunk_start", sa.BigInteger, nullable=False),
        sa.Column("n_candles", sa.Integer, nullable=False),
        sa.Column("first_time", sa.BigInteger, nullable=False),
        sa.Column("last_time", sa.BigInteger, nullable=False),
        *(sa.Column(name, sa.LargeBinary, nullable=False) for name in COLUMNS),
        sa.Column(
            "imported_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.PrimaryKeyConstraint(
            "instrument", "interval", "chunk_start", name="candle_chunks_pkey"
        ),
        sa.CheckConstraint(
            "n_candles BETWEEN 1 AND 65536", name="candle_chunks_n_candles_check"
        ),
        sa.CheckConstraint(
            "chunk_start <= first_time AND first_time <= last_time",
            name="candle_chunks_times_check",
        ),
    )
    # Float bytes barely compress, and pglz would cost time on every load;
    # EXTERNAL keeps large values out of line but uncompressed (PostgreSQL
    # docs, "TOAST").
    for name in COLUMNS:
        op.execute(
            f"ALTER TABLE candle_chunks ALTER COLUMN {name} SET STORAGE EXTERNAL"
        )

    op.execute(
        """
        CREATE VIEW instruments AS
        SELECT instrument,
               interval,
               to_timestamp(min(first_time)) AS first_at,
               to_timestamp(max(last_time)) AS last_at,
               sum(n_candles)::bigint AS n_candles,
               max(imported_at) AS imported_at
        FROM candle_chunks
        GROUP BY instrument, interval
        """
    )


def downgrade() -> None:
    op.execute("DROP VIEW instruments")
    op.drop_table("candle_chunks")
