"""Candles.of accepts consistent OHLCV arrays and names the first bad one."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from backcast.engine.candles import Candles


def columns(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "times": [0, 60, 120],
        "open": [10.0, 11.0, 12.0],
        "high": [11.5, 12.0, 12.5],
        "low": [9.5, 10.5, 11.0],
        "close": [11.0, 12.0, 11.5],
        "volume": [1.0, 0.0, 3.0],
    }
    return {**base, **changes}


def test_candles_hold_typed_read_only_arrays() -> None:
    candles = Candles.of(**columns())

    assert len(candles) == 3
    assert candles.times.dtype == np.int64
    assert candles.close.dtype == np.float64
    with pytest.raises(ValueError, match="read-only"):
        candles.close[0] = 1.0


def test_candles_leave_the_callers_arrays_writable() -> None:
    close = np.array([11.0, 12.0, 11.5])

    Candles.of(**columns(close=close))

    close[0] = 11.2
    assert close[0] == 11.2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"close": [11.0, 12.0]}, "close has shape"),
        ({"times": [[0, 60, 120]]}, "one-dimensional"),
        ({"times": [0, 120, 120]}, "increase strictly"),
        ({"open": [10.0, np.nan, 12.0]}, "open holds a value that is not finite"),
        ({"low": [0.0, 10.5, 11.0]}, "not positive"),
        ({"volume": [1.0, -1.0, 3.0]}, "negative"),
        ({"low": [10.5, 10.5, 11.0]}, "low is above"),
        ({"high": [10.9, 12.0, 12.5]}, "high is below"),
    ],
)
def test_inconsistent_candles_are_rejected(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Candles.of(**columns(**changes))
