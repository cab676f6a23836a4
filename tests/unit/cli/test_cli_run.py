"""`backcast run`: a CSV backtest in this process, its output and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backcast.cli.main import main
from backcast.v1 import result_pb2

GOLDEN_CANDLES = Path(__file__).resolve().parents[2] / "data" / "golden_candles_1h.csv"
CROSSOVER = [
    "run",
    "--data",
    str(GOLDEN_CANDLES),
    "--strategy",
    "moving_average_crossover",
    "--param",
    "fast_period=10",
    "--param",
    "slow_period=20",
    "--commission",
    "0.002",
]


def test_json_output_names_every_proto_metric(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main([*CROSSOVER, "--json"])

    metrics = json.loads(capsys.readouterr().out)
    proto_names = [f.name for f in result_pb2.Metrics.DESCRIPTOR.fields]
    assert code == 0
    assert sorted(metrics) == sorted(proto_names)
    assert metrics["n_candles"] == 2000
    assert metrics["n_trades"] > 0


def test_text_output_is_a_metrics_table(capsys: pytest.CaptureFixture[str]) -> None:
    code = main([*CROSSOVER, "--fill", "close", "--units", "fractional"])

    out = capsys.readouterr().out
    assert code == 0
    assert "2,000 candles closing from 2024-01-01 01:00" in out
    assert "total return" in out
    assert "max drawdown seconds" in out


def test_bad_param_exits_2_naming_the_param(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main([*CROSSOVER, "--param", "slow_period=5"])

    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        "backcast: --param slow_period: slow_period 5 must be greater than "
        "fast_period 10\n"
    )


def test_bad_option_exits_2_naming_the_flag(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main([*CROSSOVER, "--stop-loss", "1.5"])

    assert code == 2
    assert capsys.readouterr().err == "backcast: --stop-loss: 1.5 is outside [0, 1)\n"


def test_bad_row_exits_2_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        "time,open,high,low,close,volume\n"
        "2024-01-01T00:00:00Z,10,11,9,10.5,1\n"
        "2024-01-01T01:00:00Z,10.5,10.2,9,10,1\n",
        encoding="utf-8",
    )

    code = main(["run", "--data", str(path), "--interval", "1h"])

    assert code == 2
    assert capsys.readouterr().err == (
        f"backcast: {path}: line 3: high 10.2 is below open 10.5\n"
    )


def test_missing_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "absent.csv"

    code = main(["run", "--data", str(path)])

    assert code == 2
    assert capsys.readouterr().err == (
        f"backcast: --data: cannot read {path}: No such file or directory\n"
    )


def test_too_few_candles_for_the_warm_up_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["--strategy", "donchian_breakout", "--param", "entry_period=3000"]

    code = main(["run", "--data", str(GOLDEN_CANDLES), *args])

    assert code == 2
    assert "needs at least 3002 candles" in capsys.readouterr().err
