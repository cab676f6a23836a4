"""Moving averages over a price series; NaN until a window is full.

A value at index t uses `values[: t + 1]` only, so a decision taken at the
close of candle t never sees later prices. The loops are compiled kernels in
`backcast.engine.kernels`.
"""

from __future__ import annotations

import numpy as np

from backcast.engine import kernels
from backcast.engine.candles import FloatArray


def simple_moving_average(values: FloatArray, period: int) -> FloatArray:
    """Mean of the last `period` values; NaN for the first `period - 1`.

    Uses differences of one running sum. The series is shifted by its first
    value before summing so a flat stretch averages to exactly its level and
    the running sum stays small (its rounding is about 1e-16 of the largest
    partial sum, far below any price tick).
    """
    _check_period(period)
    if values.size < period or period == 1:
        return _trivial_average(values, period)
    return kernels.simple_average(_contiguous(values), period)


def exponential_moving_average(values: FloatArray, period: int) -> FloatArray:
    """Exponential average with alpha = 2 / (period + 1); NaN for `period - 1`.

    Seeded with the simple average of the first `period` values at index
    `period - 1`, then y[t] = alpha * x[t] + (1 - alpha) * y[t - 1], run on
    the values shifted by the first one (the average commutes with a shift,
    and a flat stretch there then averages to exactly its level).
    """
    _check_period(period)
    if values.size < period or period == 1:
        return _trivial_average(values, period)
    return kernels.exponential_average(_contiguous(values), period)


def moving_average(values: FloatArray, period: int, kind: str) -> FloatArray:
    """The `kind` ("simple" or "exponential") moving average of `values`."""
    if kind == "simple":
        return simple_moving_average(values, period)
    if kind == "exponential":
        return exponential_moving_average(values, period)
    raise ValueError(f'kind "{kind}" is not one of simple, exponential')


def _trivial_average(values: FloatArray, period: int) -> FloatArray:
    # A window longer than the series never fills; a window of one is the
    # series itself.
    out = np.full(values.shape, np.nan)
    if values.size >= period:
        out[:] = values
    return out


def _contiguous(values: FloatArray) -> FloatArray:
    return np.ascontiguousarray(values, dtype=np.float64)


def _check_period(period: int) -> None:
    if period < 1:
        raise ValueError(f"period {period} must be at least 1")
