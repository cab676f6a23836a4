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
    # Two points per bucket, plus the first and the last. The full buckets
    # are a view of the series, so nothing is copied; numpy's argmin and
    # argmax return the first of equal values.
    buckets = (max_points - 2) // 2
    width = -(-n // buckets)
    n_full = n // width
    grid = values[: n_full * width].reshape(n_full, width)
    offsets = np.arange(n_full, dtype=np.int64) * width
    kept = [np.array([0, n - 1]), offsets + grid.argmin(axis=1)]
    kept.append(offsets + grid.argmax(axis=1))
    rest = values[n_full * width :]
    if rest.size:
        start = n_full * width
        kept.append(np.array([start + rest.argmin(), start + rest.argmax()]))
    # Sorted, then repeats dropped: np.unique hashes integers first, which
    # costs several times more on these few thousand indices.
    merged = np.sort(np.concatenate(kept))
    repeated = np.concatenate(([False], merged[1:] == merged[:-1]))
    return merged[~repeated].astype(np.int64, copy=False)
