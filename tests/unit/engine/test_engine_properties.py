"""Properties of every backtest of random valid candles and random strategies."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
from engine_support import START, spec_of
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from backcast.engine.backtest import run_on_candles
from backcast.engine.candles import Candles
from backcast.engine.results import BacktestResult
from backcast.engine.simulation import Simulation, simulate
from backcast.engine.spec import (
    STRATEGIES,
    BacktestSpec,
    Costs,
    Execution,
    Interval,
    resolve_params,
)
from backcast.engine.strategies import SIGNALS

PROPERTY_SETTINGS = settings(max_examples=50, deadline=None)
HOUR = Interval.ONE_HOUR


@st.composite
def candle_series(draw: st.DrawFn) -> Candles:
    """50 to 400 hourly candles of a random walk, with gaps and wicks."""
    n = draw(st.integers(50, 400))
    seed = draw(st.integers(0, 2**32 - 1))
    volatility = draw(st.floats(0.001, 0.05))
    rng = np.random.default_rng(seed)

    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, volatility, n)))
    # Opens away from the previous close, so stops also fill at gapped opens.
    gaps = np.exp(rng.normal(0.0, volatility / 4, n))
    open_ = np.concatenate(([100.0], close[:-1])) * gaps
    wick = np.exp(np.abs(rng.normal(0.0, volatility / 2, (2, n))))
    high = np.maximum(open_, close) * wick[0]
    low = np.minimum(open_, close) / wick[1]
    first = int(START.timestamp())
    times = first + HOUR.seconds * np.arange(n, dtype=np.int64)
    return Candles.of(times, open_, high, low, close, rng.uniform(0, 1e3, n))


@st.composite
def strategy_params(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A strategy and parameters whose warm-up fits in 50 candles."""
    name = draw(st.sampled_from(sorted(STRATEGIES)))
    if name == "moving_average_crossover":
        fast = draw(st.integers(1, 15))
        slow = draw(st.integers(fast + 1, 40))
        kind = draw(st.sampled_from(["simple", "exponential"]))
        return name, {"fast_period": fast, "slow_period": slow, "kind": kind}
    if name == "rsi_mean_reversion":
        return name, {
            "period": draw(st.integers(2, 30)),
            "oversold": draw(st.floats(5.0, 49.0)),
            "overbought": draw(st.floats(51.0, 95.0)),
        }
    if name == "bollinger_breakout":
        return name, {
            "period": draw(st.integers(2, 40)),
            "width": draw(st.floats(0.25, 3.0)),
        }
    if name == "macd_trend":
        fast = draw(st.integers(1, 10))
        slow = draw(st.integers(fast + 1, 25))
        return name, {
            "fast_period": fast,
            "slow_period": slow,
            "signal_period": draw(st.integers(1, 10)),
        }
    if name == "donchian_breakout":
        return name, {
            "entry_period": draw(st.integers(2, 40)),
            "exit_period": draw(st.integers(2, 40)),
        }
    return name, {}


@st.composite
def executions(draw: st.DrawFn, strategy: str) -> Execution:
    shorts = STRATEGIES[strategy].supports_short and draw(st.booleans())
    no_level = st.just(0.0)
    return Execution(
        fill=draw(st.sampled_from(["next_open", "close"])),
        units=draw(st.sampled_from(["whole", "fractional"])),
        position_fraction=draw(st.floats(0.1, 1.0)),
        direction="long_short" if shorts else "long_only",
        stop_loss=draw(no_level | st.floats(0.005, 0.2)),
        take_profit=draw(no_level | st.floats(0.005, 0.5)),
    )


@st.composite
def backtests(draw: st.DrawFn) -> tuple[BacktestSpec, Candles]:
    candles = draw(candle_series())
    name, raw = draw(strategy_params())
    params, violations = resolve_params(name, raw, "spec")
    assert not violations
    spec = spec_of(
        name,
        params,
        commission=draw(st.floats(0.0, 0.01)),
        slippage_bps=draw(st.floats(0.0, 50.0)),
        initial_cash=draw(st.floats(1_000.0, 1e6)),
        interval=HOUR,
        n_candles=len(candles),
    )
    return replace(spec, execution=draw(executions(name))), candles


def simulation_of(spec: BacktestSpec, candles: Candles) -> Simulation:
    """The simulation `run_on_candles` makes of the spec, with its arrays."""
    execution = spec.execution
    shorts = execution.direction == "long_short"
    signal = SIGNALS[spec.strategy.name]
    signals = signal(candles, spec.strategy.params, shorts=shorts)
    assume(signals.first_decision + 1 < len(candles))
    return simulate(
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


def result_of(spec: BacktestSpec, candles: Candles) -> BacktestResult:
    simulation_of(spec, candles)  # skips specs too short for their warm-up
    return run_on_candles(spec, candles)


@PROPERTY_SETTINGS
@given(backtests())
def test_equity_is_cash_plus_marked_position_at_every_candle(
    backtest: tuple[BacktestSpec, Candles],
) -> None:
    spec, candles = backtest

    simulation = simulation_of(spec, candles)

    marked = simulation.cash + simulation.units * candles.close
    scale = np.maximum(np.abs(simulation.equity), spec.initial_cash)
    np.testing.assert_allclose(simulation.equity / scale, marked / scale, atol=1e-12)


@PROPERTY_SETTINGS
@given(backtests())
def test_equity_stays_flat_when_strategy_never_trades(
    backtest: tuple[BacktestSpec, Candles],
) -> None:
    spec, candles = backtest
    execution = spec.execution

    simulation = simulate(
        candles,
        np.zeros(len(candles)),
        spec.costs,
        spec.initial_cash,
        fill_at_close=execution.fill == "close",
        fractional=execution.units == "fractional",
        stop_loss=execution.stop_loss,
        take_profit=execution.take_profit,
        position_fraction=execution.position_fraction,
    )

    assert np.all(simulation.equity == spec.initial_cash)
    assert simulation.n_trades == 0
    assert simulation.commissions_paid == 0.0
    assert simulation.open_trade_pnl == 0.0


@PROPERTY_SETTINGS
@given(backtests(), st.floats(0.0, 0.05))
def test_higher_commission_never_raises_final_equity(
    backtest: tuple[BacktestSpec, Candles], extra_commission: float
) -> None:
    spec, candles = backtest
    # Fractional long-only units: each round trip then multiplies equity by a
    # factor that falls as commission rises. With whole units a dearer entry
    # can buy one unit fewer of a losing trade and end richer, and a short
    # after a loss larger than the equity could turn the factor negative.
    execution = replace(spec.execution, units="fractional", direction="long_only")
    cheap = replace(spec, execution=execution)
    dear_costs = Costs(
        commission=min(cheap.costs.commission + extra_commission, 0.0999),
        slippage_bps=cheap.costs.slippage_bps,
    )
    dear = replace(cheap, costs=dear_costs)

    cheap_final = simulation_of(cheap, candles).equity[-1]
    dear_final = simulation_of(dear, candles).equity[-1]

    assert dear_final <= cheap_final * (1 + 1e-12)


@PROPERTY_SETTINGS
@given(backtests())
def test_every_metric_is_finite(backtest: tuple[BacktestSpec, Candles]) -> None:
    spec, candles = backtest

    metrics = result_of(spec, candles).metrics

    for name, value in metrics.to_dict().items():
        assert math.isfinite(value), name


@PROPERTY_SETTINGS
@given(backtests())
def test_closed_trades_are_wins_losses_or_even(
    backtest: tuple[BacktestSpec, Candles],
) -> None:
    spec, candles = backtest

    result = result_of(spec, candles)

    pnl = result.trades.pnl
    wins, losses = int(np.sum(pnl > 0)), int(np.sum(pnl < 0))
    even = int(np.sum(pnl == 0))
    metrics = result.metrics
    assert metrics.n_trades == len(result.trades) == wins + losses + even
    np.testing.assert_allclose(metrics.win_rate * metrics.n_trades, wins, atol=1e-9)
