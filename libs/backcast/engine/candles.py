"""OHLCV candles of one instrument and interval as parallel numpy arrays."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

_Item = TypeVar("_Item", bound=np.generic)


@dataclass(frozen=True, eq=False)
class Candles:
    """Candles in time order; `times` are open times in epoch seconds, UTC.

    Every array has shape (n,). Build them with `Candles.of`, which checks
    the arrays and makes them read-only so a strategy cannot alter its input.
    """

    times: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray

    def __len__(self) -> int:
        return int(self.times.shape[0])

    @classmethod
    def of(
        cls,
        times: npt.ArrayLike,
        open: npt.ArrayLike,
        high: npt.ArrayLike,
        low: npt.ArrayLike,
        close: npt.ArrayLike,
        volume: npt.ArrayLike,
    ) -> Candles:
        """Candles from array-likes, or ValueError naming the first bad array.

        Times must increase strictly; prices must be finite and positive with
        low <= min(open, close) and high >= max(open, close); volumes finite
        and not negative.
        """
        stamps = _read_only(np.asarray(times, dtype=np.int64))
        columns = {
            name: _read_only(np.asarray(values, dtype=np.float64))
            for name, values in (
                ("open", open),
                ("high", high),
                ("low", low),
                ("close", close),
                ("volume", volume),
            )
        }
        _check_shapes(stamps, columns)
        _check_values(stamps, columns)
        return cls(times=stamps, **columns)


def _read_only(values: npt.NDArray[_Item]) -> npt.NDArray[_Item]:
    # A view, so the caller's own array keeps its flags and nothing is copied.
    view = values.view()
    view.flags.writeable = False
    return view


def _check_shapes(times: IntArray, columns: dict[str, FloatArray]) -> None:
    if times.ndim != 1:
        raise ValueError(f"times must be one-dimensional, not of shape {times.shape}")
    for name, values in columns.items():
        if values.shape != times.shape:
            raise ValueError(
                f"{name} has shape {values.shape}; every array must match "
                f"times {times.shape}"
            )


def _check_values(times: IntArray, columns: dict[str, FloatArray]) -> None:
    if times.size > 1 and not bool(np.all(np.diff(times) > 0)):
        raise ValueError("times must increase strictly")
    for name, values in columns.items():
        if not bool(np.all(np.isfinite(values))):
            raise ValueError(f"{name} holds a value that is not finite")
    if not bool(np.all(columns["low"] > 0)):
        raise ValueError("low holds a price that is not positive")
    if not bool(np.all(columns["volume"] >= 0)):
        raise ValueError("volume holds a negative value")
    body_low = np.minimum(columns["open"], columns["close"])
    body_high = np.maximum(columns["open"], columns["close"])
    if not bool(np.all(columns["low"] <= body_low)):
        raise ValueError("low is above the open or the close of some candle")
    if not bool(np.all(columns["high"] >= body_high)):
        raise ValueError("high is below the open or the close of some candle")
