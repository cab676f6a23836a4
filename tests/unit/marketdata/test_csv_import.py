"""CSV candles: both time formats, and every rule reported with its line."""

from __future__ import annotations

import numpy as np
import pytest

from backcast.engine.spec import Interval
from backcast.errors import InvalidCandleFile
from backcast.marketdata.csv_import import parse_candles

HEADER = "time,open,high,low,close,volume"
GOOD_ROWS = [
    "1704067200,10.0,10.5,9.5,10.2,3.0",
    "1704067260,10.2,10.8,10.1,10.7,0",
    "1704067320,10.7,10.9,10.0,10.1,1.5",
]


def csv_of(*rows: str, header: str = HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


def bad_line(text: str, interval: Interval = Interval.ONE_MINUTE) -> str:
    with pytest.raises(InvalidCandleFile) as error:
        parse_candles(text, interval)
    return f"line {error.value.line}: {error.value.problem}"


def test_epoch_seconds_are_read_exactly() -> None:
    candles = parse_candles(csv_of(*GOOD_ROWS), Interval.ONE_MINUTE)

    np.testing.assert_array_equal(candles.times, [1704067200, 1704067260, 1704067320])
    np.testing.assert_array_equal(candles.open, [10.0, 10.2, 10.7])
    np.testing.assert_array_equal(candles.high, [10.5, 10.8, 10.9])
    np.testing.assert_array_equal(candles.low, [9.5, 10.1, 10.0])
    np.testing.assert_array_equal(candles.close, [10.2, 10.7, 10.1])
    np.testing.assert_array_equal(candles.volume, [3.0, 0.0, 1.5])


@pytest.mark.parametrize(
    "first, second",
    [
        ("2024-01-01T00:00:00Z", "2024-01-01T00:01:00Z"),
        ("2024-01-01T00:00:00+00:00", "2024-01-01T00:01:00+00:00"),
        ("2024-01-01T00:00:00", "2024-01-01 00:01:00"),
    ],
)
def test_iso_times_in_utc_are_read(first: str, second: str) -> None:
    text = csv_of(f"{first},1,2,0.5,1.5,0", f"{second},1.5,2,1,1.8,4")

    candles = parse_candles(text, Interval.ONE_MINUTE)

    np.testing.assert_array_equal(candles.times, [1704067200, 1704067260])


def test_daily_candles_accept_dates() -> None:
    text = csv_of("2024-01-01,1,2,0.5,1.5,0", "2024-01-02,1.5,2,1,1.8,4")

    candles = parse_candles(text, Interval.ONE_DAY)

    np.testing.assert_array_equal(candles.times, [1704067200, 1704153600])


def test_columns_may_come_in_any_order_with_extra_ones() -> None:
    text = csv_of(
        "3.0,10.2,10.5,1704067200,9.5,10.0,7",
        header="Volume,Close,High,Time,Low,Open,trades",
    )

    candles = parse_candles(text, Interval.ONE_MINUTE)

    assert candles.close[0] == 10.2
    assert candles.volume[0] == 3.0


def test_file_without_header_is_refused_at_line_1() -> None:
    message = bad_line("\n".join(GOOD_ROWS))

    assert message.startswith("line 1: the header must name the columns time, open")


def test_empty_file_is_refused() -> None:
    assert bad_line("") == "line 1: the file is empty; it needs a header row"


def test_header_without_candles_is_refused() -> None:
    assert bad_line(HEADER + "\n") == "line 1: the file has a header but no candles"


@pytest.mark.parametrize(
    "row, problem",
    [
        (
            "1704067380,10.1,9.5,9.4,10.1,1",
            "high 9.5 is below close 10.1",
        ),
        ("1704067380,10.3,10.2,9.9,10.1,1", "high 10.2 is below open 10.3"),
        ("1704067380,10.1,10.5,10.2,10.3,1", "low 10.2 is above open 10.1"),
        ("1704067380,10.3,10.5,10.2,10.1,1", "low 10.2 is above close 10.1"),
        ("1704067380,nan,10.5,9.9,10.1,1", "open nan is not a finite number"),
        ("1704067380,10.1,inf,9.9,10.1,1", "high inf is not a finite number"),
        ("1704067380,10.1,10.5,9.9,10.1,-inf", "volume -inf is not a finite number"),
        ("1704067380,-1,10.5,-2,10.1,1", "open -1.0 is not positive"),
        ("1704067380,1,1,0,1,1", "low 0.0 is not positive"),
        ("1704067380,10.1,10.5,9.9,10.1,-1", "volume -1.0 is negative"),
        (
            "1704067390,10.1,10.5,9.9,10.1,1",
            "time 2024-01-01T00:03:10Z is not on the 1m grid",
        ),
        (
            "1704067320,10.1,10.5,9.9,10.1,1",
            "time 2024-01-01T00:02:00Z does not come after the time of the row "
            "before, 2024-01-01T00:02:00Z",
        ),
        ("1704067380,10.1,abc,9.9,10.1,1", 'high "abc" is not a number'),
        ("1704067380,10.1,10.5,9.9,10.1", "5 fields, but the header names 6"),
        (
            "yesterday,10.1,10.5,9.9,10.1,1",
            'time "yesterday" is neither epoch seconds nor an ISO-8601 time such '
            "as 2024-01-01T09:30:00Z",
        ),
        (
            "2024-01-01T02:03:00+02:00,10.1,10.5,9.9,10.1,1",
            'time "2024-01-01T02:03:00+02:00" is not in UTC; use Z, +00:00 or no '
            "offset",
        ),
        ("", "empty line; every line holds one candle"),
    ],
)
def test_first_bad_row_is_reported_by_line_number(row: str, problem: str) -> None:
    later_bad_row = "1704067440,1,1,1,1,-5"
    text = csv_of(*GOOD_ROWS, row, later_bad_row)

    assert bad_line(text) == f"line 5: {problem}"


def test_earliest_bad_row_wins_over_rule_order() -> None:
    rows = [*GOOD_ROWS, "1704067380,10.1,9.5,9.4,10.1,1", "1704067390,1,2,0.5,1,1"]

    assert bad_line(csv_of(*rows)) == "line 5: high 9.5 is below close 10.1"


def test_error_names_the_file_field() -> None:
    with pytest.raises(InvalidCandleFile) as error:
        parse_candles(csv_of("1704067200,10,9,9,10,1"), Interval.ONE_MINUTE)

    assert error.value.violations[0].field == "file"
    assert error.value.message == "file: line 2: high 9.0 is below close 10.0"


def test_trailing_blank_lines_are_ignored() -> None:
    candles = parse_candles(csv_of(*GOOD_ROWS) + "\n\n", Interval.ONE_MINUTE)

    assert len(candles) == 3
