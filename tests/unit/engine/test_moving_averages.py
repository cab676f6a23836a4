"""Simple and exponential moving averages against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from backcast.engine.indicators import (
    exponential_moving_average,
    moving_average,
    simple_moving_average,
)

NAN = np.nan


def random_walk(n: int, seed: int) -> np.ndarray:
    steps = np.random.default_rng(seed).normal(0.0, 0.01, n)
    return 100.0 * np.exp(np.cumsum(steps))


def recursive_ema(values: np.ndarray, period: int) -> np.ndarray:
    """The textbook recursion, one value at a time."""
    alpha = 2.0 / (period + 1)
    out = np.full(values.size, NAN)
    out[period - 1] = values[:period].mean()
    for t in range(period, values.size):
        out[t] = alpha * values[t] + (1 - alpha) * out[t - 1]
    return out


def test_simple_average_is_nan_until_its_window_is_full() -> None:
    averages = simple_moving_average(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), 3)

    np.testing.assert_allclose(averages, [NAN, NAN, 2.0, 3.0, 4.0], rtol=1e-15)


def test_exponential_average_is_seeded_with_the_simple_one() -> None:
    # alpha = 0.5: seed (2 + 4 + 6) / 3 = 4, then 0.5 * 8 + 0.5 * 4 = 6,
    # then 0.5 * 4 + 0.5 * 6 = 5.
    averages = exponential_moving_average(np.array([2.0, 4.0, 6.0, 8.0, 4.0]), 3)

    np.testing.assert_allclose(averages, [NAN, NAN, 4.0, 6.0, 5.0], rtol=1e-15)


@pytest.mark.parametrize("period", [2, 3, 10, 200, 4_000])
def test_exponential_average_matches_the_recursion_across_blocks(period: int) -> None:
    values = random_walk(20_000, seed=period)

    np.testing.assert_allclose(
        exponential_moving_average(values, period),
        recursive_ema(values, period),
        rtol=1e-11,
    )


@pytest.mark.parametrize("period", [2, 7, 30, 1_000])
def test_simple_average_matches_a_direct_mean(period: int) -> None:
    values = random_walk(20_000, seed=period)
    windows = np.lib.stride_tricks.sliding_window_view(values, period)
    expected = np.concatenate((np.full(period - 1, NAN), windows.mean(axis=1)))

    np.testing.assert_allclose(
        simple_moving_average(values, period), expected, rtol=1e-11
    )


@pytest.mark.parametrize("kind", ["simple", "exponential"])
def test_flat_prices_average_to_exactly_their_level(kind: str) -> None:
    values = np.full(500, 1.1)

    averages = moving_average(values, 30, kind)

    assert np.all(averages[29:] == 1.1)


@pytest.mark.parametrize("kind", ["simple", "exponential"])
def test_average_of_a_period_of_one_is_the_series(kind: str) -> None:
    values = np.array([3.0, 1.0, 2.0])

    np.testing.assert_allclose(moving_average(values, 1, kind), values, rtol=0)


@pytest.mark.parametrize("kind", ["simple", "exponential"])
def test_series_shorter_than_the_period_has_no_average(kind: str) -> None:
    assert np.all(np.isnan(moving_average(np.array([1.0, 2.0]), 3, kind)))


def test_unknown_kind_and_bad_period_are_rejected() -> None:
    with pytest.raises(ValueError, match="kind"):
        moving_average(np.ones(5), 2, "weighted")
    with pytest.raises(ValueError, match="period 0"):
        simple_moving_average(np.ones(5), 0)
