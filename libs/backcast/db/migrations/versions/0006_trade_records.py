"""Closed trades as fixed-size binary records instead of a JSON array.

A year of minute candles can make thousands of trades; as JSON they cost
more to encode, parse and store than the backtest that made them, and every
page of GetResult read the whole array. As 56-byte records, uncompressed
(STORAGE EXTERNAL), a page is one slice of the column and PostgreSQL reads
only the TOAST chunks that hold it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The record layout as of this revision (`TradeTable.to_bytes`), written
# out here so the migration keeps working whatever the engine becomes.
_TIME_KEYS = ("entry_at", "exit_at")
_VALUE_KEYS = ("entry_price", "exit_price", "units", "pnl", "return_fraction")
_RECORD = np.dtype(
    [(key, "<i8") for key in _TIME_KEYS] + [(key, "<f8") for key in _VALUE_KEYS]
)
_BATCH = 500


def upgrade() -> None:
    op.add_column(
        "results",
        sa.Column(
            "trade_records",
            sa.LargeBinary,
            nullable=False,
            server_default=sa.text("'\\x'::bytea"),
        ),
    )
    op.alter_column("results", "trade_records", server_default=None)
    op.execute("ALTER TABLE results ALTER COLUMN trade_records SET STORAGE EXTERNAL")
    _copy_rows(
        "SELECT job_id, trades FROM results "
        "WHERE jsonb_array_length(trades) > 0 AND job_id > :after "
        "ORDER BY job_id LIMIT :n",
        "UPDATE results SET trade_records = :value WHERE job_id = :job_id",
        _records_of,
    )
    op.drop_column("results", "trades")


def downgrade() -> None:
    op.add_column(
        "results",
        sa.Column(
            "trades",
            sa.dialects.postgresql.JSONB,
            nullable=False,
            server_default=sa.text("'[]'::jsonb"),
        ),
    )
    op.alter_column("results", "trades", server_default=None)
    _copy_rows(
        "SELECT job_id, trade_records FROM results "
        "WHERE octet_length(trade_records) > 0 AND job_id > :after "
        "ORDER BY job_id LIMIT :n",
        "UPDATE results SET trades = CAST(:value AS jsonb) WHERE job_id = :job_id",
        _json_of,
    )
    op.drop_column("results", "trade_records")


def _copy_rows(select: str, update: str, convert: Callable[[Any], Any]) -> None:
    """Rewrite one column from another, `_BATCH` rows at a time by key."""
    bind = op.get_bind()
    after = 0
    while True:
        rows = bind.execute(sa.text(select), {"after": after, "n": _BATCH}).all()
        if not rows:
            return
        bind.execute(
            sa.text(update),
            [{"job_id": job_id, "value": convert(value)} for job_id, value in rows],
        )
        after = rows[-1][0]


def _records_of(trades: list[dict[str, Any]]) -> bytes:
    records = np.zeros(len(trades), _RECORD)
    for key in _TIME_KEYS:
        records[key] = [_seconds(trade.get(key)) for trade in trades]
    for key in _VALUE_KEYS:
        records[key] = [float(trade.get(key, 0.0)) for trade in trades]
    return records.tobytes()


def _json_of(data: bytes) -> str:
    records = np.frombuffer(data, _RECORD)
    trades = [
        {
            **{key: _iso(int(record[key])) for key in _TIME_KEYS},
            **{key: float(record[key]) for key in _VALUE_KEYS},
        }
        for record in records
    ]
    return json.dumps(trades)


def _seconds(text: str | None) -> int:
    if not text:
        return 0
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return int(at.timestamp())


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()
