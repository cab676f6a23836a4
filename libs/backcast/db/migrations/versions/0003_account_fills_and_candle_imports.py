"""The account after every fill of a result, and a data version per series.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Cash and units after every fill (24 bytes per fill, the layout of
    # `AccountFills.to_bytes`) and the version of the candles the backtest
    # ran on: with the candles, enough to rebuild equity at every close.
    # NULL in results stored before this revision.
    op.add_column("results", sa.Column("account_fills", sa.LargeBinary))
    op.add_column("results", sa.Column("data_version", sa.Text))

    # One row per stored series; every import raises `version` in the
    # transaction that writes the chunks, so readers check one key to know
    # whether the candles they hold are still current.
    op.create_table(
        "candle_imports",
        sa.Column("instrument", sa.Text, nullable=False),
        sa.Column("interval", sa.Text, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("instrument", "interval", name="candle_imports_pkey"),
    )
    # Series imported before this revision start at the time of their last
    # import in epoch microseconds, as later imports would have set it.
    op.execute(
        """
        INSERT INTO candle_imports (instrument, interval, version, imported_at)
        SELECT instrument,
               interval,
               (extract(epoch FROM max(imported_at)) * 1e6)::bigint,
               max(imported_at)
        FROM candle_chunks
        GROUP BY instrument, interval
        """
    )


def downgrade() -> None:
    op.drop_table("candle_imports")
    op.drop_column("results", "data_version")
    op.drop_column("results", "account_fills")
