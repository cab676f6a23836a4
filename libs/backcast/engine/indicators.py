"""Moving averages over a price series; NaN until a window is full.

Both averages are vectorized numpy. A value at index t uses `values[: t + 1]`
only, so a decision taken at the close of candle t never sees later prices.
"""

from __future__ import annotations

import math

import numpy as np

from backcast.engine.candles import FloatArray

# Within a block of the exponential average the weights grow as decay**-j;
# keeping them below e**500 leaves room for prices up to about 1e80.
_MAX_LOG_WEIGHT = 500.0
# Longer blocks save Python iterations but add rounding in the running sum.
_MAX_BLOCK = 65_536


def simple_moving_average(values: FloatArray, period: int) -> FloatArray:
    """Mean of the last `period` values; NaN for the first `period - 1`.

    Uses differences of one running sum. The series is shifted by its first
    value before summing so a flat stretch averages to exactly its level and
    the running sum stays small (its rounding is about 1e-16 of the largest
    partial sum, far below any price tick).
    """
    _check_period(period)
    out = np.full(values.shape, np.nan)
    if values.size < period:
        return out
    if period == 1:
        out[:] = values
        return out
    shift = values[0]
    running = np.concatenate(([0.0], np.cumsum(values - shift)))
    out[period - 1 :] = (running[period:] - running[:-period]) / period + shift
    return out


def exponential_moving_average(values: FloatArray, period: int) -> FloatArray:
    """Exponential average with alpha = 2 / (period + 1); NaN for `period - 1`.

    Seeded with the simple average of the first `period` values at index
    `period - 1`, then y[t] = alpha * x[t] + (1 - alpha) * y[t - 1].

    The recursion is solved in closed form per block of candles:
    y[s + j] = d**(j + 1) * y[s - 1] + alpha * d**j * sum(d**-m * x[s + m])
    for m <= j, with d = 1 - alpha, so only one Python step runs per block.
    """
    _check_period(period)
    out = np.full(values.shape, np.nan)
    if values.size < period:
        return out
    if period == 1:
        out[:] = values
        return out
    alpha = 2.0 / (period + 1)
    decay = 1.0 - alpha
    # The average commutes with a shift; shifting by the first value makes a
    # flat stretch there average to exactly its level.
    shift = values[0]
    out[period - 1] = (values[:period] - shift).mean()
    rest = values[period:] - shift
    block = int(min(_MAX_BLOCK, max(1, _MAX_LOG_WEIGHT // -math.log(decay))))
    steps = np.arange(min(block, rest.size), dtype=np.float64)
    growth = decay**-steps
    shrink = decay**steps
    previous = float(out[period - 1])
    for start in range(0, rest.size, block):
        chunk = rest[start : start + block]
        size = chunk.size
        weighted = np.cumsum(chunk * growth[:size])
        smoothed = shrink[:size] * (alpha * weighted + decay * previous)
        out[period + start : period + start + size] = smoothed
        previous = float(smoothed[-1])
    out[period - 1 :] += shift
    return out


def moving_average(values: FloatArray, period: int, kind: str) -> FloatArray:
    """The `kind` ("simple" or "exponential") moving average of `values`."""
    if kind == "simple":
        return simple_moving_average(values, period)
    if kind == "exponential":
        return exponential_moving_average(values, period)
    raise ValueError(f'kind "{kind}" is not one of simple, exponential')


def _check_period(period: int) -> None:
    if period < 1:
        raise ValueError(f"period {period} must be at least 1")
