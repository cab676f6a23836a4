"""One backtest from spec to result: candles, signals, fills, metrics.

The execution model is in `backcast.engine.simulation`, the conventions of
the figures in `backcast.engine.metrics`. Equity points are stamped with the
close time of their candle (open time + interval); trades with the open
times of their fill candles.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import fields

import numpy as np

from backcast import marketdata
from backcast.engine.candles import Candles
from backcast.engine.downsample import downsample_indices
from backcast.engine.indicators import IndicatorMemo
from backcast.engine.metrics import compute_metrics
from backcast.engine.results import (
    AccountFills,
    BacktestResult,
    EquityCurve,
    Metrics,
    TradeTable,
)
from backcast.engine.simulation import Simulation, simulate
from backcast.engine.spec import BacktestSpec, resolve_params, validate_spec
from backcast.engine.strategies import SIGNALS, Params
from backcast.errors import BacktestFailed

Progress = Callable[[float], None]


def run_backtest(
    spec: BacktestSpec, *, progress: Progress | None = None
) -> BacktestResult:
    """Load the spec's candles and backtest them; BacktestFailed on failure.

    `progress(fraction)` is called after loading, after the signals, after
    the simulation and with 1.0 at the end.
    """
    violations = validate_spec(spec)
    if violations:
        first = violations[0]
        raise BacktestFailed(f"{first.field}: {first.description}", retryable=False)
    loaded = marketdata.load_versioned_candles(spec)
    report = progress or _ignore
    report(0.25)
    return run_on_candles(
        spec, loaded.candles, progress=report, data_version=loaded.data_version
    )


def run_on_candles(
    spec: BacktestSpec,
    candles: Candles,
    *,
    progress: Progress | None = None,
    data_version: str | None = None,
    indicators: IndicatorMemo | None = None,
) -> BacktestResult:
    """Backtest `candles` with the spec's strategy, costs and initial cash.

    `data_version` names the candles for the result (see
    `backcast.marketdata.VersionedCandles`); None when they have no version.
    `indicators`, a memo bound to these same candles, lends the strategy
    the indicators computed before and keeps those it computes (see
    `backcast.engine.sweep`); the result is the same with or without it.
    """
    report = progress or _ignore
    params = _resolved_params(spec)
    signal_function = SIGNALS.get(spec.strategy.name)
    if signal_function is None:
        raise BacktestFailed(
            f"strategy {spec.strategy.name} is not implemented by this engine",
            retryable=False,
        )
    execution = spec.execution
    shorts = execution.direction == "long_short"
    signals = signal_function(candles, params, shorts=shorts, indicators=indicators)
    n = len(candles)
    if signals.first_decision + 1 >= n:
        raise BacktestFailed(
            f"strategy {spec.strategy.name} needs at least "
            f"{signals.first_decision + 2} candles (its warm-up and one to trade "
            f"on); the period holds {n} {spec.interval.value} candles",
            retryable=False,
        )
    report(0.5)
    simulation = simulate(
        candles,
        signals.target,
        spec.costs,
        spec.initial_cash,
        fill_at_close=execution.fill == "close",
        fractional=execution.units == "fractional",
        shorts=shorts,
        stop_loss=execution.stop_loss,
        take_profit=execution.take_profit,
        position_fraction=execution.position_fraction,
    )
    report(0.75)
    metrics = compute_metrics(
        simulation,
        candles,
        interval_seconds=spec.interval.seconds,
        initial_cash=spec.initial_cash,
        first_decision=signals.first_decision,
        instrument=spec.instrument,
    )
    _check_finite(metrics)
    result = BacktestResult(
        metrics=metrics,
        trades=_trades(simulation),
        account_fills=_account_fills(simulation),
        equity_curve=_equity_curve(simulation, candles, spec.interval.seconds),
        data_version=data_version,
    )
    report(1.0)
    return result


def _resolved_params(spec: BacktestSpec) -> Params:
    name = spec.strategy.name
    params, violations = resolve_params(
        name, spec.strategy.params, f"spec.strategy.{name}"
    )
    if violations:
        first = violations[0]
        raise BacktestFailed(f"{first.field}: {first.description}", retryable=False)
    return params


def _trades(simulation: Simulation) -> TradeTable:
    # Columns straight from the kernel's arrays: a record per closed trade
    # would be the costliest step of a backtest with thousands of trades.
    times = simulation.trade_times
    values = simulation.trade_values.T
    return TradeTable(times[:, 0], times[:, 1], *values)


def _account_fills(simulation: Simulation) -> AccountFills:
    # Copies: the kernel's state array is (n_fills, 2), its columns strided.
    states = simulation.fill_states
    return AccountFills(
        at=simulation.fill_times,
        cash=np.ascontiguousarray(states[:, 0]),
        units=np.ascontiguousarray(states[:, 1]),
    )


def _equity_curve(
    simulation: Simulation, candles: Candles, interval_seconds: int
) -> EquityCurve:
    kept = downsample_indices(simulation.equity)
    return EquityCurve(
        at=candles.times[kept] + interval_seconds, equity=simulation.equity[kept]
    )


def _check_finite(metrics: Metrics) -> None:
    # Every figure is defined to stay finite; a NaN here is a bug to report,
    # not a number to store. Fields, not `to_dict`, whose copy costs more.
    for field in fields(metrics):
        name = field.name
        value = getattr(metrics, name)
        if not math.isfinite(value):
            raise BacktestFailed(
                f"metric {name} came out as {value}; the engine could not "
                "evaluate this backtest",
                retryable=False,
            )


def _ignore(fraction: float) -> None:
    """Progress sink for callers that do not follow progress."""
