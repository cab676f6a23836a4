"""Backtests of CSV files in this process: the worker's engine, the API's checks."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from backcast.engine import backtest_csv
from backcast.engine.backtest import run_on_candles
from backcast.engine.local import LOCAL_INSTRUMENT, infer_interval, read_candle_file
from backcast.engine.spec import (
    BacktestSpec,
    Costs,
    Execution,
    Interval,
    StrategySpec,
    resolve_params,
)
from backcast.errors import InvalidArgument, InvalidCandleFile

GOLDEN_CANDLES = Path(__file__).resolve().parents[2] / "data" / "golden_candles_1h.csv"
HEADER = "time,open,high,low,close,volume"


def write_csv(path: Path, times: list[int]) -> Path:
    rows = [f"{t},10,11,9,10.5,1" for t in times]
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


def field_errors(error: pytest.ExceptionInfo[InvalidArgument]) -> dict[str, str]:
    return {v.field: v.description for v in error.value.violations}


def test_csv_backtest_matches_the_worker_engine_on_the_same_candles() -> None:
    params = {"fast_period": 10, "slow_period": 30}
    result = backtest_csv(
        GOLDEN_CANDLES,
        "moving_average_crossover",
        params=params,
        commission=0.001,
        fill="close",
        direction="long_short",
    )

    candles, interval = read_candle_file(GOLDEN_CANDLES)
    resolved, _ = resolve_params("moving_average_crossover", params, "spec")
    spec = BacktestSpec(
        strategy=StrategySpec("moving_average_crossover", resolved),
        instrument=LOCAL_INSTRUMENT,
        interval=interval,
        start_at=datetime.fromtimestamp(int(candles.times[0]), UTC),
        end_at=datetime.fromtimestamp(int(candles.times[-1]) + 3600, UTC),
        costs=Costs(commission=0.001),
        execution=Execution(fill="close", direction="long_short"),
    )
    expected = run_on_candles(spec, candles)
    assert interval is Interval.ONE_HOUR
    assert result.metrics == expected.metrics
    np.testing.assert_array_equal(result.trades.pnl, expected.trades.pnl)


def test_interval_is_the_shortest_step_between_candles() -> None:
    hour = 3600
    # A night without candles does not make the data two-hourly.
    times = np.array([0, hour, 2 * hour, 10 * hour, 11 * hour], dtype=np.int64)

    assert infer_interval(times) is Interval.ONE_HOUR


def test_inferred_interval_checks_its_grid(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", [3600, 7200, 12_600])

    with pytest.raises(InvalidCandleFile) as error:
        read_candle_file(path)

    # Steps of 1h and 1h30m give 1h; 12,600 s (3h30m) is off its grid.
    assert error.value.line == 4
    assert "is not on the 1h grid" in error.value.problem


def test_step_of_no_interval_asks_for_one(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", [0, 7200, 14_400])

    with pytest.raises(InvalidArgument) as error:
        backtest_csv(path, "buy_and_hold")

    assert "7200 seconds, is no supported interval" in field_errors(error)["interval"]


def test_single_candle_cannot_give_an_interval(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", [0])

    with pytest.raises(InvalidArgument) as error:
        backtest_csv(path, "buy_and_hold")

    assert "too few to infer the interval" in field_errors(error)["interval"]


def test_given_interval_accepts_its_short_name(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", [t * 14_400 for t in range(5)])

    result = backtest_csv(path, "buy_and_hold", interval="4h")

    assert result.metrics.n_candles == 5
    with pytest.raises(InvalidArgument) as error:
        backtest_csv(path, "buy_and_hold", interval="7m")
    assert field_errors(error)["interval"].startswith('"7m" is not one of 1m, 5m')


def test_bad_params_are_named_with_the_api_wording() -> None:
    params = {"fast_period": 20, "slow_period": 10}

    with pytest.raises(InvalidArgument) as error:
        backtest_csv(GOLDEN_CANDLES, "moving_average_crossover", params=params)

    _, api = resolve_params("moving_average_crossover", params, "spec.strategy")
    assert field_errors(error) == {"params.slow_period": api[0].description}


def test_unknown_strategy_is_reported_on_strategy() -> None:
    with pytest.raises(InvalidArgument) as error:
        backtest_csv(GOLDEN_CANDLES, "momentum")

    assert field_errors(error)["strategy"].startswith('strategy "momentum" not found')


def test_bad_options_are_named_by_argument_before_the_file_is_read() -> None:
    with pytest.raises(InvalidArgument) as error:
        backtest_csv(
            "no-such-file.csv",
            "buy_and_hold",
            commission=0.5,
            fill="open",
            direction="long_short",
            initial_cash=-1.0,
        )

    assert field_errors(error) == {
        "commission": "0.5 is outside [0, 0.1)",
        "initial_cash": "-1.0 is outside (0, 1e+12]",
        "fill": '"open" is not one of next_open, close',
        "direction": "buy_and_hold has no short rule; use long_only",
    }
