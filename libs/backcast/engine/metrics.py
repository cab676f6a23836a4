"""Performance figures of a simulated backtest, one function per figure.

Conventions (every figure is finite; 0.0 where it is undefined):

- Per-candle returns are equity[t] / equity[t - 1] - 1 over consecutive
  closes. Volatility and Sharpe annualize them with periods_per_year, the
  candles per year of the interval (365.25 * 86400 / interval seconds), so
  figures of different intervals are comparable only roughly. The standard
  deviation is the sample one (ddof=1); Sharpe assumes a zero risk-free rate.
- CAGR compounds over calendar years of 365.25 days covered by the candles:
  (last time - first time + interval) seconds, so n daily candles span n
  days. A very short, lucky period would overflow; its rate is capped at
  e**700 - 1.
- Max drawdown is the largest fall from a running equity peak, as a positive
  fraction; its duration is the longest run of closes below an earlier peak,
  a drawdown still open at the end included.
- Trade figures count closed trades only; win rate is the share with a
  positive pnl; profit factor is gross profit over gross loss in money, 0.0
  without a losing trade.
- Exposure is the share of candles that close with a position held.
- Buy-and-hold buys at the open after the strategy's first decision (the
  first candle after warm-up) and holds to the last close, without costs.
"""

from __future__ import annotations

import math

import numpy as np

from backcast.engine import kernels
from backcast.engine.candles import Candles, FloatArray, IntArray
from backcast.engine.results import Metrics
from backcast.engine.simulation import Simulation

SECONDS_PER_YEAR = 365.25 * 86_400
# exp(700) is about 1e304, just inside float64.
_MAX_LOG_GROWTH = 700.0


def compute_metrics(
    simulation: Simulation,
    candles: Candles,
    *,
    interval_seconds: int,
    initial_cash: float,
    first_decision: int,
) -> Metrics:
    """Every field of `Metrics` for one simulation of `candles`."""
    equity = simulation.equity
    final = float(equity[-1])
    per_year = periods_per_year(interval_seconds)
    # One compiled pass gives every figure of the equity curve.
    mean, deviation, drawdown, drawdown_candles = kernels.equity_statistics(equity)
    pnls = simulation.trade_values[:, 3]
    return Metrics(
        total_return=final / initial_cash - 1.0,
        cagr=cagr(final / initial_cash, years_covered(candles.times, interval_seconds)),
        annualized_volatility=deviation * math.sqrt(per_year),
        sharpe_ratio=_annualized_ratio(mean, deviation, per_year),
        max_drawdown=drawdown,
        max_drawdown_candles=drawdown_candles,
        n_trades=simulation.n_trades,
        win_rate=win_rate(pnls),
        profit_factor=profit_factor(pnls),
        exposure=simulation.n_candles_held / equity.size,
        commissions_paid=simulation.commissions_paid,
        buy_and_hold_return=buy_and_hold_return(candles, first_decision),
        final_equity=final,
        n_candles=len(candles),
        periods_per_year=per_year,
    )


def periods_per_year(interval_seconds: int) -> float:
    return SECONDS_PER_YEAR / interval_seconds


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


def candle_returns(equity: FloatArray) -> FloatArray:
    """Return of each close over the previous one; 0.0 after a zero equity."""
    before, after = equity[:-1], equity[1:]
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
    """Mean over standard deviation of returns, annualized; 0.0 when flat."""
    if returns.size < 2:
        return 0.0
    return _annualized_ratio(
        float(returns.mean()), float(returns.std(ddof=1)), per_year
    )


def _annualized_ratio(mean: float, deviation: float, per_year: float) -> float:
    if not deviation > 0:
        return 0.0
    return mean / deviation * math.sqrt(per_year)


def max_drawdown(equity: FloatArray) -> float:
    """Largest fall from a running peak, as a fraction of that peak."""
    return kernels.equity_statistics(equity)[2]


def longest_drawdown(equity: FloatArray) -> int:
    """Most consecutive closes below an earlier peak."""
    return kernels.equity_statistics(equity)[3]


def win_rate(pnls: FloatArray) -> float:
    if pnls.size == 0:
        return 0.0
    return float(np.count_nonzero(pnls > 0)) / pnls.size


def profit_factor(pnls: FloatArray) -> float:
    gross_loss = -float(pnls[pnls < 0].sum())
    if gross_loss <= 0:
        return 0.0
    return float(pnls[pnls > 0].sum()) / gross_loss


def buy_and_hold_return(candles: Candles, first_decision: int) -> float:
    """Buy at the open after `first_decision`, sell at the last close, no costs."""
    entry = first_decision + 1
    if entry >= len(candles):
        return 0.0
    return float(candles.close[-1] / candles.open[entry]) - 1.0
