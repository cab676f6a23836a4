"""Fixtures of the end-to-end tests: gateway, scheduler and two one-slot
workers as separate processes on the test database (`database_url`)."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import grpc
import psycopg
import pytest
from database_support import fresh_database
from e2e_support import OWNER, wait_for

from backcast.cli.client import GatewayClient
from backcast.cli.platform import Platform, PlatformOptions

# Short leases so that a killed worker's job runs again within seconds.
E2E_ENV = {
    "BACKCAST_SCHEDULER_LEASE_SECONDS": "2",
    "BACKCAST_SCHEDULER_HEARTBEAT_SECONDS": "0.3",
    "BACKCAST_SCHEDULER_POLL_SECONDS": "0.5",
}
WORKER_PREFIX = "e2e-worker"
_UNFINISHED = ("queued", "running", "cancelling")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # Keep each phase's report on the item so fixtures can tell a failure.
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def database_url(postgres_server_url: str) -> Iterator[str]:
    """A database of the end-to-end tests' own: their services run as
    processes that could outlive a test, and must never lease the jobs of
    the in-process tests."""
    with fresh_database(postgres_server_url) as url:
        yield url


@pytest.fixture(scope="module")
def platform(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    """Every service as a process, for one test module.

    Not for the whole session: the integration tests share the database, and
    a scheduler left running would lease their jobs.
    """
    root = tmp_path_factory.mktemp("e2e-platform")
    options = PlatformOptions(
        n_workers=2,
        slots_per_worker=1,
        gateway_port=0,
        scheduler_port=0,
        data_dir=root,
        log_dir=root / "logs",
        database_url=database_url,
        extra_env=E2E_ENV,
        worker_id_prefix=WORKER_PREFIX,
        start_timeout_seconds=180.0,
        stop_grace_seconds=10.0,
    )
    running = Platform(options)
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def running_platform(
    platform: Platform, database_url: str, request: pytest.FixtureRequest
) -> Iterator[Platform]:
    """The platform with every service up and the job tables empty.

    Jobs a previous test left unfinished are cancelled and waited for first.
    The job ids keep counting (no RESTART IDENTITY): the scheduler outlives
    the test and remembers leases by job id and fencing token, so a reused
    id would look like a lease it has already seen, which no real database
    can produce.
    """
    for service in platform.services:
        if service.returncode() is not None:
            platform.restart(service)
    _finish_leftover_jobs(platform.gateway_address, database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '10s'")
        conn.execute("TRUNCATE jobs, results CASCADE")

    yield platform

    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        for service in platform.services:
            print(platform.explain(service, "(after the failed test)"))


@pytest.fixture
def gateway(running_platform: Platform) -> Iterator[GatewayClient]:
    """A client of the e2e gateway acting for the owner "e2e"."""
    with GatewayClient(running_platform.gateway_address, owner=OWNER) as client:
        yield client


@pytest.fixture
def log_dir(platform: Platform) -> Path:
    return platform.options.logs_path


def _finish_leftover_jobs(gateway_address: str, database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        leftovers = conn.execute(
            "SELECT id, owner FROM jobs WHERE state = ANY(%s)", (list(_UNFINISHED),)
        ).fetchall()
    for job_id, owner in leftovers:
        with GatewayClient(gateway_address, owner=owner) as client:
            try:
                client.cancel(job_id)
            except grpc.RpcError as error:
                # It finished between the query and the cancel.
                if error.code() != grpc.StatusCode.FAILED_PRECONDITION:
                    raise

    def settled() -> bool:
        with psycopg.connect(database_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM jobs WHERE state = ANY(%s)", (list(_UNFINISHED),)
            ).fetchone()
        return row is not None and row[0] == 0

    wait_for(
        settled, timeout_seconds=30, what="leftover jobs to finish", poll_seconds=0.1
    )
