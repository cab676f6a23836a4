"""Importing this module compiles or loads every engine kernel ahead of use.

Worker slots preload it in their fork server, so each slot starts with the
kernels in memory and the first backtest pays no compilation. It also sets
the allocator to keep freed array memory (`backcast.engine.memory`), which
the slots inherit.
"""

from __future__ import annotations

import numpy as np

from backcast.engine import kernels, signal_kernels
from backcast.engine.candles import FloatArray, IntArray
from backcast.engine.memory import retain_freed_memory


def warm_kernels() -> None:
    """Run each kernel once on a few candles, as a backtest would call it."""
    # numba compiles one variant per array flag: candle columns and the
    # indicators a memo keeps are read-only, other intermediate arrays not.
    times = np.arange(8, dtype=np.int64) * 3_600
    for prices, stamps in (
        (_read_only(np.linspace(10.0, 11.0, 8)), _read_only_times(times)),
        (np.linspace(10.0, 11.0, 8), times),
    ):
        fast = kernels.simple_average(prices, 2)
        slow = kernels.exponential_average(prices, 3)
        kernels.above_target(fast, slow, 1e-12)
        kernels.above_target(_read_only(fast), _read_only(slow), 1e-12)
        for exponential in (False, True):
            sides = signal_kernels.crossover_sides(prices, 2, 3, exponential, 0.0, True)
        equity, *_ = kernels.fill_orders(
            sides,
            stamps,
            (prices, prices, prices, prices),
            (0.001, 1e-4),
            100.0,
            False,
            False,
            (0.0, 0.0),
            1.0,
        )
        # A simulation rebuilt from stored fills measures its equity here.
        for values in (equity, _read_only(equity)):
            for any_times in (times, _read_only_times(times)):
                kernels.drawdown_statistics(any_times, values)
                kernels.daily_closes(any_times, values)
        _warm_signal_kernels(prices)


def _warm_signal_kernels(prices: FloatArray) -> None:
    rsi = signal_kernels.wilder_rsi(prices, 2)
    signal_kernels.rolling_deviation(prices, 2)
    signal_kernels.prior_extreme(prices, 2, True)
    rising = rsi > 50.0
    signal_kernels.held_target(rising, ~rising, ~rising, rising, 2, True)
    # The lines come read-only from the indicator memo; the closes may be
    # either.
    line = _read_only(np.array(prices))
    signal_kernels.macd_target(line, line, line[2:], prices, 1e-12, True)


def _read_only(values: FloatArray) -> FloatArray:
    view = values.view()
    view.flags.writeable = False
    return view


def _read_only_times(values: IntArray) -> IntArray:
    view = values.view()
    view.flags.writeable = False
    return view


retain_freed_memory()
warm_kernels()
