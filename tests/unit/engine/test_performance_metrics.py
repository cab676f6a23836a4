"""Each performance figure against values worked out by hand."""

from __future__ import annotations

import math
import statistics
from datetime import UTC, datetime

import numpy as np
import pytest
from engine_support import candles_of

from backcast.engine.candles import Candles
from backcast.engine.metrics import (
    SECONDS_PER_YEAR,
    annualized_volatility,
    buy_and_hold_return,
    cagr,
    calmar_ratio,
    compute_metrics,
    daily_returns,
    drawdown,
    periods_per_year,
    profit_factor,
    sharpe_ratio,
    sortino_ratio,
    win_rate,
    years_covered,
)
from backcast.engine.simulation import simulate
from backcast.engine.spec import Costs, Interval

HOUR = 3_600
DAY = 86_400
# 2024-01-01 was a Monday.
MONDAY = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp())


def hourly(n: int) -> np.ndarray:
    return MONDAY + HOUR * np.arange(n, dtype=np.int64)


def epoch_days(*dates: tuple[int, int, int]) -> np.ndarray:
    seconds = [datetime(*d, tzinfo=UTC).timestamp() for d in dates]
    return np.array(seconds, dtype=np.int64) // DAY


def test_drawdown_is_the_largest_fall_from_a_running_peak() -> None:
    equity = np.array([100.0, 120.0, 90.0, 110.0, 130.0, 125.0])

    fall = drawdown(hourly(6), equity)

    # 120 -> 90 is a fall of 25%; closes 2 and 3 sit below the peak at
    # close 1, two hours after it; close 5 below 130.
    np.testing.assert_allclose(fall.fraction, 0.25, rtol=1e-15)
    assert (fall.candles, fall.seconds) == (2, 2 * HOUR)


def test_drawdown_still_open_at_the_end_counts() -> None:
    equity = np.array([100.0, 90.0, 80.0, 95.0])

    fall = drawdown(hourly(4), equity)

    np.testing.assert_allclose(fall.fraction, 0.2, rtol=1e-15)
    assert (fall.candles, fall.seconds) == (3, 3 * HOUR)


def test_drawdown_seconds_span_gaps_between_candles() -> None:
    # A weekend without candles between closes 1 and 2: the drawdown from
    # close 0 lasts 2 candles but 3 days.
    times = MONDAY + DAY * np.array([4, 5, 7, 8], dtype=np.int64) - DAY
    equity = np.array([100.0, 95.0, 97.0, 101.0])

    fall = drawdown(times, equity)

    assert (fall.candles, fall.seconds) == (2, 3 * DAY)


def test_rising_equity_has_no_drawdown() -> None:
    fall = drawdown(hourly(4), np.array([100.0, 100.0, 101.0, 105.0]))

    assert fall == (0.0, 0, 0)


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


def test_calmar_is_cagr_over_max_drawdown_and_zero_without_drawdown() -> None:
    np.testing.assert_allclose(calmar_ratio(0.3, 0.15), 2.0, rtol=1e-15)
    assert calmar_ratio(0.3, 0.0) == 0.0


def test_daily_returns_take_each_days_last_close() -> None:
    # Two candles on Monday, two on Tuesday, one opening at Wednesday
    # midnight; the first day's return is over the initial cash.
    times = MONDAY + np.array([0, 12, 30, 47, 48], dtype=np.int64) * HOUR
    equity = np.array([100.0, 110.0, 105.0, 99.0, 120.0])

    returns = daily_returns(times, equity, 100.0)

    np.testing.assert_allclose(returns, [0.1, 99 / 110 - 1, 120 / 99 - 1], rtol=1e-15)


def test_daily_returns_skip_days_without_candles() -> None:
    # Friday, then Monday: one return, not a zero return per weekend day.
    friday = MONDAY + 4 * DAY
    times = np.array([friday, friday + 3 * DAY], dtype=np.int64)

    returns = daily_returns(times, np.array([100.0, 102.0]), 100.0)

    np.testing.assert_allclose(returns, [0.0, 0.02], rtol=1e-15)


def test_volatility_sharpe_and_sortino_annualize_daily_returns() -> None:
    returns = [0.01, -0.01, 0.02]
    per_year = 365.0
    deviation = statistics.stdev(returns)
    # Downside deviation: sqrt(mean(min(r, 0)^2)) = sqrt(0.0001 / 3).
    downside = math.sqrt(0.0001 / 3)
    daily = np.array(returns)

    np.testing.assert_allclose(
        annualized_volatility(daily, per_year),
        deviation * math.sqrt(per_year),
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        sharpe_ratio(daily, per_year),
        statistics.mean(returns) / deviation * math.sqrt(per_year),
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        sortino_ratio(daily, per_year),
        statistics.mean(returns) / downside * math.sqrt(per_year),
        rtol=1e-12,
    )


def test_sortino_is_zero_without_a_losing_day() -> None:
    daily = np.array([0.01, 0.0, 0.03])

    assert sortino_ratio(daily, 365.0) == 0.0
    assert sharpe_ratio(daily, 365.0) > 0.0


def test_fewer_than_two_daily_returns_give_zero_ratios() -> None:
    daily = np.array([0.05])

    assert annualized_volatility(daily, 365.0) == 0.0
    assert sharpe_ratio(daily, 365.0) == 0.0
    assert sortino_ratio(daily, 365.0) == 0.0


def test_flat_equity_has_zero_volatility_and_ratios() -> None:
    daily = np.zeros(10)

    assert annualized_volatility(daily, 365.0) == 0.0
    assert sharpe_ratio(daily, 365.0) == 0.0
    assert sortino_ratio(daily, 365.0) == 0.0


def test_synthetic_instruments_trade_round_the_clock() -> None:
    weekdays = epoch_days((2024, 1, 1), (2024, 1, 2))

    assert periods_per_year("SYN-BTCUSD", weekdays) == 365.0
    assert periods_per_year("ACME", weekdays) == 252.0


def test_candles_on_saturday_and_sunday_mean_round_the_clock() -> None:
    week = epoch_days(*((2024, 1, day) for day in range(1, 8)))

    assert periods_per_year("BTCUSD", week) == 365.0


def test_one_weekend_day_alone_keeps_exchange_days() -> None:
    # Currency markets open on Sunday evening UTC.
    sunday_to_friday = epoch_days(*((2024, 1, day) for day in range(7, 13)))

    assert periods_per_year("EURUSD", sunday_to_friday) == 252.0


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


def daily_candles(closes: list[float]) -> Candles:
    return candles_of(closes, closes, interval=Interval.ONE_DAY)


def test_metrics_of_weekday_data_annualize_with_252_days() -> None:
    # Monday to Friday, daily candles; bought at the open of Tuesday.
    candles = daily_candles([10.0, 10.0, 11.0, 10.0, 12.0])
    target = np.ones(5)
    run = simulate(candles, target, Costs(), 101.0)

    metrics = compute_metrics(
        run,
        candles,
        interval_seconds=DAY,
        initial_cash=101.0,
        first_decision=0,
        instrument="ACME",
    )

    # 10 units at 10, 1 left: equity 101, 101, 111, 101, 121.
    returns = [0.0, 0.0, 111 / 101 - 1, 101 / 111 - 1, 121 / 101 - 1]
    assert metrics.periods_per_year == 252.0
    np.testing.assert_allclose(
        metrics.sharpe_ratio,
        statistics.mean(returns) / statistics.stdev(returns) * math.sqrt(252),
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        metrics.annualized_volatility,
        statistics.stdev(returns) * math.sqrt(252),
        rtol=1e-12,
    )
    # One drawdown, 111 -> 101, one day long.
    np.testing.assert_allclose(metrics.max_drawdown, 10 / 111, rtol=1e-12)
    assert (metrics.max_drawdown_candles, metrics.max_drawdown_seconds) == (1, DAY)
    np.testing.assert_allclose(
        metrics.calmar_ratio, metrics.cagr / metrics.max_drawdown, rtol=1e-15
    )


def test_open_trade_is_left_out_of_trade_figures_but_reported() -> None:
    candles = candles_of([10, 10, 11, 10, 10], [10, 10, 11, 12, 14])
    run = simulate(candles, np.array([1.0, 0.0, 1.0, 1.0, 1.0]), Costs(), 100.0)

    metrics = compute_metrics(
        run,
        candles,
        interval_seconds=60,
        initial_cash=100.0,
        first_decision=0,
        instrument="SYN-TEST",
    )

    # Closed: 9 units 10 -> 11, pnl 9, return 0.1. Open: 10 units bought
    # at 10 for 100, marked at 14: pnl 40.
    assert metrics.n_trades == 1
    np.testing.assert_allclose(
        [
            metrics.expectancy,
            metrics.expectancy_return,
            metrics.best_trade_return,
            metrics.worst_trade_return,
            metrics.open_trade_pnl,
        ],
        [9.0, 0.1, 0.1, 0.1, 40.0],
        rtol=1e-12,
    )
    assert metrics.win_rate == 1.0


def test_open_trade_pnl_counts_the_entry_commission() -> None:
    candles = candles_of([10, 10, 10], [10, 10, 12])
    run = simulate(candles, np.ones(3), Costs(commission=0.01), 100.0)

    metrics = compute_metrics(
        run,
        candles,
        interval_seconds=60,
        initial_cash=100.0,
        first_decision=0,
        instrument="SYN-TEST",
    )

    # floor(100 / 10.1) = 9 units for 90 + 0.9 commission; marked at 12.
    np.testing.assert_allclose(metrics.open_trade_pnl, 9 * 12 - 90.9, rtol=1e-12)
    assert (metrics.n_trades, metrics.expectancy, metrics.best_trade_return) == (
        0,
        0.0,
        0.0,
    )


def test_period_within_one_day_has_zero_sharpe_sortino_and_volatility() -> None:
    candles = candles_of([10, 10, 11, 9, 12], [10, 11, 9, 12, 13])
    run = simulate(candles, np.ones(5), Costs(), 100.0)

    metrics = compute_metrics(
        run,
        candles,
        interval_seconds=60,
        initial_cash=100.0,
        first_decision=0,
        instrument="SYN-TEST",
    )

    assert metrics.total_return != 0.0
    assert (
        metrics.sharpe_ratio,
        metrics.sortino_ratio,
        metrics.annualized_volatility,
    ) == (0.0, 0.0, 0.0)
