"""After a database outage the reaper lets live workers renew first: every
lease ran out while renewals were failing, and requeueing at once would run
their jobs twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import psycopg
import pytest
from database_support import fresh_database
from psycopg import sql

from backcast.errors import DatabaseUnavailable
from backcast.jobqueue import HeldLease, JobState
from backcast.jobqueue.store import JobStore
from backcast.scheduler.reaper import Reaper

T = TypeVar("T")

SPEC: dict[str, Any] = {"instrument": "SYN-ETH", "strategy": {"name": "buy_and_hold"}}
LEASE_SECONDS = 1.0
GRACE_SECONDS = 1.5


@pytest.fixture
def outage_database(postgres_server_url: str) -> Iterator[str]:
    """A database of this test's own, which it cuts off and lets back in."""
    with fresh_database(postgres_server_url) as url:
        yield url


@pytest.fixture
async def outage_store(outage_database: str) -> AsyncIterator[JobStore]:
    store = await JobStore.open(outage_database, timeout_seconds=0.3)
    try:
        yield store
    finally:
        await store.close()


async def set_reachable(server_url: str, database_url: str, reachable: bool) -> None:
    """Let connections into the database, or refuse them and end its sessions."""
    name = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    async with await psycopg.AsyncConnection.connect(
        server_url, autocommit=True
    ) as admin:
        await admin.execute(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
                sql.Identifier(str(name)), sql.SQL("true" if reachable else "false")
            )
        )
        if not reachable:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s",
                [name],
            )


async def lease_through_an_outage(
    store: JobStore, server_url: str, database_url: str
) -> tuple[HeldLease, asyncio.Task[None]]:
    """A leased job, a running reaper, and an outage longer than the lease,
    over by the time this returns."""
    job = await store.submit("alice", SPEC, priority=0, max_attempts=3, request_id=None)
    [lease] = await store.claim("w1", 1, lease_seconds=LEASE_SECONDS)
    reaper = Reaper(store, interval_seconds=0.2, recovery_grace_seconds=GRACE_SECONDS)
    reaping = asyncio.create_task(reaper.run())
    await set_reachable(server_url, database_url, reachable=False)
    await asyncio.sleep(LEASE_SECONDS + 0.5)
    await set_reachable(server_url, database_url, reachable=True)
    return HeldLease(job.id, lease.fencing_token), reaping


async def until_answered(call: Callable[[], Awaitable[T]]) -> T:
    """`call()` again every 0.2 s while the database is still unreachable
    (the pool reconnects with a backoff of its own)."""
    for _ in range(100):
        try:
            return await call()
        except DatabaseUnavailable:
            await asyncio.sleep(0.2)
    raise AssertionError("the database did not come back within 20 s")


async def test_lease_renewed_soon_after_an_outage_is_not_taken_back(
    outage_store: JobStore, outage_database: str, postgres_server_url: str
) -> None:
    held, reaping = await lease_through_an_outage(
        outage_store, postgres_server_url, outage_database
    )
    try:
        # The worker's next heartbeat comes a while after the database is
        # back: the reaper, which runs every 0.2 s, must not have taken the
        # lease meanwhile.
        await until_answered(outage_store.ping)
        await asyncio.sleep(0.5)
        renewed = await outage_store.renew("w1", [held], lease_seconds=30)
        await asyncio.sleep(GRACE_SECONDS + 1.0)

        job = await outage_store.get("alice", held.job_id)
    finally:
        reaping.cancel()

    assert [lease.job_id for lease in renewed] == [held.job_id]
    assert job.state is JobState.RUNNING
    assert job.attempt == 1


async def test_lease_nobody_renews_is_taken_back_after_the_grace(
    outage_store: JobStore, outage_database: str, postgres_server_url: str
) -> None:
    held, reaping = await lease_through_an_outage(
        outage_store, postgres_server_url, outage_database
    )
    try:
        job = await until_answered(lambda: outage_store.get("alice", held.job_id))
        for _ in range(100):
            if job.state is not JobState.RUNNING:
                break
            await asyncio.sleep(0.1)
            job = await outage_store.get("alice", held.job_id)
    finally:
        reaping.cancel()

    assert job.state is JobState.QUEUED
    assert job.attempt == 1
