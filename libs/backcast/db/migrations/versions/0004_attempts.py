"""Every attempt of a job: its worker, its time span and how it ended.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OUTCOMES = "('running', 'succeeded', 'failed', 'cancelled', 'expired')"


def upgrade() -> None:
    # Written by the same statements that claim and finish jobs, so an
    # attempt row can never disagree with its job. `attempt` equals the
    # lease's fencing token: both grow by one at every claim and at no
    # other time.
    op.create_table(
        "attempts",
        sa.Column(
            "job_id",
            sa.BigInteger,
            sa.ForeignKey("jobs.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("worker", sa.Text, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False, server_default="running"),
        sa.Column("error_message", sa.Text),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("job_id", "attempt", name="attempts_pkey"),
        sa.CheckConstraint(f"outcome IN {OUTCOMES}", name="attempts_outcome_check"),
        sa.CheckConstraint("attempt >= 1", name="attempts_attempt_check"),
    )


def downgrade() -> None:
    op.drop_table("attempts")
