"""Sweeps give each parameter set's own result and compute shared work once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from engine_support import crossover

from backcast import marketdata
from backcast.engine.backtest import run_on_candles
from backcast.engine.candles import Candles
from backcast.engine.indicators import IndicatorMemo
from backcast.engine.results import BacktestResult
from backcast.engine.spec import (
    BacktestSpec,
    Costs,
    Execution,
    Interval,
    StrategySpec,
)
from backcast.engine.sweep import run_sweep, run_sweep_on_candles
from backcast.errors import BacktestFailed
from backcast.marketdata.synthetic import synthetic_candles

START = datetime(2023, 3, 1, tzinfo=UTC)
N_CANDLES = 6_000
DEFAULT_EXECUTION = Execution()
LONG_SHORT_WITH_STOPS = Execution(
    direction="long_short", stop_loss=0.01, take_profit=0.02, fill="close"
)

SWEEPS: dict[str, list[Mapping[str, int | float | str]]] = {
    "moving_average_crossover": [
        crossover(5, 20),
        crossover(10, 20),
        crossover(5, 40, "exponential"),
        crossover(10, 40, "exponential"),
        crossover(1, 20),
    ],
    "rsi_mean_reversion": [
        {"period": 14, "oversold": 30.0, "overbought": 70.0},
        {"period": 14, "oversold": 25.0, "overbought": 75.0},
        {"period": 7, "oversold": 30.0, "overbought": 70.0},
    ],
    "bollinger_breakout": [
        {"period": 20, "width": 2.0},
        {"period": 20, "width": 1.5},
        {"period": 40, "width": 2.0},
    ],
    "macd_trend": [
        {"fast_period": 12, "slow_period": 26, "signal_period": 9},
        {"fast_period": 12, "slow_period": 26, "signal_period": 5},
        {"fast_period": 6, "slow_period": 26, "signal_period": 9},
    ],
    "donchian_breakout": [
        {"entry_period": 20, "exit_period": 10},
        {"entry_period": 40, "exit_period": 10},
        {"entry_period": 20, "exit_period": 20},
    ],
    "buy_and_hold": [{}, {}],
}


def sweep_spec(
    strategy: str,
    execution: Execution = DEFAULT_EXECUTION,
    n_candles: int = N_CANDLES,
) -> BacktestSpec:
    return BacktestSpec(
        strategy=StrategySpec(strategy, {}),
        instrument="SYN-SWEEP",
        interval=Interval.FIVE_MINUTES,
        start_at=START,
        end_at=START + timedelta(minutes=5 * n_candles),
        costs=Costs(commission=0.0005, slippage_bps=1.0),
        initial_cash=50_000.0,
        execution=execution,
    )


def spec_candles(spec: BacktestSpec) -> Candles:
    return synthetic_candles(spec.instrument, spec.interval, spec.start_at, spec.end_at)


def alone(
    spec: BacktestSpec, candles: Candles, params: Mapping[str, int | float | str]
) -> BacktestResult:
    one = replace(spec, strategy=StrategySpec(spec.strategy.name, dict(params)))
    return run_on_candles(one, candles)


def assert_same_result(actual: BacktestResult, expected: BacktestResult) -> None:
    # Bit for bit: the sweep runs the same arithmetic on the same values.
    assert actual.metrics == expected.metrics
    for column, values in vars(expected.trades).items():
        np.testing.assert_array_equal(getattr(actual.trades, column), values)
    for column, values in vars(expected.equity_curve).items():
        np.testing.assert_array_equal(getattr(actual.equity_curve, column), values)


@pytest.mark.parametrize("execution", [DEFAULT_EXECUTION, LONG_SHORT_WITH_STOPS])
@pytest.mark.parametrize("strategy", sorted(SWEEPS))
def test_sweep_gives_each_parameter_set_its_own_backtest_result(
    strategy: str, execution: Execution
) -> None:
    if strategy == "buy_and_hold" and execution.direction == "long_short":
        pytest.skip("buy_and_hold has no short rule")
    spec = sweep_spec(strategy, execution)
    candles = spec_candles(spec)
    param_sets = SWEEPS[strategy]

    results = run_sweep_on_candles(spec, candles, param_sets)

    assert len(results) == len(param_sets)
    for params, result in zip(param_sets, results, strict=True):
        assert_same_result(result, alone(spec, candles, params))
    # The sets trade, so the comparison covers fills and not only flat runs.
    assert all(result.metrics.exposure > 0 for result in results)


def test_sweep_computes_each_distinct_average_once() -> None:
    spec = sweep_spec("moving_average_crossover")
    candles = spec_candles(spec)
    memo = IndicatorMemo(candles)
    param_sets = [
        crossover(fast, slow) for fast in (5, 10, 20) for slow in (30, 50, 100)
    ]

    run_sweep_on_candles(spec, candles, param_sets, indicators=memo)

    # 9 backtests, 18 averages asked for, 6 distinct ones.
    assert memo.n_computed == 6
    assert sorted(key[2] for key in memo.keys()) == [5, 10, 20, 30, 50, 100]


def test_sweeps_of_different_strategies_share_one_memo() -> None:
    candles = spec_candles(sweep_spec("moving_average_crossover"))
    memo = IndicatorMemo(candles)
    crossovers = [crossover(10, 20), crossover(20, 40)]
    bands = [{"period": 20, "width": 2.0}, {"period": 40, "width": 1.0}]

    run_sweep_on_candles(
        sweep_spec("moving_average_crossover"), candles, crossovers, indicators=memo
    )
    n_averages = memo.n_computed
    run_sweep_on_candles(
        sweep_spec("bollinger_breakout"), candles, bands, indicators=memo
    )

    # The bands' middles are the crossovers' simple averages over 20 and 40;
    # only their two deviations are new.
    assert n_averages == 3
    assert memo.n_computed == 5
    assert {key[0] for key in memo.keys()} == {"moving_average", "rolling_deviation"}


def test_a_parameter_set_repeated_reuses_every_indicator() -> None:
    spec = sweep_spec("donchian_breakout", Execution(direction="long_short"))
    candles = spec_candles(spec)
    memo = IndicatorMemo(candles)
    params = {"entry_period": 20, "exit_period": 10}

    first, second = run_sweep_on_candles(
        spec, candles, [params, params], indicators=memo
    )

    # Long and short channels: highest and lowest over each of two periods.
    assert memo.n_computed == 4
    assert_same_result(second, first)


def test_memo_hands_out_read_only_indicators() -> None:
    memo = IndicatorMemo(spec_candles(sweep_spec("rsi_mean_reversion")))

    rsi = memo.rsi(14)

    assert memo.rsi(14) is rsi
    with pytest.raises(ValueError, match="read-only"):
        rsi[-1] = 0.0


def test_memo_bound_to_other_candles_is_refused() -> None:
    spec = sweep_spec("moving_average_crossover")
    memo = IndicatorMemo(spec_candles(spec))

    with pytest.raises(ValueError, match="other candles"):
        run_sweep_on_candles(
            spec, spec_candles(spec), [crossover(5, 20)], indicators=memo
        )


def test_run_sweep_loads_the_candles_once(monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[BacktestSpec] = []
    load = marketdata.load_versioned_candles

    def counted_load(spec: BacktestSpec) -> marketdata.VersionedCandles:
        loads.append(spec)
        return load(spec)

    monkeypatch.setattr(marketdata, "load_versioned_candles", counted_load)
    spec = sweep_spec("macd_trend")
    param_sets = SWEEPS["macd_trend"]

    results = run_sweep(spec, param_sets)

    assert len(loads) == 1
    candles = spec_candles(spec)
    for params, result in zip(param_sets, results, strict=True):
        assert_same_result(result, alone(spec, candles, params))
        assert result.data_version is not None


def test_invalid_parameter_set_fails_the_sweep_before_loading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_load(spec: BacktestSpec) -> marketdata.VersionedCandles:
        raise AssertionError("candles loaded for an invalid sweep")

    monkeypatch.setattr(marketdata, "load_versioned_candles", no_load)
    param_sets = [crossover(5, 20), crossover(30, 20)]

    with pytest.raises(BacktestFailed, match=r"param_sets\[1\]") as failure:
        run_sweep(sweep_spec("moving_average_crossover"), param_sets)

    assert failure.value.retryable is False
