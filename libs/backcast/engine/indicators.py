"""Indicators over a price series, and a memo that computes each one once.

Moving averages are NaN until a window is full. A value at index t uses
`values[: t + 1]` only, so a decision taken at the close of candle t never
sees later prices. The loops are compiled kernels in
`backcast.engine.kernels` and `backcast.engine.signal_kernels`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from backcast.engine import kernels, signal_kernels
from backcast.engine.candles import Candles, FloatArray

# What identifies an indicator of one candle series: its name, the candle
# column it reads ("close", "high", "low"; "" when it reads another
# indicator), its period, and its kind (the average's kind, a channel's
# side, or the periods of the lines it reads).
IndicatorKey = tuple[str, str, int, str]


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


class IndicatorMemo:
    """The indicators of one candle series, each computed once and then kept.

    Strategies ask it for their averages, RSI, bands and channels; the
    parameter sets of a sweep over one series share a memo, so each distinct
    indicator is computed once however many sets use it (see
    `backcast.engine.sweep`). The arrays it returns are read-only, as one
    strategy must not alter what another reads; they are those of the
    functions and kernels named in each method, bit for bit.
    """

    def __init__(self, candles: Candles) -> None:
        self.candles = candles
        # LIMITATION: every indicator stays until the memo is dropped, 8 bytes
        # per candle each: a sweep over 200 distinct periods of a million
        # candles holds 1.6 GB. Sweeps of that size would want the sets
        # ordered by period and indicators evicted once no later set uses
        # them.
        self._kept: dict[IndicatorKey, FloatArray] = {}

    @property
    def n_computed(self) -> int:
        """Indicators computed so far: one per distinct key asked for."""
        return len(self._kept)

    def keys(self) -> list[IndicatorKey]:
        """The indicators computed so far, in the order they were first asked."""
        return list(self._kept)

    def moving_average(self, column: str, period: int, kind: str) -> FloatArray:
        """`moving_average` of a candle column ("close", "high", "low")."""
        return self._kept_or(
            ("moving_average", column, period, kind),
            lambda: moving_average(self._column(column), period, kind),
        )

    def rsi(self, period: int) -> FloatArray:
        """`signal_kernels.wilder_rsi` of the close over `period` changes."""
        return self._kept_or(
            ("rsi", "close", period, "wilder"),
            lambda: signal_kernels.wilder_rsi(self._column("close"), period),
        )

    def rolling_deviation(self, period: int) -> FloatArray:
        """`signal_kernels.rolling_deviation` of the close over `period`."""
        return self._kept_or(
            ("rolling_deviation", "close", period, "population"),
            lambda: signal_kernels.rolling_deviation(self._column("close"), period),
        )

    def prior_extreme(self, column: str, period: int, highest: bool) -> FloatArray:
        """`signal_kernels.prior_extreme` of a candle column."""
        return self._kept_or(
            ("prior_extreme", column, period, "highest" if highest else "lowest"),
            lambda: signal_kernels.prior_extreme(self._column(column), period, highest),
        )

    def macd_signal(
        self, fast_period: int, slow_period: int, signal_period: int
    ) -> FloatArray:
        """Signal line of the MACD line of the close, from index slow_period - 1.

        The MACD line is the exponential average of the close over
        `fast_period` minus the one over `slow_period`, from the slow one's
        first value on; the signal line is its exponential average over
        `signal_period`, shape (n - slow_period + 1,).
        """
        lines = f"{fast_period}/{slow_period}"
        return self._kept_or(
            ("macd_signal", "", signal_period, lines),
            lambda: self._macd_signal(fast_period, slow_period, signal_period),
        )

    def _macd_signal(
        self, fast_period: int, slow_period: int, signal_period: int
    ) -> FloatArray:
        fast = self.moving_average("close", fast_period, "exponential")
        slow = self.moving_average("close", slow_period, "exponential")
        line = fast[slow_period - 1 :] - slow[slow_period - 1 :]
        return exponential_moving_average(line, signal_period)

    def _column(self, column: str) -> FloatArray:
        if column not in _COLUMNS:
            raise ValueError(f'column "{column}" is not one of {", ".join(_COLUMNS)}')
        values: FloatArray = getattr(self.candles, column)
        return _contiguous(values)

    def _kept_or(
        self, key: IndicatorKey, compute: Callable[[], FloatArray]
    ) -> FloatArray:
        kept = self._kept.get(key)
        if kept is None:
            kept = compute()
            kept.flags.writeable = False
            self._kept[key] = kept
        return kept


_COLUMNS = ("open", "high", "low", "close")
