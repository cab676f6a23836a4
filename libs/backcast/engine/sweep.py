"""Backtests of many parameter sets over one candle series, sharing the work.

A sweep runs one spec's strategy once per parameter set. The candles are
loaded once, and the indicators are computed once per distinct indicator
across all the sets: the backtests share an `IndicatorMemo` bound to the
candles, so ten crossovers that all use a 50-candle simple average compute
it once. Each result is the one `run_on_candles` gives for that parameter
set alone, figure for figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from backcast import marketdata
from backcast.engine.backtest import run_on_candles
from backcast.engine.candles import Candles
from backcast.engine.indicators import IndicatorMemo
from backcast.engine.results import BacktestResult
from backcast.engine.spec import (
    BacktestSpec,
    StrategySpec,
    resolve_params,
    validate_spec,
)
from backcast.errors import BacktestFailed

ParamSet = Mapping[str, int | float | str]


def run_sweep(
    spec: BacktestSpec, param_sets: Sequence[ParamSet]
) -> list[BacktestResult]:
    """Backtest the spec once per parameter set, loading its candles once.

    Every parameter set is checked before the candles are loaded, so a bad
    one fails the sweep at once. The results are in the order of
    `param_sets`; `spec.strategy.params` is not used.

    Raises:
        BacktestFailed: a spec or parameter set is invalid (the message
            names the set by index), or the candles cannot be loaded.
    """
    specs = [_spec_with(spec, params, index) for index, params in enumerate(param_sets)]
    violations = validate_spec(spec)
    if violations:
        first = violations[0]
        raise BacktestFailed(f"{first.field}: {first.description}", retryable=False)
    loaded = marketdata.load_versioned_candles(spec)
    memo = IndicatorMemo(loaded.candles)
    return [
        run_on_candles(
            one, loaded.candles, data_version=loaded.data_version, indicators=memo
        )
        for one in specs
    ]


def run_sweep_on_candles(
    spec: BacktestSpec,
    candles: Candles,
    param_sets: Sequence[ParamSet],
    *,
    indicators: IndicatorMemo | None = None,
) -> list[BacktestResult]:
    """Backtest `candles` once per parameter set of the spec's strategy.

    `indicators` lets the caller keep the memo, to read what was computed
    or to share it with a later sweep over the same candles; by default the
    sweep makes its own. Results are in the order of `param_sets`.

    Raises:
        BacktestFailed: a parameter set is invalid or a backtest fails.
        ValueError: `indicators` is bound to other candles.
    """
    memo = indicators if indicators is not None else IndicatorMemo(candles)
    if memo.candles is not candles:
        raise ValueError("indicators are bound to other candles than the sweep's")
    specs = [_spec_with(spec, params, index) for index, params in enumerate(param_sets)]
    return [run_on_candles(one, candles, indicators=memo) for one in specs]


def _spec_with(spec: BacktestSpec, params: ParamSet, index: int) -> BacktestSpec:
    """The spec with the strategy's parameters of set `index`, checked."""
    name = spec.strategy.name
    _, violations = resolve_params(name, params, f"param_sets[{index}]")
    if violations:
        first = violations[0]
        raise BacktestFailed(f"{first.field}: {first.description}", retryable=False)
    return replace(spec, strategy=StrategySpec(name, dict(params)))
