"""Target positions of every registered strategy, one decision per candle.

A strategy turns candles into `Signals`: for each candle t, the position it
wants to hold after deciding at t's close (1.0 fully long, 0.0 flat), and the
first candle whose decision counts, i.e. the end of its indicators' warm-up.
Decisions before that are 0.0. The simulation turns changes of the target
into orders; strategies never see fills or equity.

Each name in `backcast.engine.spec.STRATEGIES` has one function in `SIGNALS`,
called with parameters already resolved by `resolve_params`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from backcast.engine import kernels
from backcast.engine.candles import Candles, FloatArray
from backcast.engine.indicators import moving_average

Params = Mapping[str, int | float | str]

# Relative size of rounding noise in a moving average of prices.
_NOISE = 1e-12


@dataclass(frozen=True, eq=False)
class Signals:
    """Target position after each candle's close, and where decisions start."""

    target: FloatArray
    first_decision: int


SignalFunction = Callable[[Candles, Params], Signals]


def moving_average_crossover(candles: Candles, params: Params) -> Signals:
    """Long while the fast average closes above the slow one, flat otherwise.

    "Above" means by more than 1e-12 of the slow average. Both averages must
    exist, so the first decision is at index slow_period - 1 (an exponential
    average is seeded with the simple one over its first window, so it has
    the same warm-up).
    """
    fast_period = int(params["fast_period"])
    slow_period = int(params["slow_period"])
    kind = str(params["kind"])
    fast = moving_average(candles.close, fast_period, kind)
    slow = moving_average(candles.close, slow_period, kind)
    # A gap within rounding noise counts as none, so a flat market does not
    # flip the position on the last bit of a sum. NaN compares false, so
    # warm-up candles come out flat.
    target = kernels.above_target(fast, slow, _NOISE)
    return Signals(target=target, first_decision=slow_period - 1)


def buy_and_hold(candles: Candles, params: Params) -> Signals:
    """Long from the first candle's decision to the end."""
    return Signals(target=np.ones(len(candles)), first_decision=0)


SIGNALS: dict[str, SignalFunction] = {
    "moving_average_crossover": moving_average_crossover,
    "buy_and_hold": buy_and_hold,
}
