"""The compiled indicator loops agree with plain definitions of the same figures."""

from __future__ import annotations

import numpy as np
import pytest

from backcast.engine import signal_kernels
from backcast.engine.candles import FloatArray


def random_walk(n: int, seed: int) -> FloatArray:
    steps = np.random.default_rng(seed).normal(0.0, 1.0, n)
    return 1000.0 + np.cumsum(steps)


def test_rsi_matches_hand_values_of_unit_steps() -> None:
    closes = np.array([10.0, 11.0, 12.0, 11.0, 10.0, 9.0, 10.0])

    rsi = signal_kernels.wilder_rsi(closes, 2)

    np.testing.assert_allclose(
        rsi, [np.nan, np.nan, 100, 50, 25, 12.5, 56.25], rtol=1e-12
    )


def test_rsi_of_an_unmoving_price_is_neutral() -> None:
    rsi = signal_kernels.wilder_rsi(np.full(6, 3.0), 3)

    np.testing.assert_array_equal(rsi[3:], [50.0, 50.0, 50.0])


def test_rsi_is_all_warm_up_on_a_series_too_short() -> None:
    assert np.isnan(signal_kernels.wilder_rsi(np.ones(3), 3)).all()


@pytest.mark.parametrize("period", [2, 7, 50])
def test_rolling_deviation_matches_the_population_deviation(period: int) -> None:
    values = random_walk(20_000, seed=period)
    windows = np.lib.stride_tricks.sliding_window_view(values, period)

    deviation = signal_kernels.rolling_deviation(values, period)

    assert np.isnan(deviation[: period - 1]).all()
    # Prices near 1000: the bands need accuracy relative to the price, not to
    # a deviation that may be a millionth of it.
    np.testing.assert_allclose(
        deviation[period - 1 :], windows.std(axis=1), rtol=1e-9, atol=1e-8
    )


def test_rolling_deviation_of_a_flat_stretch_is_exactly_zero() -> None:
    values = np.array([1.3] * 5 + [2.7] * 10)

    deviation = signal_kernels.rolling_deviation(values, 4)

    assert deviation[-1] == 0.0


@pytest.mark.parametrize("period", [1, 3, 25])
@pytest.mark.parametrize("highest", [True, False])
def test_prior_extreme_covers_the_candles_before_each_index(
    period: int, highest: bool
) -> None:
    values = random_walk(200, seed=period)
    pick = np.max if highest else np.min
    expected = [np.nan] * period + [
        pick(values[t - period : t]) for t in range(period, values.size)
    ]

    extreme = signal_kernels.prior_extreme(values, period, highest)

    np.testing.assert_array_equal(extreme, expected)


@pytest.mark.parametrize("n", [4, 5, 6, 9, 10, 11, 23])
def test_prior_extreme_handles_series_that_end_mid_block(n: int) -> None:
    values = random_walk(n, seed=n)
    period = 4
    expected = [np.nan] * min(period, n) + [
        np.min(values[t - period : t]) for t in range(period, n)
    ]

    extreme = signal_kernels.prior_extreme(values, period, False)

    np.testing.assert_array_equal(extreme, expected)


def test_held_target_holds_between_entries_and_exits() -> None:
    entry = np.array([True, False, False, False, True, False])
    exit_ = np.array([False, False, True, False, False, False])
    never = np.zeros(6, dtype=np.bool_)

    target = signal_kernels.held_target(entry, exit_, never, never, 1, False)

    # The entry at 0 is before the first decision.
    np.testing.assert_array_equal(target, [0, 0, 0, 0, 1, 1])
