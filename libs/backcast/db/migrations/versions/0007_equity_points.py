"""The downsampled equity curve as fixed-size binary points instead of a
JSON array of [ISO time, equity] pairs.

Every succeeded job stores one curve. As JSON, formatting its times, encoding
and parsing it cost the scheduler and PostgreSQL more than the rest of a small
job's result; as 16-byte points it is copied as it is, and a third the size.

Revision ID: 0007
Revises: 0006
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

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The point layout as of this revision (`EquityCurve.to_bytes`), written out
# here so the migration keeps working whatever the engine becomes.
_POINT = np.dtype([("at", "<i8"), ("equity", "<f8")])
_BATCH = 500


def upgrade() -> None:
    op.add_column(
        "results",
        sa.Column(
            "equity_points",
            sa.LargeBinary,
            nullable=False,
            server_default=sa.text("'\\x'::bytea"),
        ),
    )
    op.alter_column("results", "equity_points", server_default=None)
    _rewrite(
        "SELECT job_id, equity_curve FROM results "
        "WHERE jsonb_array_length(equity_curve) > 0 AND job_id > :after "
        "ORDER BY job_id LIMIT :n",
        "UPDATE results SET equity_points = :value WHERE job_id = :job_id",
        _points_of,
    )
    op.drop_column("results", "equity_curve")


def downgrade() -> None:
    op.add_column(
        "results",
        sa.Column(
            "equity_curve",
            sa.dialects.postgresql.JSONB,
            nullable=False,
            server_default=sa.text("'[]'::jsonb"),
        ),
    )
    op.alter_column("results", "equity_curve", server_default=None)
    _rewrite(
        "SELECT job_id, equity_points FROM results "
        "WHERE octet_length(equity_points) > 0 AND job_id > :after "
        "ORDER BY job_id LIMIT :n",
        "UPDATE results SET equity_curve = CAST(:value AS jsonb) "
        "WHERE job_id = :job_id",
        _json_of,
    )
    op.drop_column("results", "equity_points")


def _rewrite(select: str, update: str, convert: Callable[[Any], Any]) -> None:
    """Fill one column from another, `_BATCH` rows at a time in key order."""
    bind = op.get_bind()
    after = 0
    while rows := bind.execute(sa.text(select), {"after": after, "n": _BATCH}).all():
        bind.execute(
            sa.text(update),
            [{"job_id": job_id, "value": convert(value)} for job_id, value in rows],
        )
        after = rows[-1][0]


def _points_of(pairs: list[list[Any]]) -> bytes:
    points = np.zeros(len(pairs), _POINT)
    points["at"] = [_seconds(at) for at, _ in pairs]
    points["equity"] = [float(equity) for _, equity in pairs]
    return points.tobytes()


def _json_of(data: bytes) -> str:
    points = np.frombuffer(data, _POINT)
    return json.dumps(
        [
            [datetime.fromtimestamp(int(at), UTC).isoformat(), float(equity)]
            for at, equity in points.tolist()
        ]
    )


def _seconds(text: str) -> int:
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return int(at.timestamp())
