"""Performance figures of a simulated backtest, one function per figure.

Conventions (every figure is finite; 0.0 where it is undefined; the full
text is in docs/metrics.md and each result's `metric_definitions`):

- Daily returns: the equity at the last close of each UTC day that holds
  candles (a candle belongs to the day of its open time, so a close at
  midnight ends the day before), each over the one before; the first day's
  over the initial cash. Days without candles give no return. A return after
  a non-positive equity is 0.0.
- Volatility, Sharpe and Sortino annualize daily returns with
  sqrt(periods_per_year): 365 for round-the-clock markets, 252 for
  exchange-hours data (see `periods_per_year`). Standard deviations are the
  sample ones (n - 1); Sortino divides by the downside deviation
  sqrt(mean(min(r, 0) ** 2)) (Sortino and Price, "Performance measurement
  in a downside risk framework", Journal of Investing 3(3), 1994, with a
  target of 0). Fewer than two daily returns (candles on fewer than two UTC
  days) make all three 0.0. The risk-free rate is 0.
- CAGR compounds over calendar years of 365.25 days covered by the candles:
  (last time - first time + interval) seconds, so n daily candles span n
  days. A very short, lucky period would overflow; its rate is capped at
  e**700 - 1. Calmar is CAGR over max drawdown, 0.0 without a drawdown.
- Max drawdown is the largest fall from a running equity peak, as a positive
  fraction; its durations run from the peak's close to each later close
  still below it, in candles and in seconds, a drawdown still open at the
  end included.
- Trade figures count closed trades only; a position open at the end is
  reported apart as `open_trade_pnl`. Profit factor is gross profit over
  gross loss in money, 0.0 without a losing trade.
- Exposure is the share of candles that close with a position held.
- Buy-and-hold buys at the open after the strategy's first decision (the
  first candle after warm-up) and holds to the last close, without costs.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from backcast.engine import kernels
from backcast.engine.candles import Candles, FloatArray, IntArray
from backcast.engine.results import Metrics
from backcast.engine.simulation import Simulation
from backcast.engine.spec import SYNTHETIC_PREFIX

SECONDS_PER_YEAR = 365.25 * 86_400
ROUND_THE_CLOCK_DAYS = 365.0
EXCHANGE_DAYS = 252.0
# exp(700) is about 1e304, just inside float64.
_MAX_LOG_GROWTH = 700.0
# Weekdays of epoch day numbers: day 0, 1970-01-01, was a Thursday.
_SATURDAY, _SUNDAY = 2, 3


class Drawdown(NamedTuple):
    """Max drawdown (a fraction) and the longest drawdown's lengths."""

    fraction: float
    candles: int
    seconds: int


def compute_metrics(
    simulation: Simulation,
    candles: Candles,
    *,
    interval_seconds: int,
    initial_cash: float,
    first_decision: int,
    instrument: str,
) -> Metrics:
    """Every field of `Metrics` for one simulation of `candles`."""
    equity = simulation.equity
    final = float(equity[-1])
    days, day_equity, fall = _equity_figures(simulation, candles.times)
    per_year = periods_per_year(instrument, days)
    daily = _day_returns(day_equity, initial_cash)
    growth = cagr(final / initial_cash, years_covered(candles.times, interval_seconds))
    pnls = simulation.trade_values[:, 3]
    trade_returns = simulation.trade_values[:, 4]
    return Metrics(
        total_return=final / initial_cash - 1.0,
        cagr=growth,
        annualized_volatility=annualized_volatility(daily, per_year),
        sharpe_ratio=sharpe_ratio(daily, per_year),
        max_drawdown=fall.fraction,
        max_drawdown_candles=fall.candles,
        n_trades=simulation.n_trades,
        win_rate=win_rate(pnls),
        profit_factor=profit_factor(pnls),
        exposure=simulation.n_candles_held / equity.size,
        commissions_paid=simulation.commissions_paid,
        buy_and_hold_return=buy_and_hold_return(candles, first_decision),
        final_equity=final,
        n_candles=len(candles),
        periods_per_year=per_year,
        sortino_ratio=sortino_ratio(daily, per_year),
        calmar_ratio=calmar_ratio(growth, fall.fraction),
        max_drawdown_seconds=fall.seconds,
        expectancy=mean_or_zero(pnls),
        expectancy_return=mean_or_zero(trade_returns),
        best_trade_return=best_or_zero(trade_returns),
        worst_trade_return=worst_or_zero(trade_returns),
        open_trade_pnl=simulation.open_trade_pnl,
    )


def _equity_figures(
    simulation: Simulation, times: IntArray
) -> tuple[IntArray, FloatArray, Drawdown]:
    """Days, day closes and drawdown: from the simulation's walk if it kept them."""
    statistics = simulation.statistics
    if statistics is None:
        days, day_equity = kernels.daily_closes(times, simulation.equity)
        return days, day_equity, drawdown(times, simulation.equity)
    fall = Drawdown(
        statistics.max_drawdown,
        statistics.longest_drawdown_candles,
        statistics.longest_drawdown_seconds,
    )
    return statistics.days, statistics.day_equity, fall


def periods_per_year(instrument: str, days: IntArray) -> float:
    """Trading days per year of the data: 365 round the clock, else 252.

    `days` are the epoch day numbers holding candles. Synthetic instruments
    trade round the clock; so does data with candles on both a Saturday and
    a Sunday (UTC). One weekend day alone does not count: Friday-evening
    extended hours in New York and Sunday-evening openings of Asian
    exchanges and currency markets fall on a weekend day in UTC.
    """
    if instrument.startswith(SYNTHETIC_PREFIX):
        return ROUND_THE_CLOCK_DAYS
    weekdays = days % 7
    saturday = bool(np.any(weekdays == _SATURDAY))
    sunday = bool(np.any(weekdays == _SUNDAY))
    return ROUND_THE_CLOCK_DAYS if saturday and sunday else EXCHANGE_DAYS


def daily_returns(
    times: IntArray, equity: FloatArray, initial_cash: float
) -> FloatArray:
    """Return of each UTC day's last equity over the day before's.

    The first day's return is over `initial_cash`; shape (n_days,).
    """
    _, day_equity = kernels.daily_closes(times, equity)
    return _day_returns(day_equity, initial_cash)


def _day_returns(day_equity: FloatArray, initial_cash: float) -> FloatArray:
    return returns_of(np.concatenate(([initial_cash], day_equity)))


def years_covered(times: IntArray, interval_seconds: int) -> float:
    """Years from the first candle's open to the last candle's close."""
    if times.size == 0:
        return 0.0
    return float(times[-1] - times[0] + interval_seconds) / SECONDS_PER_YEAR


def cagr(growth: float, years: float) -> float:
    """Yearly rate that compounds to `growth` (final over initial) in `years`."""
    if years <= 0:
        return 0.0
    if growth <= 0:
        return -1.0
    return math.expm1(min(math.log(growth) / years, _MAX_LOG_GROWTH))


def returns_of(values: FloatArray) -> FloatArray:
    """Each value over the one before, minus one; 0.0 after a non-positive one."""
    before, after = values[:-1], values[1:]
    if bool(np.all(before > 0)):
        return after / before - 1.0
    out = np.zeros(before.shape)
    np.divide(after, before, out=out, where=before > 0)
    return np.where(before > 0, out - 1.0, 0.0)


def annualized_volatility(returns: FloatArray, per_year: float) -> float:
    if returns.size < 2:
        return 0.0
    return float(returns.std(ddof=1)) * math.sqrt(per_year)


def sharpe_ratio(returns: FloatArray, per_year: float) -> float:
    """Mean over sample deviation of returns, annualized; 0.0 when flat."""
    if returns.size < 2:
        return 0.0
    return _annualized_ratio(
        float(returns.mean()), float(returns.std(ddof=1)), per_year
    )


def sortino_ratio(returns: FloatArray, per_year: float) -> float:
    """Mean over downside deviation of returns, annualized; 0.0 without a loss."""
    if returns.size < 2:
        return 0.0
    losses = np.minimum(returns, 0.0)
    downside = math.sqrt(float(np.mean(losses * losses)))
    return _annualized_ratio(float(returns.mean()), downside, per_year)


def _annualized_ratio(mean: float, deviation: float, per_year: float) -> float:
    if not deviation > 0:
        return 0.0
    return mean / deviation * math.sqrt(per_year)


def calmar_ratio(growth_rate: float, max_drawdown: float) -> float:
    """CAGR over max drawdown; 0.0 without a drawdown."""
    if not max_drawdown > 0:
        return 0.0
    return growth_rate / max_drawdown


def drawdown(times: IntArray, equity: FloatArray) -> Drawdown:
    """Max drawdown and the longest one in candles and seconds of `times`."""
    fraction, n_candles, seconds = kernels.drawdown_statistics(times, equity)
    return Drawdown(float(fraction), int(n_candles), int(seconds))


def win_rate(pnls: FloatArray) -> float:
    if pnls.size == 0:
        return 0.0
    return float(np.count_nonzero(pnls > 0)) / pnls.size


def profit_factor(pnls: FloatArray) -> float:
    gross_loss = -float(pnls[pnls < 0].sum())
    if gross_loss <= 0:
        return 0.0
    return float(pnls[pnls > 0].sum()) / gross_loss


def mean_or_zero(values: FloatArray) -> float:
    if values.size == 0:
        return 0.0
    return float(values.mean())


def best_or_zero(values: FloatArray) -> float:
    return float(values.max()) if values.size else 0.0


def worst_or_zero(values: FloatArray) -> float:
    return float(values.min()) if values.size else 0.0


def buy_and_hold_return(candles: Candles, first_decision: int) -> float:
    """Buy at the open after `first_decision`, sell at the last close, no costs."""
    entry = first_decision + 1
    if entry >= len(candles):
        return 0.0
    return float(candles.close[-1] / candles.open[entry]) - 1.0
