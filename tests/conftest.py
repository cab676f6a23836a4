"""Database fixtures shared by every test that needs PostgreSQL.

Each pytest run creates its own database (`backcast_test_<hex>`), migrates
it and drops it at the end. The server is the one named by
BACKCAST_TEST_DATABASE_URL, or an embedded pgserver started in a temporary
directory when that variable is unset.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import psycopg
import pytest
from database_support import fresh_database

if TYPE_CHECKING:
    from backcast.jobqueue.store import JobStore

TEST_DATABASE_URL_VAR = "BACKCAST_TEST_DATABASE_URL"


def pytest_sessionstart(session: pytest.Session) -> None:
    # Compile the engine's kernels once, here, before any test starts
    # workers: a clean checkout has no numba cache yet, and every worker
    # starting at once would compile each kernel itself, slowly enough on a
    # busy machine to miss its start-up deadline.
    import backcast.engine.warmup  # noqa: F401


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A URL of a PostgreSQL server where tests may create databases."""
    configured = os.environ.get(TEST_DATABASE_URL_VAR)
    if configured:
        yield configured
        return

    from pgserver.postgres_server import get_server

    data_dir = tempfile.mkdtemp(prefix="backcast-pg-")
    server = get_server(data_dir, cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url(postgres_server_url: str) -> Iterator[str]:
    """A freshly migrated database of its own for this test run."""
    with fresh_database(postgres_server_url) as url:
        yield url


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[JobStore]:
    """A JobStore on the test database, with the job tables emptied first."""
    from backcast.jobqueue.store import JobStore

    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True
    ) as conn:
        # A connection left in a transaction by an earlier test would block
        # TRUNCATE forever; fail with a lock timeout instead.
        await conn.execute("SET lock_timeout = '10s'")
        await conn.execute("TRUNCATE jobs, results RESTART IDENTITY CASCADE")

    job_store = await JobStore.open(database_url, min_size=1, max_size=4)
    try:
        yield job_store
    finally:
        await job_store.close()


@pytest.fixture
async def db_connection(
    database_url: str,
) -> AsyncIterator[psycopg.AsyncConnection[tuple[object, ...]]]:
    """A plain autocommit connection to the test database, for direct SQL."""
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True
    ) as conn:
        yield conn
