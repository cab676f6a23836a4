"""Each performance figure against values worked out by hand."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from engine_support import candles_of

from backcast.engine.metrics import (
    SECONDS_PER_YEAR,
    annualized_volatility,
    buy_and_hold_return,
    cagr,
    candle_returns,
    longest_drawdown,
    max_drawdown,
    periods_per_year,
    profit_factor,
    sharpe_ratio,
    win_rate,
    years_covered,
)


def test_drawdown_is_the_largest_fall_from_a_running_peak() -> None:
    equity = np.array([100.0, 120.0, 90.0, 110.0, 130.0, 125.0])

    # 120 -> 90 is a fall of 25%; closes 2 and 3 sit below 120, close 5
    # below 130.
    np.testing.assert_allclose(max_drawdown(equity), 0.25, rtol=1e-15)
    assert longest_drawdown(equity) == 2


def test_drawdown_still_open_at_the_end_counts() -> None:
    equity = np.array([100.0, 90.0, 80.0, 95.0])

    np.testing.assert_allclose(max_drawdown(equity), 0.2, rtol=1e-15)
    assert longest_drawdown(equity) == 3


def test_rising_equity_has_no_drawdown() -> None:
    equity = np.array([100.0, 100.0, 101.0, 105.0])

    assert max_drawdown(equity) == 0.0
    assert longest_drawdown(equity) == 0


def test_cagr_compounds_over_calendar_years() -> None:
    np.testing.assert_allclose(cagr(2.0, 2.0), math.sqrt(2.0) - 1.0, rtol=1e-15)
    np.testing.assert_allclose(cagr(0.5, 0.5), -0.75, rtol=1e-15)
    assert cagr(1.5, 0.0) == 0.0
    assert cagr(0.0, 1.0) == -1.0


def test_cagr_of_a_short_lucky_period_stays_finite() -> None:
    assert math.isfinite(cagr(1.5, 60 / SECONDS_PER_YEAR))


def test_years_run_from_first_open_to_last_close() -> None:
    times = np.array([0, 86_400, 2 * 86_400], dtype=np.int64)

    np.testing.assert_allclose(years_covered(times, 86_400), 3 / 365.25, rtol=1e-15)


def test_periods_per_year_count_candles_of_the_interval() -> None:
    np.testing.assert_allclose(periods_per_year(86_400), 365.25, rtol=1e-15)
    np.testing.assert_allclose(periods_per_year(60), 525_960.0, rtol=1e-15)


def test_volatility_and_sharpe_annualize_per_candle_returns() -> None:
    equity = np.array([100.0, 101.0, 99.99, 101.9898])
    returns = [0.01, -0.01, 0.02]
    per_year = 365.25

    np.testing.assert_allclose(candle_returns(equity), returns, rtol=1e-12)
    deviation = statistics.stdev(returns)
    np.testing.assert_allclose(
        annualized_volatility(candle_returns(equity), per_year),
        deviation * math.sqrt(per_year),
        rtol=1e-10,
    )
    np.testing.assert_allclose(
        sharpe_ratio(candle_returns(equity), per_year),
        statistics.mean(returns) / deviation * math.sqrt(per_year),
        rtol=1e-10,
    )


def test_flat_equity_has_zero_volatility_and_sharpe() -> None:
    returns = candle_returns(np.full(10, 100.0))

    assert annualized_volatility(returns, 365.25) == 0.0
    assert sharpe_ratio(returns, 365.25) == 0.0


def test_win_rate_and_profit_factor_use_money_of_closed_trades() -> None:
    pnls = np.array([10.0, -5.0, 20.0, -15.0])

    np.testing.assert_allclose(win_rate(pnls), 0.5, rtol=1e-15)
    np.testing.assert_allclose(profit_factor(pnls), 30.0 / 20.0, rtol=1e-15)


@pytest.mark.parametrize("pnls", [[], [5.0, 3.0], [0.0]])
def test_profit_factor_is_zero_without_a_losing_trade(pnls: list[float]) -> None:
    assert profit_factor(np.array(pnls)) == 0.0


def test_win_rate_is_zero_without_trades() -> None:
    assert win_rate(np.array([])) == 0.0


def test_buy_and_hold_buys_the_open_after_the_first_decision() -> None:
    candles = candles_of([10, 20, 30], [15, 25, 45])

    np.testing.assert_allclose(buy_and_hold_return(candles, 0), 45 / 20 - 1, rtol=1e-15)
    np.testing.assert_allclose(buy_and_hold_return(candles, 1), 45 / 30 - 1, rtol=1e-15)
    assert buy_and_hold_return(candles, 2) == 0.0
