"""The displayed equity curve is capped in size and keeps every extreme."""

from __future__ import annotations

import numpy as np
import pytest

from backcast.engine.downsample import MAX_POINTS, downsample_indices


def test_short_curve_is_kept_whole() -> None:
    values = np.arange(MAX_POINTS, dtype=np.float64)

    np.testing.assert_array_equal(downsample_indices(values), np.arange(MAX_POINTS))


@pytest.mark.parametrize("n", [MAX_POINTS + 1, 7_919, 100_000, 525_600])
def test_long_curve_is_capped_and_keeps_ends_and_extremes(n: int) -> None:
    values = 1e4 + np.cumsum(np.random.default_rng(n).normal(size=n))

    kept = downsample_indices(values)

    assert kept.size <= MAX_POINTS
    assert np.all(np.diff(kept) > 0)
    assert {0, n - 1, int(np.argmin(values)), int(np.argmax(values))} <= set(
        kept.tolist()
    )


def test_every_isolated_spike_survives() -> None:
    n = 100_000
    values = np.sin(np.arange(n) / 5_000.0)
    rng = np.random.default_rng(7)
    # Spikes far apart, so each is the extreme of its own bucket.
    spikes = np.sort(rng.choice(np.arange(0, n, 1_000), size=60, replace=False))
    values[spikes[::2]] += 10.0
    values[spikes[1::2]] -= 10.0

    kept = downsample_indices(values)

    assert set(spikes.tolist()) <= set(kept.tolist())


def test_smaller_caps_are_honoured() -> None:
    values = np.random.default_rng(3).normal(size=1_000)

    kept = downsample_indices(values, max_points=10)

    assert kept.size <= 10
    assert {0, 999, int(np.argmin(values)), int(np.argmax(values))} <= set(
        kept.tolist()
    )


def test_cap_below_four_points_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_points"):
        downsample_indices(np.ones(10), max_points=3)
