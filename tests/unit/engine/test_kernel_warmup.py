"""Importing the warm-up module leaves nothing for a backtest to compile."""

from __future__ import annotations

from engine_support import crossover, spec_of

import backcast.engine.warmup  # noqa: F401
from backcast.engine import kernels, run_backtest

KERNELS = (
    kernels.simple_average,
    kernels.exponential_average,
    kernels.above_target,
    kernels.fill_orders,
    kernels.drawdown_statistics,
    kernels.daily_closes,
)


def test_backtests_after_warm_up_compile_no_new_kernel() -> None:
    compiled = [len(kernel.signatures) for kernel in KERNELS]

    for kind in ("simple", "exponential"):
        spec = spec_of("moving_average_crossover", crossover(3, 8, kind))
        run_backtest(spec)
    run_backtest(spec_of("buy_and_hold"))

    assert all(compiled)
    assert [len(kernel.signatures) for kernel in KERNELS] == compiled
