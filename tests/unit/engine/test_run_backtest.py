"""A backtest end to end: metrics, trades and equity curve from a spec."""

from __future__ import annotations

import json
import math
from datetime import timedelta

import numpy as np
import pytest
from engine_support import START, candles_of, crossover, spec_of

from backcast.engine import run_backtest
from backcast.engine.backtest import run_on_candles
from backcast.engine.results import BacktestResult
from backcast.engine.spec import BacktestSpec, Interval
from backcast.errors import BacktestFailed


def assert_all_finite(result: BacktestResult) -> None:
    for name, value in result.metrics.to_dict().items():
        assert math.isfinite(value), name
    for trade in result.trades:
        assert all(
            math.isfinite(value)
            for value in (
                trade.entry_price,
                trade.exit_price,
                trade.units,
                trade.pnl,
                trade.return_fraction,
            )
        )
    assert all(math.isfinite(point.equity) for point in result.equity_curve)


def test_buy_and_hold_gains_on_a_rising_series() -> None:
    candles = candles_of([10, 11, 12, 13], [10.5, 11.5, 12.5, 13.5])

    result = run_on_candles(spec_of("buy_and_hold", initial_cash=100.0), candles)

    # 9 units bought at 11 with 1.0 left: 1 + 9 * 13.5 = 122.5 at the end.
    metrics = result.metrics
    np.testing.assert_allclose(
        [metrics.final_equity, metrics.total_return, metrics.buy_and_hold_return],
        [122.5, 0.225, 13.5 / 11 - 1],
        rtol=1e-12,
    )
    assert metrics.n_trades == 0
    assert metrics.exposure == 0.75
    assert metrics.n_candles == 4
    assert metrics.max_drawdown == 0.0
    assert len(result.trades) == 0
    # The open position: 9 units for 99, marked at 13.5.
    np.testing.assert_allclose(metrics.open_trade_pnl, 9 * 13.5 - 99, rtol=1e-12)


def test_closed_trade_carries_fill_times_prices_and_result() -> None:
    # Crossover 2/3 on these closes wants [0, 0, 1, 1, 1, 0, 0]: buy at
    # open 3 (3.5), sell at open 6 (1.5).
    closes = [1.0, 2.0, 3.0, 4.0, 3.0, 2.0, 1.0]
    opens = [1.0, 1.5, 2.5, 3.5, 3.5, 2.5, 1.5]
    candles = candles_of(opens, closes)
    spec = spec_of("moving_average_crossover", crossover(2, 3), initial_cash=100.0)

    result = run_on_candles(spec, candles)

    # floor(100 / 3.5) = 28 units for 98, 2 left; sold for 42: pnl -56.
    (trade,) = result.trades
    assert trade.entry_at == START + timedelta(minutes=3)
    assert trade.exit_at == START + timedelta(minutes=6)
    assert trade.units == 28.0
    np.testing.assert_allclose(
        [trade.entry_price, trade.exit_price, trade.pnl, trade.return_fraction],
        [3.5, 1.5, -56.0, -56.0 / 98.0],
        rtol=1e-12,
    )
    metrics = result.metrics
    assert (metrics.n_trades, metrics.win_rate, metrics.profit_factor) == (1, 0.0, 0.0)
    np.testing.assert_allclose(
        [metrics.exposure, metrics.final_equity, metrics.buy_and_hold_return],
        [3 / 7, 44.0, 1.0 / 3.5 - 1],
        rtol=1e-12,
    )


def test_equity_stays_flat_when_strategy_never_trades() -> None:
    closes = [float(price) for price in range(20, 0, -1)]
    spec = spec_of("moving_average_crossover", crossover(2, 3), initial_cash=100.0)

    result = run_on_candles(spec, candles_of(closes, closes))

    metrics = result.metrics
    assert metrics.final_equity == 100.0
    assert [point.equity for point in result.equity_curve] == [100.0] * 20
    for name in (
        "total_return",
        "cagr",
        "annualized_volatility",
        "sharpe_ratio",
        "max_drawdown",
        "max_drawdown_candles",
        "n_trades",
        "win_rate",
        "profit_factor",
        "exposure",
        "commissions_paid",
    ):
        assert getattr(metrics, name) == 0, name


def test_equity_curve_is_stamped_at_candle_closes() -> None:
    candles = candles_of([10, 11, 12, 13], [10.5, 11.5, 12.5, 13.5])

    result = run_on_candles(spec_of("buy_and_hold"), candles)

    assert [point.at for point in result.equity_curve] == [
        START + timedelta(minutes=minute) for minute in (1, 2, 3, 4)
    ]
    assert result.equity_curve[-1].equity == result.metrics.final_equity


@pytest.mark.parametrize(
    "spec",
    [
        spec_of("buy_and_hold", n_candles=2),
        spec_of("buy_and_hold", interval=Interval.ONE_DAY, n_candles=3_000),
        spec_of("moving_average_crossover", crossover(10, 30), n_candles=50_000),
        spec_of(
            "moving_average_crossover",
            crossover(5, 50, "exponential"),
            commission=0.002,
            slippage_bps=5,
            initial_cash=1e6,
            interval=Interval.ONE_HOUR,
            n_candles=20_000,
        ),
        spec_of("moving_average_crossover", crossover(5, 50), initial_cash=1.0),
    ],
    ids=["two-candles", "daily", "minutes", "hourly-costs", "too-poor-to-buy"],
)
def test_metrics_hold_no_nan_or_inf(spec: BacktestSpec) -> None:
    result = run_backtest(spec)

    assert_all_finite(result)
    assert result.metrics.n_candles == spec.n_candles
    assert len(result.equity_curve) <= 2_000


def test_long_backtest_downsamples_its_equity_curve() -> None:
    spec = spec_of("moving_average_crossover", crossover(10, 30), n_candles=50_000)

    result = run_backtest(spec)

    assert 1_000 < len(result.equity_curve) <= 2_000
    assert result.equity_curve[-1].equity == result.metrics.final_equity
    assert result.equity_curve[0].at == START + timedelta(minutes=1)


def test_result_survives_a_round_trip_through_json() -> None:
    spec = spec_of("moving_average_crossover", crossover(5, 20), n_candles=5_000)
    result = run_backtest(spec)

    stored = json.loads(json.dumps(result.to_dict(), allow_nan=False))

    assert result.trades
    assert BacktestResult.from_dict(stored) == result
    assert all(type(value) in (int, float) for value in stored["metrics"].values())


def test_progress_is_reported_in_order_up_to_one() -> None:
    fractions: list[float] = []

    run_backtest(spec_of(n_candles=500), progress=fractions.append)

    assert fractions == sorted(fractions)
    assert len(fractions) >= 3
    assert fractions[-1] == 1.0


def test_backtest_is_deterministic() -> None:
    spec = spec_of("moving_average_crossover", crossover(10, 30), n_candles=20_000)

    assert run_backtest(spec) == run_backtest(spec)


def test_warm_up_longer_than_the_period_fails_for_good() -> None:
    spec = spec_of("moving_average_crossover", crossover(10, 30), n_candles=30)

    with pytest.raises(BacktestFailed, match="needs at least 31 candles") as failure:
        run_backtest(spec)

    assert failure.value.retryable is False


def test_invalid_parameters_fail_for_good() -> None:
    spec = spec_of("moving_average_crossover", crossover(30, 10))

    with pytest.raises(BacktestFailed, match="slow_period") as failure:
        run_backtest(spec)

    assert failure.value.retryable is False


def test_instrument_without_data_fails_for_good() -> None:
    with pytest.raises(BacktestFailed, match="no market data") as failure:
        run_backtest(spec_of(instrument="BTCUSD"))

    assert failure.value.retryable is False
