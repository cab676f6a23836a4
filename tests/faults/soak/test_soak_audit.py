"""The soak's audit counts each kind of broken job record it must catch.

The soak itself only ever sees healthy records, so this test writes broken
ones by hand and checks that each is counted where it belongs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import psycopg
import pytest
from database_support import fresh_database
from soak_support import soak

Connection = psycopg.Connection[tuple[object, ...]]


@pytest.fixture
def soak_database(postgres_server_url: str) -> Iterator[str]:
    with fresh_database(postgres_server_url) as url:
        yield url


def add_job(
    conn: Connection,
    request_id: str,
    state: str,
    outcomes: Sequence[str] = (),
    *,
    attempt: int | None = None,
    result: bool = False,
    lease_live: bool = True,
) -> None:
    """One job of the soak's owner, its attempt rows and maybe a result."""
    leased = state in ("running", "cancelling")
    lease_seconds = (60 if lease_live else -1) if leased else None
    row = conn.execute(
        "INSERT INTO jobs (owner, request_id, spec, max_attempts, state, attempt,"
        " lease_holder, lease_expires_at)"
        " VALUES (%s, %s, '{}', 10, %s, %s, %s, now() + %s * interval '1 second')"
        " RETURNING id",
        (
            soak.OWNER,
            request_id,
            state,
            len(outcomes) if attempt is None else attempt,
            "w-1" if leased else None,
            lease_seconds,
        ),
    ).fetchone()
    assert row is not None
    for number, outcome in enumerate(outcomes, start=1):
        conn.execute(
            "INSERT INTO attempts (job_id, attempt, worker, outcome)"
            " VALUES (%s, %s, 'w-1', %s)",
            (row[0], number, outcome),
        )
    if result:
        conn.execute(
            "INSERT INTO results (job_id, metrics, trade_records, equity_points)"
            " VALUES (%s, '{}', '', '')",
            (row[0],),
        )


def test_audit_counts_lost_duplicated_stuck_and_miscounted_jobs(
    soak_database: str,
) -> None:
    requested = [f"soak-0-{index}" for index in range(9)]
    with psycopg.connect(soak_database, autocommit=True) as conn:
        add_job(conn, requested[0], "succeeded", ["succeeded"], result=True)
        # requested[1] was never written: lost.
        add_job(conn, requested[2], "queued")  # lost
        add_job(conn, requested[3], "running", ["running"], lease_live=False)
        add_job(conn, requested[4], "succeeded", ["succeeded"])  # lost: no result
        add_job(conn, requested[5], "failed", ["failed"], result=True)  # duplicated
        add_job(conn, "soak-0-extra", "succeeded", ["succeeded"], result=True)
        add_job(
            conn, requested[6], "succeeded", ["succeeded", "succeeded"], result=True
        )
        add_job(
            conn,
            requested[7],
            "succeeded",
            ["succeeded"],
            attempt=2,
            result=True,
        )
        add_job(conn, requested[8], "running", ["expired", "running"])

    audit = soak.audit_jobs(soak_database, requested)

    # Missing (1), queued (2), running (3, 8) and without a result (4).
    assert audit.lost == 5
    # The extra job, the one with a result it should not have (5) and the
    # one that succeeded twice (6).
    assert audit.duplicated == 3
    # Running on an expired lease (3); 8 holds a live one.
    assert audit.stuck == 1
    # Two successes (6), and one attempt row for attempt 2 (7).
    assert audit.miscounted == 2
    assert audit.states == {"succeeded": 5, "queued": 1, "running": 2, "failed": 1}
    assert audit.n_retried == 3
