"""The single-pass kernels give what their separate passes give, bit for bit."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from backcast.engine import kernels, signal_kernels
from backcast.engine.candles import Candles
from backcast.engine.indicators import moving_average
from backcast.engine.metrics import compute_metrics
from backcast.engine.simulation import Simulation, simulate
from backcast.engine.spec import Costs

NOISE = 1e-12


def random_walk(n: int, seed: int) -> np.ndarray:
    steps = np.random.default_rng(seed).normal(0.0, 0.002, n)
    return 57.0 * np.exp(np.cumsum(steps))


def stepped_flat(n: int) -> np.ndarray:
    # Flat stretches make the averages equal up to rounding: the noise margin
    # must decide the same way in both passes.
    return np.where(np.arange(n) < n // 2, 1.1, 1.3)


def separate_sides(
    values: np.ndarray, fast: int, slow: int, kind: str, shorts: bool
) -> np.ndarray:
    fast_average = moving_average(values, fast, kind)
    slow_average = moving_average(values, slow, kind)
    sides = kernels.above_target(fast_average, slow_average, NOISE)
    if shorts:
        sides -= kernels.above_target(slow_average, fast_average, NOISE)
    return sides


@pytest.mark.parametrize("shorts", [False, True])
@pytest.mark.parametrize("kind", ["simple", "exponential"])
@pytest.mark.parametrize(
    ("fast", "slow"),
    [(1, 2), (3, 7), (10, 30), (30, 10), (50, 3_000), (2, 9_000)],
)
@pytest.mark.parametrize("series", ["walk", "stepped"])
def test_crossover_pass_compares_the_separate_averages_bit_for_bit(
    series: str, fast: int, slow: int, kind: str, shorts: bool
) -> None:
    n = 8_000
    values = random_walk(n, fast * slow) if series == "walk" else stepped_flat(n)

    sides = signal_kernels.crossover_sides(
        values, fast, slow, kind == "exponential", NOISE, shorts
    )

    expected = separate_sides(values, fast, slow, kind, shorts)
    assert sides.dtype == np.int8
    np.testing.assert_array_equal(sides, expected)
    if n > max(fast, slow) and series == "walk":
        assert np.count_nonzero(np.diff(sides)) > 2


def test_crossover_pass_stays_flat_on_a_series_shorter_than_its_windows() -> None:
    sides = signal_kernels.crossover_sides(
        random_walk(20, 1), 5, 30, False, NOISE, True
    )

    np.testing.assert_array_equal(sides, np.zeros(20, dtype=np.int8))


def gapped_candles(n: int, seed: int) -> Candles:
    """Hourly candles with gaps of up to four days, so some days hold none."""
    rng = np.random.default_rng(seed)
    close = random_walk(n, seed)
    open_ = np.concatenate(([close[0]], close[:-1])) * np.exp(rng.normal(0, 1e-3, n))
    high = np.maximum(open_, close) * 1.002
    low = np.minimum(open_, close) / 1.002
    steps = rng.choice([3_600, 3_600, 3_600, 7_200, 4 * 86_400], n)
    times = 1_700_000_000 + np.cumsum(steps).astype(np.int64)
    return Candles.of(times, open_, high, low, close, np.ones(n))


OPTIONS: list[dict[str, Any]] = [
    {},
    {"fill_at_close": True},
    {"shorts": True, "stop_loss": 0.004, "take_profit": 0.006},
    {"fractional": True, "position_fraction": 0.4},
    {"shorts": True, "fill_at_close": True, "stop_loss": 0.003},
]


def walk(candles: Candles, options: dict[str, Any]) -> Simulation:
    sides = separate_sides(candles.close, 5, 20, "simple", True)
    if not options.get("shorts", False):
        sides = np.maximum(sides, 0).astype(np.int8)
    costs = Costs(commission=0.001, slippage_bps=2.0)
    return simulate(candles, sides, costs, 10_000.0, **options)


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("seed", [3, 4])
def test_fill_walk_gathers_the_drawdown_and_daily_closes_of_its_equity(
    options: dict[str, Any], seed: int
) -> None:
    candles = gapped_candles(3_000, seed)

    simulation = walk(candles, options)

    statistics = simulation.statistics
    assert statistics is not None
    assert simulation.n_trades > 20
    drawdown = kernels.drawdown_statistics(candles.times, simulation.equity)
    assert (
        statistics.max_drawdown,
        statistics.longest_drawdown_candles,
        statistics.longest_drawdown_seconds,
    ) == drawdown
    days, day_equity = kernels.daily_closes(candles.times, simulation.equity)
    np.testing.assert_array_equal(statistics.days, days)
    np.testing.assert_array_equal(statistics.day_equity, day_equity)
    assert (
        statistics.n_candles_held == replace(simulation, statistics=None).n_candles_held
    )


@pytest.mark.parametrize("options", OPTIONS)
def test_metrics_are_the_same_from_the_walk_or_from_the_equity(
    options: dict[str, Any],
) -> None:
    candles = gapped_candles(2_000, 9)
    simulation = walk(candles, options)

    figures = [
        compute_metrics(
            run,
            candles,
            interval_seconds=3_600,
            initial_cash=10_000.0,
            first_decision=19,
            instrument="SYN-TEST",
        )
        for run in (simulation, replace(simulation, statistics=None))
    ]

    assert figures[0] == figures[1]


def test_float_targets_fill_as_their_signs() -> None:
    candles = gapped_candles(500, 5)
    sides = separate_sides(candles.close, 3, 9, "simple", True)
    scaled = sides * 0.5
    scaled[::7] = np.where(sides[::7] == 0, np.nan, scaled[::7])

    by_sides = simulate(candles, sides, Costs(), 1_000.0, shorts=True)
    by_floats = simulate(candles, scaled, Costs(), 1_000.0, shorts=True)

    np.testing.assert_array_equal(by_floats.equity, by_sides.equity)
    np.testing.assert_array_equal(by_floats.fill_candles, by_sides.fill_candles)
