"""Fixtures of the head fault tests: a database per test module, platforms
of processes started on demand, and an embedded PostgreSQL to take down.

Every platform a test starts is stopped after it; when the test failed,
each service's last log lines are printed first.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Generator, Iterator, Mapping
from pathlib import Path

import pytest
from database_support import fresh_database
from head_faults_support import ControlledPostgres, StartPlatform

from backcast.cli.platform import Platform, PlatformOptions


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # Keep each phase's report on the item so fixtures can tell a failure.
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="module")
def database_url(postgres_server_url: str) -> Iterator[str]:
    """A database of each module's own: its services outlive no module, and
    never lease another module's jobs."""
    with fresh_database(postgres_server_url) as url:
        yield url


@pytest.fixture
def start_platform(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[StartPlatform]:
    """Starts gateway, scheduler and workers as processes, stopped after the
    test. Call it as `start_platform(database_url, env, n_workers=..., ...)`.
    """
    platforms: list[Platform] = []

    def start(
        database_url: str,
        env: Mapping[str, str],
        *,
        n_workers: int = 2,
        slots_per_worker: int = 1,
        worker_id_prefix: str = "worker",
    ) -> Platform:
        root = tmp_path / f"platform-{len(platforms) + 1}"
        options = PlatformOptions(
            n_workers=n_workers,
            slots_per_worker=slots_per_worker,
            gateway_port=0,
            scheduler_port=0,
            data_dir=root,
            log_dir=root / "logs",
            database_url=database_url,
            extra_env=dict(env),
            worker_id_prefix=worker_id_prefix,
            stop_grace_seconds=5.0,
            # Slot processes compile the engine when its cache is stale, which
            # takes a minute on a busy two-core machine.
            start_timeout_seconds=180.0,
        )
        platform = Platform(options)
        platforms.append(platform)
        platform.start()
        return platform

    yield start

    report = getattr(request.node, "report_call", None)
    for platform in platforms:
        if report is not None and report.failed:
            for service in platform.services:
                print(platform.explain(service, "(after the failed test)"))
        platform.stop()


@pytest.fixture
def embedded_postgres() -> Iterator[ControlledPostgres]:
    """A PostgreSQL server of the test's own, which it may stop and start."""
    # Not under tmp_path: the server runs as another user, which must reach
    # its data directory, and the socket path must stay short.
    data_dir = Path(tempfile.mkdtemp(prefix="backcast-faults-pg-"))
    server = ControlledPostgres(data_dir / "pgdata")
    try:
        server.open()
        yield server
    finally:
        server.close()
        shutil.rmtree(data_dir, ignore_errors=True)
