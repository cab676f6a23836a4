"""After the warm-up, the strategies' own kernels need no compilation either."""

from __future__ import annotations

from dataclasses import replace

from engine_support import spec_of

import backcast.engine.warmup  # noqa: F401
from backcast.engine import run_backtest, signal_kernels
from backcast.engine.spec import STRATEGIES, Execution, resolve_params

KERNELS = (
    signal_kernels.wilder_rsi,
    signal_kernels.rolling_deviation,
    signal_kernels.prior_extreme,
    signal_kernels.held_target,
    signal_kernels.macd_target,
)


def test_strategy_backtests_after_warm_up_compile_no_new_kernel() -> None:
    compiled = [len(kernel.signatures) for kernel in KERNELS]

    for name, info in STRATEGIES.items():
        params, _ = resolve_params(name, {}, "spec")
        for direction in ("long_only", "long_short"):
            if direction == "long_short" and not info.supports_short:
                continue
            execution = Execution(direction=direction, stop_loss=0.01)
            run_backtest(replace(spec_of(name, params), execution=execution))

    assert all(compiled)
    assert [len(kernel.signatures) for kernel in KERNELS] == compiled
