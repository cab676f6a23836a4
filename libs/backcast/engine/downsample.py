"""Thin an equity curve for display without hiding its peaks and troughs."""

from __future__ import annotations

import numpy as np

from backcast.engine.candles import FloatArray, IntArray

MAX_POINTS = 2_000


def downsample_indices(values: FloatArray, max_points: int = MAX_POINTS) -> IntArray:
    """Sorted indices of at most `max_points` values that keep the extremes.

    The series is cut into equal buckets; each bucket keeps the index of its
    lowest and of its highest value, and the first and last values are
    always kept, so every drawdown and the final value stay visible. A
    series of at most `max_points` values is returned whole.
    """
    if max_points < 4:
        raise ValueError(f"max_points {max_points} must be at least 4")
    n = values.size
    if n <= max_points:
        return np.arange(n, dtype=np.int64)
    # Two points per bucket, plus the first and the last.
    buckets = (max_points - 2) // 2
    width = -(-n // buckets)
    rows = -(-n // width)
    # Padding repeats the last value; argmin and argmax return the first
    # occurrence, so a padded slot never wins over the real last value.
    padded = np.concatenate((values, np.full(rows * width - n, values[-1])))
    grid = padded.reshape(rows, width)
    offsets = np.arange(rows, dtype=np.int64) * width
    lows = offsets + np.argmin(grid, axis=1)
    highs = offsets + np.argmax(grid, axis=1)
    ends = np.array([0, n - 1], dtype=np.int64)
    return np.unique(np.concatenate((ends, lows, highs)))
