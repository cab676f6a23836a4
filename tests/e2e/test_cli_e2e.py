"""The `backcast` command line against the running platform."""

from __future__ import annotations

import json
import re
import socket

import pytest
from e2e_support import OWNER, run_backcast

from backcast.cli.platform import Platform

pytestmark = pytest.mark.e2e


@pytest.fixture
def connection(running_platform: Platform) -> list[str]:
    return ["--gateway", running_platform.gateway_address, "--owner", OWNER]


def _submitted_id(stdout: str) -> int:
    match = re.search(r"backtest (\d+) queued", stdout)
    assert match, stdout
    return int(match.group(1))


def test_submitted_backtest_can_be_watched_inspected_and_listed(
    connection: list[str],
) -> None:
    submitted = run_backcast(
        [
            "submit",
            *connection,
            "--strategy",
            "moving_average_crossover",
            "--param",
            "fast_period=8",
            "--param",
            "slow_period=34",
            "--param",
            "kind=exponential",
            "--instrument",
            "SYN-CLI",
            "--interval",
            "5m",
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-15",
            "--commission",
            "0.001",
        ]
    )
    assert submitted.returncode == 0, submitted.stderr
    backtest_id = _submitted_id(submitted.stdout)

    watched = run_backcast(["watch", str(backtest_id), *connection])
    assert watched.returncode == 0, watched.stderr
    assert "succeeded" in watched.stdout.splitlines()[-1]

    status = run_backcast(["status", str(backtest_id), *connection])
    assert status.returncode == 0, status.stderr
    assert "kind=exponential" in status.stdout
    assert "SYN-CLI, 5m candles" in status.stdout

    result = run_backcast(["result", str(backtest_id), *connection, "--trades", "3"])
    assert result.returncode == 0, result.stderr
    assert "sharpe ratio" in result.stdout
    assert "n candles" in result.stdout and "4,032" in result.stdout

    listed = run_backcast(["list", *connection, "--state", "succeeded"])
    assert listed.returncode == 0, listed.stderr
    assert re.search(rf"^\s*{backtest_id}\s+succeeded", listed.stdout, re.MULTILINE)


def test_submit_json_prints_the_response_and_reuses_the_request_id(
    connection: list[str],
) -> None:
    args = ["submit", *connection, "--strategy", "buy_and_hold", "--json"]
    request_id = "7b0f5a52-3c1e-4a4e-9a3b-2f6d1c9e8a10"

    first = run_backcast([*args, "--request-id", request_id])
    again = run_backcast([*args, "--request-id", request_id])

    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    first_backtest = json.loads(first.stdout)["backtest"]
    assert first_backtest["requestId"] == request_id
    assert first_backtest["spec"]["strategy"] == {"buyAndHold": {}}
    assert json.loads(again.stdout)["backtest"]["id"] == first_backtest["id"]


def test_bad_requests_exit_2_with_one_line_naming_the_problem(
    connection: list[str],
) -> None:
    invalid = run_backcast(["submit", *connection, "--commission", "0.5"])
    unknown_param = run_backcast(["submit", *connection, "--param", "speed=3"])
    missing = run_backcast(["status", "987654", *connection])

    assert invalid.returncode == 2
    assert "INVALID_ARGUMENT" in invalid.stderr
    assert "spec.costs.commission" in invalid.stderr
    assert len(invalid.stderr.strip().splitlines()) == 1
    assert unknown_param.returncode == 2
    assert "speed" in unknown_param.stderr
    assert missing.returncode == 2
    assert "NOT_FOUND" in missing.stderr


def test_another_owner_cannot_see_a_backtest(running_platform: Platform) -> None:
    gateway = ["--gateway", running_platform.gateway_address]
    submitted = run_backcast(["submit", *gateway, "--owner", "alice"])
    backtest_id = _submitted_id(submitted.stdout)

    as_bob = run_backcast(["status", str(backtest_id), *gateway, "--owner", "bob"])

    assert as_bob.returncode == 2
    assert "NOT_FOUND" in as_bob.stderr


def test_cancelling_a_finished_backtest_exits_2(connection: list[str]) -> None:
    submitted = run_backcast(["submit", *connection, "--strategy", "buy_and_hold"])
    backtest_id = _submitted_id(submitted.stdout)
    assert run_backcast(["watch", str(backtest_id), *connection]).returncode == 0

    cancelled = run_backcast(["cancel", str(backtest_id), *connection])

    assert cancelled.returncode == 2
    assert "FAILED_PRECONDITION" in cancelled.stderr


def test_health_reports_serving_and_unreachable_services(
    running_platform: Platform,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{probe.getsockname()[1]}"

    for service in running_platform.services:
        healthy = run_backcast(["health", service.address])
        assert healthy.returncode == 0, (service.name, healthy.stderr)
        assert "SERVING" in healthy.stdout
    unreachable = run_backcast(["health", closed, "--timeout", "2"])
    assert unreachable.returncode == 3, unreachable.stderr


def test_unreachable_gateway_exits_3() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{probe.getsockname()[1]}"

    result = run_backcast(["list", "--gateway", closed])

    assert result.returncode == 3
    assert "UNAVAILABLE" in result.stderr


def test_demo_against_a_running_gateway_succeeds_and_prints_the_table(
    running_platform: Platform,
) -> None:
    result = run_backcast(
        ["demo", "--gateway", running_platform.gateway_address, "--owner", "demo"],
        timeout_seconds=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    header = "id  strategy"
    assert header in result.stdout
    table = result.stdout.split(header, 1)[1].split("\n\n", 1)[0]
    rows = table.splitlines()[2:]
    assert len(rows) == 12
    assert all(row.endswith("succeeded") for row in rows), table
    assert "12 of 12 backtests succeeded" in result.stdout
