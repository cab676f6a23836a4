"""Candle times outside the years a backtest can cover are refused by line."""

from __future__ import annotations

import pytest

from backcast.engine.spec import Interval
from backcast.errors import InvalidCandleFile
from backcast.marketdata.csv_import import parse_candles

HEADER = "time,open,high,low,close,volume"


@pytest.mark.parametrize(
    "time",
    [
        "-86400",
        "7258118400",
        "5937362764800",
        "99999999999999999999999",
        "1969-12-31",
        "2200-01-01T00:00:00Z",
        "9999-12-31",
    ],
)
@pytest.mark.parametrize("first", ["2024-01-01", "1704067200"])
def test_time_outside_1970_to_2200_is_refused_naming_its_line(
    first: str, time: str
) -> None:
    text = f"{HEADER}\n{first},10,11,9,10.5,1\n{time},10,11,9,10.5,1\n"

    with pytest.raises(InvalidCandleFile) as caught:
        parse_candles(text, Interval.ONE_DAY)

    assert caught.value.line == 3
    assert caught.value.problem.startswith("time ")
    assert caught.value.problem.endswith("is not between 1970-01-01 and 2200-01-01")


@pytest.mark.parametrize("digits", ["2025", "1704153600"])
def test_epoch_seconds_among_iso_times_are_read_as_seconds(digits: str) -> None:
    # Bare digits are epoch seconds, wherever they are in the file; numpy's
    # date parse would read them as a year.
    rows = [f"2024-01-0{day}T00:00:00Z,10,11,9,10.5,1" for day in (1, 2)]
    text = "\n".join([HEADER, *rows, f"{digits},10,11,9,10.5,1"])

    with pytest.raises(InvalidCandleFile) as caught:
        parse_candles(text, Interval.ONE_DAY)

    assert caught.value.line == 4
    assert "does not come after" in caught.value.problem or "grid" in (
        caught.value.problem
    )


def test_first_and_last_days_of_the_range_are_accepted() -> None:
    text = f"{HEADER}\n0,10,11,9,10.5,1\n2199-12-31,10,11,9,10.5,1\n"

    candles = parse_candles(text, Interval.ONE_DAY)

    assert candles.times.tolist() == [0, 7_258_032_000]
