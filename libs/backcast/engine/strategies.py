"""Target positions of every registered strategy, one decision per candle.

A strategy turns candles into `Signals`: for each candle t, the side it
wants to hold after deciding at t's close (1 fully long, 0 flat, -1 fully
short, as int8), and the first candle whose decision counts, i.e. the end of
its indicators' warm-up. Decisions before that are 0. The simulation turns
changes of the target into orders; strategies never see fills or equity.

Each name in `backcast.engine.spec.STRATEGIES` has one function in `SIGNALS`,
called with parameters already resolved by `resolve_params`. With `shorts`
(the long_short direction) a strategy also follows its short rule, the
mirror of its long one; without, its target is never below 0. A strategy
reads its indicators from `indicators`, a memo shared by the backtests of a
sweep over the same candles; without one it computes them for itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from backcast.engine import kernels, signal_kernels
from backcast.engine.candles import Candles, FloatArray
from backcast.engine.indicators import IndicatorMemo
from backcast.engine.kernels import Int8Array

Params = Mapping[str, int | float | str]

# Relative size of rounding noise in a moving average of prices.
_NOISE = 1e-12


@dataclass(frozen=True, eq=False)
class Signals:
    """Side wanted after each candle's close (int8), and where decisions start."""

    target: Int8Array
    first_decision: int


class SignalFunction(Protocol):
    """A strategy's rule: candles and resolved parameters in, signals out."""

    def __call__(
        self,
        candles: Candles,
        params: Params,
        *,
        shorts: bool = False,
        indicators: IndicatorMemo | None = None,
    ) -> Signals: ...


def moving_average_crossover(
    candles: Candles,
    params: Params,
    *,
    shorts: bool = False,
    indicators: IndicatorMemo | None = None,
) -> Signals:
    """Long while the fast average closes above the slow one, flat otherwise.

    "Above" means by more than 1e-12 of the slow average. Both averages must
    exist, so the first decision is at index slow_period - 1 (an exponential
    average is seeded with the simple one over its first window, so it has
    the same warm-up). The short rule: short while the fast average is below
    the slow one by more than 1e-12 of the fast one.
    """
    fast_period = int(params["fast_period"])
    slow_period = int(params["slow_period"])
    kind = str(params["kind"])
    first = slow_period - 1
    if indicators is None:
        # Alone, a backtest compares the averages as it computes them, in
        # one pass that stores neither; the comparison is the one below.
        _check_averages(fast_period, slow_period, kind)
        target = signal_kernels.crossover_sides(
            _prices(candles.close),
            fast_period,
            slow_period,
            kind == "exponential",
            _NOISE,
            shorts,
        )
        return Signals(target=target, first_decision=first)

    fast = indicators.moving_average("close", fast_period, kind)
    slow = indicators.moving_average("close", slow_period, kind)
    # A gap within rounding noise counts as none, so a flat market does not
    # flip the position on the last bit of a sum. NaN compares false, so
    # warm-up candles come out flat.
    target = kernels.above_target(fast, slow, _NOISE)
    if shorts:
        target -= kernels.above_target(slow, fast, _NOISE)
    return Signals(target=target, first_decision=first)


def buy_and_hold(
    candles: Candles,
    params: Params,
    *,
    shorts: bool = False,
    indicators: IndicatorMemo | None = None,
) -> Signals:
    """Long from the first candle's decision to the end; it has no short rule."""
    return Signals(target=np.ones(len(candles), dtype=np.int8), first_decision=0)


def rsi_mean_reversion(
    candles: Candles,
    params: Params,
    *,
    shorts: bool = False,
    indicators: IndicatorMemo | None = None,
) -> Signals:
    """Long from an RSI below `oversold` until an RSI above `overbought`.

    RSI is Wilder's over `period` changes of the close (see
    `signal_kernels.wilder_rsi`); its first value, and the first decision, is
    at index `period`. The short rule: short from an RSI above `overbought`
    until one below `oversold`, where the position turns long again.
    """
    period = int(params["period"])
    oversold = float(params["oversold"])
    overbought = float(params["overbought"])
    rsi = (indicators or IndicatorMemo(candles)).rsi(period)
    # NaN compares false, so the warm-up never enters.
    low = rsi < oversold
    high = rsi > overbought
    target = signal_kernels.held_target(low, high, high, low, period, shorts)
    return Signals(target=target, first_decision=period)


def bollinger_breakout(
    candles: Candles,
    params: Params,
    *,
    shorts: bool = False,
    indicators: IndicatorMemo | None = None,
) -> Signals:
    """Long from a close above the upper band until a close below the middle.

    The middle band is the simple average of the last `period` closes (the
    current one included), the upper and lower bands lie `width` population
    standard deviations of those closes above and below it. The first
    decision is at index period - 1. The short rule: short from a close below
    the lower band until a close above the middle.
    """
    period = int(params["period"])
    width = float(params["width"])
    memo = indicators or IndicatorMemo(candles)
    close = candles.close
    middle = memo.moving_average("close", period, "simple")
    spread = width * memo.rolling_deviation(period)
    above_upper = close > middle + spread
    below_lower = close < middle - spread
    target = signal_kernels.held_target(
        above_upper, close < middle, below_lower, close > middle, period - 1, shorts
    )
    return Signals(target=target, first_decision=period - 1)


def macd_trend(
    candles: Candles,
    params: Params,
    *,
    shorts: bool = False,
    indicators: IndicatorMemo | None = None,
) -> Signals:
    """Long while the MACD line is above its signal line, flat otherwise.

    MACD = EMA(close, fast_period) - EMA(close, slow_period), from index
    slow_period - 1; the signal line is the EMA of MACD over signal_period,
    so the first decision is at index slow_period + signal_period - 2. The
    averages are those of `exponential_moving_average` (seeded with a simple
    one). "Above" means by more than 1e-12 of the close. The short rule:
    short while the MACD line is below the signal line by as much.
    """
    fast_period = int(params["fast_period"])
    slow_period = int(params["slow_period"])
    signal_period = int(params["signal_period"])
    close = _prices(candles.close)
    first = slow_period + signal_period - 2
    if first >= close.size:
        return Signals(target=np.zeros(close.size, dtype=np.int8), first_decision=first)

    memo = indicators or IndicatorMemo(candles)
    fast = memo.moving_average("close", fast_period, "exponential")
    slow = memo.moving_average("close", slow_period, "exponential")
    signal = memo.macd_signal(fast_period, slow_period, signal_period)
    # A flat market makes both lines exactly 0.0; past a step, rounding of
    # the averages must not read as a cross.
    target = signal_kernels.macd_target(fast, slow, signal, close, _NOISE, shorts)
    return Signals(target=target, first_decision=first)


def donchian_breakout(
    candles: Candles,
    params: Params,
    *,
    shorts: bool = False,
    indicators: IndicatorMemo | None = None,
) -> Signals:
    """Long from a close above the channel high until a close below its low.

    The entry channel is the highest high of the `entry_period` candles
    before the current one, the exit channel the lowest low of the
    `exit_period` candles before it (the current candle is never in its own
    channel). The first decision is at index max(entry_period, exit_period).
    The short rule: short from a close below the lowest low of the entry
    window until a close above the highest high of the exit window.
    """
    entry_period = int(params["entry_period"])
    exit_period = int(params["exit_period"])
    memo = indicators or IndicatorMemo(candles)
    close = candles.close
    entry_high = memo.prior_extreme("high", entry_period, True)
    exit_low = memo.prior_extreme("low", exit_period, False)
    long_entry = close > entry_high
    long_exit = close < exit_low
    # The short channels cost two more passes; a long-only run skips them.
    short_entry = short_exit = np.zeros(close.size, dtype=np.bool_)
    if shorts:
        entry_low = memo.prior_extreme("low", entry_period, False)
        exit_high = memo.prior_extreme("high", exit_period, True)
        short_entry = close < entry_low
        short_exit = close > exit_high

    first = max(entry_period, exit_period)
    target = signal_kernels.held_target(
        long_entry, long_exit, short_entry, short_exit, first, shorts
    )
    return Signals(target=target, first_decision=first)


def _check_averages(fast_period: int, slow_period: int, kind: str) -> None:
    # The checks `moving_average` makes, for the pass that does not call it.
    if kind not in ("simple", "exponential"):
        raise ValueError(f'kind "{kind}" is not one of simple, exponential')
    for period in (fast_period, slow_period):
        if period < 1:
            raise ValueError(f"period {period} must be at least 1")


def _prices(values: FloatArray) -> FloatArray:
    return np.ascontiguousarray(values, dtype=np.float64)


SIGNALS: dict[str, SignalFunction] = {
    "moving_average_crossover": moving_average_crossover,
    "buy_and_hold": buy_and_hold,
    "rsi_mean_reversion": rsi_mean_reversion,
    "bollinger_breakout": bollinger_breakout,
    "macd_trend": macd_trend,
    "donchian_breakout": donchian_breakout,
}
