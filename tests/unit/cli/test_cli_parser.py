"""Flags of the `backcast` command and how they become a backtest spec."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

import pytest

from backcast.cli.client import ClientSettings
from backcast.cli.commands import build_spec, data_gateway, parse_params, parse_time
from backcast.cli.main import build_parser, main
from backcast.errors import InvalidArgument
from backcast.v1 import spec_pb2

COMMANDS = [
    "up",
    "demo",
    "migrate",
    "submit",
    "status",
    "list",
    "watch",
    "cancel",
    "result",
    "health",
]
SETTINGS = ClientSettings(gateway="127.0.0.1:50051", owner=None)


def _parse(*argv: str) -> argparse.Namespace:
    return build_parser(SETTINGS).parse_args(argv)


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])

    assert exited.value.code == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert f"\n    {command} " in out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_explains_itself(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])

    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: backcast {command}")
    description = out.split("\n\n", 2)[1]
    assert len(description.split()) >= 8


def test_params_become_numbers_where_they_read_as_numbers() -> None:
    params = parse_params(["fast_period=10", "ratio=0.5", "kind=exponential"])

    assert params == {"fast_period": 10, "ratio": 0.5, "kind": "exponential"}


def test_param_without_equals_sign_is_refused() -> None:
    with pytest.raises(InvalidArgument) as raised:
        parse_params(["fast_period"])

    assert raised.value.violations[0].field == "--param"


def test_times_are_utc_and_dates_mean_midnight() -> None:
    assert parse_time("2024-01-01") == datetime(2024, 1, 1, tzinfo=UTC)
    assert parse_time("2024-01-01T09:30:00Z") == datetime(2024, 1, 1, 9, 30, tzinfo=UTC)
    assert parse_time("2024-01-01T10:30:00+01:00") == datetime(
        2024, 1, 1, 9, 30, tzinfo=UTC
    )
    with pytest.raises(argparse.ArgumentTypeError):
        parse_time("first of january")


def test_submit_flags_build_the_spec_proto() -> None:
    args = _parse(
        "submit",
        "--param",
        "fast_period=12",
        "--param",
        "slow_period=26",
        "--param",
        "kind=exponential",
        "--instrument",
        "SYN-ETHUSD",
        "--interval",
        "5m",
        "--start",
        "2024-02-01",
        "--end",
        "2024-03-01T12:00:00Z",
        "--commission",
        "0.001",
        "--slippage-bps",
        "2",
        "--initial-cash",
        "50000",
    )

    spec = build_spec(args)

    crossover = spec.strategy.moving_average_crossover
    assert (crossover.fast_period, crossover.slow_period) == (12, 26)
    assert crossover.kind == spec_pb2.MOVING_AVERAGE_KIND_EXPONENTIAL
    assert spec.instrument == "SYN-ETHUSD"
    assert spec.interval == spec_pb2.CANDLE_INTERVAL_FIVE_MINUTES
    assert spec.start_time.ToDatetime(tzinfo=UTC) == datetime(2024, 2, 1, tzinfo=UTC)
    assert spec.end_time.ToDatetime(tzinfo=UTC) == datetime(2024, 3, 1, 12, tzinfo=UTC)
    assert (spec.costs.commission, spec.costs.slippage_bps) == (0.001, 2.0)
    assert spec.initial_cash == 50_000


def test_buy_and_hold_needs_no_params() -> None:
    spec = build_spec(_parse("submit", "--strategy", "buy_and_hold"))

    assert spec.strategy.WhichOneof("kind") == "buy_and_hold"


def test_unknown_strategy_param_is_refused_before_any_call() -> None:
    args = _parse("submit", "--param", "speed=3", "--param", "kind=wavy")

    with pytest.raises(InvalidArgument) as raised:
        build_spec(args)

    fields = {v.field for v in raised.value.violations}
    assert "spec.strategy.moving_average_crossover.speed" in fields
    assert "spec.strategy.moving_average_crossover.kind" in fields


def test_list_accepts_several_states_in_one_or_many_flags() -> None:
    args = _parse("list", "--state", "queued", "running", "--state", "failed")

    assert args.state == ["queued", "running", "failed"]


def test_client_settings_come_from_the_environment() -> None:
    settings = ClientSettings.from_env(
        {"BACKCAST_GATEWAY": "gw:443", "BACKCAST_OWNER": "alice"}
    )

    assert settings == ClientSettings(
        gateway="gw:443", owner="alice", gateway_from_env=True
    )
    assert ClientSettings.from_env({}) == SETTINGS


@pytest.mark.parametrize(
    ("env", "flags", "expected"),
    [
        ({}, [], None),
        ({}, ["--gateway", "gw:1"], "gw:1"),
        ({"BACKCAST_GATEWAY": "gw:2"}, [], "gw:2"),
        ({"BACKCAST_GATEWAY": "gw:2"}, ["--database-url", "postgresql://db"], None),
        ({"BACKCAST_GATEWAY": "gw:2"}, ["--gateway", "gw:1"], "gw:1"),
    ],
)
def test_data_commands_use_the_gateway_when_named_else_the_database(
    env: dict[str, str], flags: list[str], expected: str | None
) -> None:
    parser = build_parser(ClientSettings.from_env(env))

    for action in (["list"], ["import", "f.csv", "--symbol", "X", "--interval", "1m"]):
        args = parser.parse_args(["data", *action, *flags])
        assert data_gateway(args) == expected


def test_data_commands_refuse_both_gateway_and_database_url() -> None:
    with pytest.raises(SystemExit):
        _parse("data", "list", "--gateway", "gw:1", "--database-url", "postgresql://db")


def test_demo_starts_on_free_ports_and_up_on_the_documented_ones() -> None:
    up = _parse("up")
    demo = _parse("demo")

    assert (up.gateway_port, up.scheduler_port) == (50051, 50052)
    assert (demo.gateway_port, demo.scheduler_port) == (0, 0)
    assert demo.gateway is None
    assert demo.owner == "demo"
