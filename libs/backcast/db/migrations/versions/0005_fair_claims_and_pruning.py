"""Fair claims (queued jobs indexed per owner, each owner's last turn), and
an index for pruning finished jobs.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The claim visits owners with queued work one index probe each, then
    # each owner's best jobs, so one owner's backlog of 100,000 costs the
    # same as a backlog of ten. Partial, like the index it replaces: finished
    # jobs are in neither.
    op.execute(
        "CREATE INDEX jobs_queued_owner_idx ON jobs (owner, priority DESC, id) "
        "WHERE state = 'queued'"
    )
    op.execute("DROP INDEX jobs_queued_idx")
    # Counts an owner's running jobs without walking its history.
    op.execute(
        "CREATE INDEX jobs_leased_owner_idx ON jobs (owner) "
        "WHERE state IN ('running', 'cancelling')"
    )
    # When each owner was last given a slot: among owners with as many jobs
    # running, the one waiting longest goes first.
    op.create_table(
        "owner_turns",
        sa.Column("owner", sa.Text, primary_key=True),
        sa.Column("last_claimed_at", sa.DateTime(timezone=True), nullable=False),
    )
    # The pruner deletes the oldest finished jobs first, in small batches.
    op.execute(
        "CREATE INDEX jobs_finished_idx ON jobs (finished_at) "
        "WHERE state IN ('succeeded', 'failed', 'cancelled')"
    )


def downgrade() -> None:
    op.execute("DROP INDEX jobs_finished_idx")
    op.drop_table("owner_turns")
    op.execute("DROP INDEX jobs_leased_owner_idx")
    op.execute(
        "CREATE INDEX jobs_queued_idx ON jobs (priority DESC, id) "
        "WHERE state = 'queued'"
    )
    op.execute("DROP INDEX jobs_queued_owner_idx")
