"""Jobs and results tables, queue indexes and change notifications.

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def timestamp(name: str, *, nullable: bool = True) -> sa.Column[datetime]:
    default = None if nullable else sa.func.now()
    return sa.Column(
        name, sa.DateTime(timezone=True), nullable=nullable, server_default=default
    )


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("request_id", sa.Text),
        sa.Column("spec", JSONB, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
        sa.Column("state", sa.Text, nullable=False, server_default="queued"),
        # Attempts started so far; a lease expiry counts as one.
        sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("lease_holder", sa.Text),
        timestamp("lease_expires_at"),
        # Grows by one at every claim and is never reset, so a report carrying
        # an older token can always be told apart from the current holder's.
        sa.Column("fencing_token", sa.BigInteger, nullable=False, server_default="0"),
        # NOT NULL so the claim query can filter on it without an OR that
        # would keep the planner off the queued-jobs index.
        timestamp("run_after", nullable=False),
        sa.Column("progress", sa.Double, nullable=False, server_default="0"),
        sa.Column("error_reason", sa.Text),
        sa.Column("error_message", sa.Text),
        timestamp("created_at", nullable=False),
        timestamp("updated_at", nullable=False),
        timestamp("started_at"),
        timestamp("finished_at"),
        sa.UniqueConstraint("owner", "request_id", name="jobs_owner_request_id_key"),
        sa.CheckConstraint(
            "state IN ('queued', 'running', 'cancelling', 'succeeded', 'failed', "
            "'cancelled')",
            name="jobs_state_check",
        ),
        sa.CheckConstraint("max_attempts >= 1", name="jobs_max_attempts_check"),
        sa.CheckConstraint("attempt >= 0", name="jobs_attempt_check"),
        sa.CheckConstraint("progress BETWEEN 0 AND 1", name="jobs_progress_check"),
        sa.CheckConstraint(
            "state NOT IN ('running', 'cancelling') OR lease_expires_at IS NOT NULL",
            name="jobs_lease_check",
        ),
    )

    # Partial indexes: finished jobs (the bulk of the table over time) are in
    # neither, so claiming and reaping cost the same at any table size.
    op.execute(
        "CREATE INDEX jobs_queued_idx ON jobs (priority DESC, id) "
        "WHERE state = 'queued'"
    )
    op.execute(
        "CREATE INDEX jobs_leased_idx ON jobs (lease_expires_at) "
        "WHERE state IN ('running', 'cancelling')"
    )
    op.execute("CREATE INDEX jobs_owner_idx ON jobs (owner, id DESC)")

    op.create_table(
        "results",
        sa.Column(
            "job_id",
            sa.BigInteger,
            sa.ForeignKey("jobs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("metrics", JSONB, nullable=False),
        sa.Column("trades", JSONB, nullable=False),
        sa.Column("equity_curve", JSONB, nullable=False),
        timestamp("created_at", nullable=False),
    )

    # Notifications come from a trigger so that every writer, including an
    # operator's hand-written UPDATE, wakes the listeners. NOTIFY is sent at
    # commit, and identical payloads within a transaction are folded into one
    # (PostgreSQL docs, "NOTIFY").
    op.execute(
        """
        CREATE FUNCTION jobs_notify() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('backcast_job_events', NEW.id::text);
            IF NEW.state = 'queued'
               AND (TG_OP = 'INSERT' OR OLD.state <> 'queued') THEN
                PERFORM pg_notify('backcast_jobs_queued', '');
            END IF;
            IF NEW.state = 'cancelling' AND TG_OP = 'UPDATE'
               AND OLD.state <> 'cancelling' THEN
                PERFORM pg_notify('backcast_job_cancels', NEW.id::text);
            END IF;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER jobs_notify_insert AFTER INSERT ON jobs "
        "FOR EACH ROW EXECUTE FUNCTION jobs_notify()"
    )
    # A lease renewal that changes neither state nor progress is the most
    # frequent write and tells a watcher nothing, so it sends nothing.
    op.execute(
        "CREATE TRIGGER jobs_notify_update AFTER UPDATE ON jobs FOR EACH ROW "
        "WHEN (OLD.state IS DISTINCT FROM NEW.state "
        "OR OLD.progress IS DISTINCT FROM NEW.progress) "
        "EXECUTE FUNCTION jobs_notify()"
    )


def downgrade() -> None:
    op.drop_table("results")
    op.drop_table("jobs")
    op.execute("DROP FUNCTION jobs_notify()")
