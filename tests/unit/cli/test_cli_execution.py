"""Execution flags of `backcast submit`, and the `strategies` command's help."""

from __future__ import annotations

import math

import pytest

from backcast.cli.client import ClientSettings
from backcast.cli.commands import build_spec, parameter_range_text
from backcast.cli.main import build_parser, main
from backcast.v1 import spec_pb2

SETTINGS = ClientSettings(gateway="127.0.0.1:50051", owner=None)


def test_execution_flags_reach_the_spec() -> None:
    args = build_parser(SETTINGS).parse_args(
        [
            "submit",
            "--strategy",
            "rsi_mean_reversion",
            "--fill",
            "close",
            "--units",
            "fractional",
            "--position-fraction",
            "0.5",
            "--direction",
            "long_short",
            "--stop-loss",
            "0.05",
            "--take-profit",
            "0.2",
        ]
    )

    execution = build_spec(args).execution

    assert execution == spec_pb2.Execution(
        fill=spec_pb2.FILL_CLOSE,
        units=spec_pb2.UNITS_FRACTIONAL,
        position_fraction=0.5,
        direction=spec_pb2.DIRECTION_LONG_SHORT,
        stop_loss=0.05,
        take_profit=0.2,
    )


def test_submit_without_execution_flags_sends_the_defaults() -> None:
    args = build_parser(SETTINGS).parse_args(["submit"])

    execution = build_spec(args).execution

    assert execution.fill == spec_pb2.FILL_NEXT_OPEN
    assert execution.units == spec_pb2.UNITS_WHOLE
    assert execution.direction == spec_pb2.DIRECTION_LONG_ONLY
    assert execution.position_fraction == 1.0


def test_strategies_command_explains_itself(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["strategies", "--help"])

    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("usage: backcast strategies")


def test_open_bounds_read_as_open_intervals() -> None:
    assert parameter_range_text(2.0, 1000.0) == "[2, 1000]"
    assert parameter_range_text(math.nextafter(0.0, 1.0), 10.0) == "(0, 10]"
    assert (
        parameter_range_text(math.nextafter(50.0, 100.0), math.nextafter(100.0, 0.0))
        == "(50, 100)"
    )
