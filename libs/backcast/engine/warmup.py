"""Importing this module compiles or loads every engine kernel ahead of use.

Worker slots preload it in their fork server, so each slot starts with the
kernels in memory and the first backtest pays no compilation.
"""

from __future__ import annotations

import numpy as np

from backcast.engine import kernels
from backcast.engine.candles import FloatArray


def warm_kernels() -> None:
    """Run each kernel once on a few candles, as a backtest would call it."""
    # numba compiles one variant per array flag: candle columns are
    # read-only, the engine's own intermediate arrays are not.
    for prices in (_read_only(np.linspace(10.0, 11.0, 8)), np.linspace(10.0, 11.0, 8)):
        fast = kernels.simple_average(prices, 2)
        slow = kernels.exponential_average(prices, 3)
        target = kernels.above_target(fast, slow, 1e-12)
        equity, *_ = kernels.fill_orders(
            target,
            prices,
            prices,
            prices,
            prices,
            (0.001, 1e-4),
            100.0,
            False,
            False,
            (0.0, 0.0),
        )
        kernels.equity_statistics(equity)
        kernels.equity_statistics(_read_only(equity))


def _read_only(values: FloatArray) -> FloatArray:
    view = values.view()
    view.flags.writeable = False
    return view


warm_kernels()
