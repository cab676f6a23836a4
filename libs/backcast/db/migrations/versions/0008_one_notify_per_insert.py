"""One notification per INSERT statement instead of two per inserted job.

Nobody can watch a job before the insert that creates it commits (a watch
starts by reading the job), so a new job's `backcast_job_events` went
unheard, yet every listening gateway took it in: a thousand for each
`SubmitBacktests` call. The scheduler needs to hear that work arrived,
once per statement: identical payloads in one transaction were folded into
one already, so `backcast_jobs_queued` is unchanged for listeners. A
statement-level trigger over the inserted rows also spares PostgreSQL a
function call per row.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("DROP TRIGGER jobs_notify_insert ON jobs")
    op.execute(
        """
        CREATE FUNCTION jobs_notify_inserted() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF EXISTS (SELECT FROM inserted WHERE state = 'queued') THEN
                PERFORM pg_notify('backcast_jobs_queued', '');
            END IF;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER jobs_notify_insert AFTER INSERT ON jobs "
        "REFERENCING NEW TABLE AS inserted "
        "FOR EACH STATEMENT EXECUTE FUNCTION jobs_notify_inserted()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER jobs_notify_insert ON jobs")
    op.execute("DROP FUNCTION jobs_notify_inserted()")
    op.execute(
        "CREATE TRIGGER jobs_notify_insert AFTER INSERT ON jobs "
        "FOR EACH ROW EXECUTE FUNCTION jobs_notify()"
    )
