"""Compiled loops behind the strategies: crossovers, RSI, bands, channels.

Like `backcast.engine.kernels`, each is one pass compiled by numba and cached
on disk; `backcast.engine.strategies` owns the rules built on them.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from backcast.engine.candles import BoolArray, FloatArray
from backcast.engine.kernels import Int8Array

# Candles per block of the simple crossover: the running sums of a block stay
# in the first-level cache while its averages are compared.
_BLOCK = 2048


@numba.njit(cache=True)
def crossover_sides(
    values: FloatArray,
    fast_period: int,
    slow_period: int,
    exponential: bool,
    noise: float,
    shorts: bool,
) -> Int8Array:
    """+1 where the fast average of `values` is above the slow one, else 0.

    The averages are those of `kernels.simple_average` (or, with
    `exponential`, `kernels.exponential_average`) bit for bit, and a period
    of 1 averages to the value itself. "Above" is `kernels.above_target`'s:
    fast - slow > `noise` * |slow|; with `shorts`, slow - fast > `noise` *
    |fast| gives -1. Before both averages exist the result is 0. One pass
    that never stores the averages: a backtest compares each pair once.
    """
    n = values.size
    out = np.zeros(n, dtype=np.int8)
    longest = max(fast_period, slow_period)
    if n < longest:
        return out
    periods = (fast_period, slow_period)
    if exponential:
        _exponential_crossover(values, periods, noise, shorts, out)
    else:
        _simple_crossover(values, periods, noise, shorts, out)
    out[: longest - 1] = 0
    return out


@numba.njit(cache=True)
def _simple_crossover(
    values: FloatArray,
    periods: tuple[int, int],
    noise: float,
    shorts: bool,
    out: Int8Array,
) -> None:
    # One running sum of the shifted values serves both averages: each is a
    # difference of two of its prefixes, as in `kernels.simple_average`. The
    # sums go block by block into `sums`, whose first `longest` slots keep
    # the prefixes before the block (0.0 before the first value); the
    # comparisons of a block then run free of the chain of additions and
    # compile to vector instructions.
    fast_period, slow_period = periods
    longest = max(fast_period, slow_period)
    n = values.size
    block = max(_BLOCK, longest)
    sums = np.zeros(longest + block)
    shift = values[0]
    running = 0.0
    for start in range(0, n, block):
        size = min(block, n - start)
        for i in range(size):
            running += values[start + i] - shift
            sums[longest + i] = running
        now = sums[longest : longest + size]
        fast_before = sums[longest - fast_period : longest - fast_period + size]
        slow_before = sums[longest - slow_period : longest - slow_period + size]
        block_values = values[start : start + size]
        sides = out[start : start + size]
        for i in range(size):
            fast = _simple_mean(now[i], fast_before[i], fast_period, shift)
            slow = _simple_mean(now[i], slow_before[i], slow_period, shift)
            if fast_period == 1:
                fast = block_values[i]
            if slow_period == 1:
                slow = block_values[i]
            sides[i] = _side_of(fast, slow, noise, shorts)
        sums[:longest] = sums[size : size + longest]


@numba.njit(cache=True)
def _simple_mean(now: float, before: float, period: int, shift: float) -> float:
    return (now - before) / period + shift


@numba.njit(cache=True)
def _exponential_crossover(
    values: FloatArray,
    periods: tuple[int, int],
    noise: float,
    shorts: bool,
    out: Int8Array,
) -> None:
    # Both averages advance together; each is seeded with the running sum
    # of its first window, as in `kernels.exponential_average`.
    fast_period, slow_period = periods
    first = max(fast_period, slow_period) - 1
    fast_alpha = 2.0 / (fast_period + 1)
    slow_alpha = 2.0 / (slow_period + 1)
    fast_decay = 1.0 - fast_alpha
    slow_decay = 1.0 - slow_alpha
    shift = values[0]
    running = 0.0
    fast_level = 0.0
    slow_level = 0.0
    for t in range(values.size):
        change = values[t] - shift
        running += change
        fast_level = _ema_step(
            fast_level, t, fast_period, running, change, fast_alpha, fast_decay
        )
        slow_level = _ema_step(
            slow_level, t, slow_period, running, change, slow_alpha, slow_decay
        )
        if t >= first:
            fast = values[t] if fast_period == 1 else fast_level + shift
            slow = values[t] if slow_period == 1 else slow_level + shift
            out[t] = _side_of(fast, slow, noise, shorts)


@numba.njit(cache=True)
def _ema_step(
    level: float,
    t: int,
    period: int,
    running: float,
    change: float,
    alpha: float,
    decay: float,
) -> float:
    """The shifted average's level after index `t`, seeded at `period` - 1."""
    if t < period - 1:
        return level
    if t == period - 1:
        return running / period
    return alpha * change + decay * level


@numba.njit(cache=True)
def _side_of(fast: float, slow: float, noise: float, shorts: bool) -> int:
    # Both conditions cannot hold at once, so the difference is the side.
    above = fast - slow > noise * abs(slow)
    below = (slow - fast > noise * abs(fast)) & shorts
    return int(above) - int(below)


@numba.njit(cache=True)
def wilder_rsi(closes: FloatArray, period: int) -> FloatArray:
    """Wilder's relative strength index in [0, 100], NaN before index `period`.

    Average gain and loss are seeded with the means of the first `period`
    changes, then smoothed as avg = (avg * (period - 1) + change) / period.
    RSI = 100 - 100 / (1 + gain / loss); 100 when there is no loss, 50 when
    the price has not moved at all (J. W. Wilder, New Concepts in Technical
    Trading Systems, 1978).
    """
    n = closes.size
    out = np.full(n, np.nan)
    if n <= period:
        return out
    gain = 0.0
    loss = 0.0
    for t in range(1, period + 1):
        change = closes[t] - closes[t - 1]
        if change > 0.0:
            gain += change
        else:
            loss -= change
    gain /= period
    loss /= period
    out[period] = _rsi(gain, loss)
    # Multiplying by the two weights keeps divisions out of the chain from
    # one candle to the next, which would otherwise set the pace.
    keep = (period - 1) / period
    weight = 1.0 / period
    for t in range(period + 1, n):
        change = closes[t] - closes[t - 1]
        up = change if change > 0.0 else 0.0
        down = -change if change < 0.0 else 0.0
        gain = gain * keep + up * weight
        loss = loss * keep + down * weight
        out[t] = _rsi(gain, loss)
    return out


@numba.njit(cache=True)
def _rsi(gain: float, loss: float) -> float:
    # 100 - 100 / (1 + gain / loss), with one division.
    if loss == 0.0:
        return 100.0 if gain > 0.0 else 50.0
    return 100.0 * gain / (gain + loss)


@numba.njit(cache=True)
def rolling_deviation(values: FloatArray, period: int) -> FloatArray:
    """Population standard deviation of the last `period` values, NaN before.

    Welford's update (Technometrics 4, 1962) for a sliding window (add the
    new value, drop the one `period` behind), which keeps its accuracy on
    prices far from zero, unlike a difference of running sums of squares.
    Every `period` candles the window is summed afresh, so rounding cannot
    drift over a long series.
    """
    n = values.size
    out = np.full(n, np.nan)
    if n < period:
        return out
    mean, squares = _window_moments(values, period - 1, period)
    out[period - 1] = math.sqrt(squares / period)
    inverse = 1.0 / period
    since_refresh = 0
    for t in range(period, n):
        since_refresh += 1
        if since_refresh == period:
            since_refresh = 0
            mean, squares = _window_moments(values, t, period)
        else:
            new = values[t]
            old = values[t - period]
            before = mean
            mean += (new - old) * inverse
            squares += (new - old) * (new - mean + old - before)
            squares = max(squares, 0.0)
        out[t] = math.sqrt(squares * inverse)
    return out


@numba.njit(cache=True)
def _window_moments(values: FloatArray, last: int, period: int) -> tuple[float, float]:
    """Mean and sum of squared deviations of the `period` values up to `last`."""
    total = 0.0
    for t in range(last - period + 1, last + 1):
        total += values[t]
    mean = total / period
    squares = 0.0
    for t in range(last - period + 1, last + 1):
        squares += (values[t] - mean) ** 2
    return mean, squares


@numba.njit(cache=True)
def prior_extreme(values: FloatArray, period: int, highest: bool) -> FloatArray:
    """Highest (or lowest) of the `period` values before each index, NaN before.

    The value at t covers values[t - period : t], never values[t]. Running
    extremes forward and backward within blocks of `period` values give any
    window as the extreme of two of them, so the pass costs the same whatever
    the window length (M. van Herk, Pattern Recognition Letters 13, 1992; J.
    Gil and M. Werman, IEEE Trans. PAMI 15, 1993).
    """
    n = values.size
    out = np.full(n, np.nan)
    if n <= period:
        return out
    # Lowest is the highest of the negated values.
    sign = 1.0 if highest else -1.0

    # Forward runs first, each stored one index late: out[t] holds the run
    # up to t - 1, the end of the window before t. Writing into `out` saves
    # a temporary array, whose page faults cost more than this whole pass.
    for first in range(0, n - 1, period):
        last = min(first + period, n - 1) - 1
        running = sign * values[first]
        for t in range(first, last + 1):
            running = _larger(running, sign * values[t])
            out[t + 1] = running

    # Backward runs then meet them: the window starting at s ends in the
    # next block (or at the end of its own), whose forward run out[s + period]
    # holds.
    for first in range(0, n - period, period):
        last = min(first + period, n - period) - 1
        running = sign * values[min(first + period, n) - 1]
        for t in range(min(first + period, n) - 1, last, -1):
            running = _larger(running, sign * values[t])
        t = last
        while t >= first:
            running = _larger(running, sign * values[t])
            out[t + period] = sign * _larger(running, out[t + period])
            t -= 1
    out[:period] = np.nan
    return out


@numba.njit(cache=True)
def _larger(a: float, b: float) -> float:
    return b if b > a else a


@numba.njit(cache=True)
def held_target(
    long_entry: BoolArray,
    long_exit: BoolArray,
    short_entry: BoolArray,
    short_exit: BoolArray,
    first: int,
    shorts: bool,
) -> Int8Array:
    """Position held between entries and exits, from index `first` on.

    Flat: a long entry goes long, else (with `shorts`) a short entry goes
    short. Long: a short entry (with `shorts`) turns short, else a long exit
    goes flat. Short: a long entry turns long, else a short exit goes flat.
    Before `first` the target is 0; positions are +1, 0 and -1 as int8.
    """
    n = long_entry.size
    out = np.zeros(n, dtype=np.int8)
    position = 0
    for t in range(first, n):
        if position == 0:
            if long_entry[t]:
                position = 1
            elif shorts and short_entry[t]:
                position = -1
        elif position > 0:
            if shorts and short_entry[t]:
                position = -1
            elif long_exit[t]:
                position = 0
        elif long_entry[t]:
            position = 1
        elif short_exit[t]:
            position = 0
        out[t] = position
    return out


@numba.njit(cache=True)
def macd_target(
    fast: FloatArray,
    slow: FloatArray,
    signal: FloatArray,
    closes: FloatArray,
    noise: float,
    shorts: bool,
) -> Int8Array:
    """+1 where the MACD line (fast - slow) exceeds its signal line, else 0.

    `signal` is the signal line of the MACD line from index n - signal.size
    on. "Exceeds" means by more than `noise` * close; with `shorts`, a line
    below the signal by as much gives -1. NaN anywhere gives 0.
    """
    n = closes.size
    out = np.zeros(n, dtype=np.int8)
    offset = n - signal.size
    for t in range(offset, n):
        gap = fast[t] - slow[t] - signal[t - offset]
        margin = noise * abs(closes[t])
        if gap > margin:
            out[t] = 1
        elif shorts and gap < -margin:
            out[t] = -1
    return out
