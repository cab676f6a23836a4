"""After the warm-up, single backtests and sweeps compile no kernel either."""

from __future__ import annotations

from dataclasses import replace

from engine_support import candles_of, crossover, spec_of

import backcast.engine.warmup  # noqa: F401
from backcast.engine import kernels, run_backtest, signal_kernels
from backcast.engine.spec import STRATEGIES, Execution, resolve_params
from backcast.engine.sweep import run_sweep_on_candles

KERNELS = (
    signal_kernels.crossover_sides,
    kernels.fill_orders,
    kernels.above_target,
    signal_kernels.macd_target,
    signal_kernels.held_target,
)


def test_backtests_and_sweeps_after_warm_up_compile_no_new_kernel() -> None:
    compiled = [len(kernel.signatures) for kernel in KERNELS]
    closes = [10.0 + (t % 7) - (t % 3) for t in range(120)]
    candles = candles_of(closes, closes)

    for kind in ("simple", "exponential"):
        for direction in ("long_only", "long_short"):
            execution = Execution(direction=direction, fill="close")
            spec = replace(
                spec_of("moving_average_crossover", crossover(3, 8, kind)),
                execution=execution,
            )
            run_backtest(spec)
            run_sweep_on_candles(spec, candles, [crossover(2, 5, kind)])
    for name in STRATEGIES:
        params, _ = resolve_params(name, {}, "spec")
        run_sweep_on_candles(spec_of(name, params), candles, [params])

    assert all(compiled)
    assert [len(kernel.signatures) for kernel in KERNELS] == compiled
