"""Fixtures of the worker fault tests: a gateway and a scheduler as processes
on a database of each test's own; the tests add the workers they need."""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest
from database_support import fresh_database
from worker_faults_support import Fleet, Timings

from backcast.cli.client import GatewayClient


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # Keep the call phase's report on the item, so the fleet can tell a failure.
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def fleet(
    postgres_server_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Fleet]:
    """Gateway and scheduler, fresh for each test: a fault leaves leases,
    sessions and frozen processes behind that no clean-up can vouch for."""
    root = tmp_path_factory.mktemp("worker-faults")
    with fresh_database(postgres_server_url) as database_url:
        running = Fleet(database_url, root, Timings())
        try:
            running.start()
            yield running
        finally:
            report = getattr(request.node, "report_call", None)
            if report is not None and report.failed:
                print(running.explain_all("(after the failed test)"))
            running.stop()


@pytest.fixture
def gateway(fleet: Fleet) -> Iterator[GatewayClient]:
    """A client of the fleet's gateway."""
    with fleet.client() as client:
        yield client
