"""Finished jobs past their retention are deleted with their results and
attempts; queued, running and recent jobs are never touched."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
import pytest
from test_leases import result_of, submit

from backcast.jobqueue.store import JobStore
from backcast.scheduler import history
from backcast.scheduler.history import HistoryPruner, warn_if_autovacuum_is_off

Connection = psycopg.AsyncConnection[tuple[Any, ...]]

DAY = 86_400.0


async def age_finished_jobs(conn: Connection, days: float) -> None:
    await conn.execute(
        "UPDATE jobs SET finished_at = now() - make_interval(days => %s) "
        "WHERE finished_at IS NOT NULL",
        [days],
    )


async def count(conn: Connection, table: str) -> int:
    cursor = await conn.execute(f"SELECT count(*) FROM {table}")  # noqa: S608
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def test_only_finished_jobs_older_than_the_retention_are_pruned(
    store: JobStore, db_connection: Connection
) -> None:
    old = await submit(store)
    [lease] = await store.claim("w1", 1, lease_seconds=30)
    await store.complete(lease.job_id, lease.fencing_token, result_of(0.1))
    await age_finished_jobs(db_connection, days=31)
    recent = await submit(store)
    [lease] = await store.claim("w1", 1, lease_seconds=30)
    await store.complete(lease.job_id, lease.fencing_token, result_of(0.1))
    running = await submit(store)
    await store.claim("w1", 1, lease_seconds=30)
    queued = await submit(store)

    pruned = await HistoryPruner(
        store, retention_seconds=30 * DAY, interval_seconds=60
    ).prune()

    assert pruned == 1
    cursor = await db_connection.execute("SELECT id FROM jobs ORDER BY id")
    assert [row[0] for row in await cursor.fetchall()] == [recent, running, queued]
    cursor = await db_connection.execute(
        "SELECT count(*) FROM results WHERE job_id = %s", [old]
    )
    assert await cursor.fetchone() == (0,)
    cursor = await db_connection.execute(
        "SELECT count(*) FROM attempts WHERE job_id = %s", [old]
    )
    assert await cursor.fetchone() == (0,)


async def test_pruning_works_through_a_backlog_in_batches(
    store: JobStore, db_connection: Connection, monkeypatch: Any
) -> None:
    monkeypatch.setattr(history, "BATCH_SIZE", 7)
    for _ in range(30):
        await submit(store)
    await db_connection.execute(
        "UPDATE jobs SET state = 'cancelled', finished_at = now() - interval '2 days'"
    )

    pruned = await HistoryPruner(
        store, retention_seconds=DAY, interval_seconds=60
    ).prune()

    assert pruned == 30
    assert await count(db_connection, "jobs") == 0


async def test_scheduler_warns_exactly_when_the_server_does_not_autovacuum(
    store: JobStore, db_connection: Connection, caplog: pytest.LogCaptureFixture
) -> None:
    cursor = await db_connection.execute("SHOW autovacuum")
    setting = await cursor.fetchone()

    with caplog.at_level(logging.WARNING, logger=history.__name__):
        warned = await warn_if_autovacuum_is_off(store)

    assert warned is (setting == ("off",))
    warnings = [r for r in caplog.records if "autovacuum is off" in r.getMessage()]
    assert len(warnings) == int(warned)
