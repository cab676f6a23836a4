"""Candles from CSV files: parsing, validation by line, and import into storage.

A file has a header row naming the columns time, open, high, low, close and
volume (any order, any case; other columns are ignored) and one candle per
line. Times are open times, as epoch seconds or ISO-8601 in UTC (`Z`,
`+00:00` or no offset). Fields are plain comma-separated values; quoted
fields are not supported.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import psycopg

from backcast.engine.candles import BoolArray, Candles, FloatArray, IntArray
from backcast.engine.spec import EARLIEST_AT, LATEST_AT, Interval
from backcast.errors import InvalidCandleFile
from backcast.marketdata.storage import write_candles

COLUMNS = ("time", "open", "high", "low", "close", "volume")
PRICES = ("open", "high", "low", "close")

_EPOCH_PATTERN = re.compile(r"-?\d+")
_UTC_SUFFIXES = ("Z", "z", "+00:00")
_FIRST_ROW_LINE = 2
# Times outside these years could not be stored and listed, nor backtested.
_EARLIEST = int(EARLIEST_AT.timestamp())
_LATEST = int(LATEST_AT.timestamp())
_OUTSIDE_YEARS = f"is not between {EARLIEST_AT.date()} and {LATEST_AT.date()}"


@dataclass(frozen=True)
class _Layout:
    """Where each needed column sits in a row, and how many fields a row has."""

    positions: dict[str, int]
    n_fields: int


def import_candle_file(
    conn: psycopg.Connection[tuple[object, ...]],
    path: Path,
    instrument: str,
    interval: Interval,
) -> Candles:
    """Parse and check the file at `path`, then store its candles at once.

    Stored candles of the instrument and interval from the file's first to
    its last time are replaced; nothing is written if any row is bad.

    Raises:
        InvalidCandleFile: naming the first bad line.
    """
    candles = parse_candles(path.read_text(encoding="utf-8-sig"), interval)
    write_candles(conn, instrument, interval, candles)
    return candles


def parse_candles(text: str, interval: Interval) -> Candles:
    """The candles of a CSV text, checked row by row.

    Raises:
        InvalidCandleFile: the first bad line, e.g. `line 17: high 9.5 is
            below close 10.1`.
    """
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise InvalidCandleFile(1, "the file is empty; it needs a header row")
    layout = _read_header(lines[0])
    rows = lines[1:]
    if not rows:
        raise InvalidCandleFile(1, "the file has a header but no candles")

    columns = _parse_fast(rows, layout)
    if columns is None:
        columns = _parse_slow(rows, layout)
    times, values = columns
    _check_rows(times, values, interval)
    return Candles.of(times, *(values[name] for name in COLUMNS[1:]))


def _read_header(line: str) -> _Layout:
    names = [name.strip().lower() for name in line.split(",")]
    missing = [column for column in COLUMNS if column not in names]
    if missing:
        raise InvalidCandleFile(
            1,
            "the header must name the columns time, open, high, low, close and "
            f"volume; {', '.join(missing)} not found in {line.strip()[:80]!r}",
        )
    return _Layout({column: names.index(column) for column in COLUMNS}, len(names))


def _parse_fast(
    rows: list[str], layout: _Layout
) -> tuple[IntArray, dict[str, FloatArray]] | None:
    """Columns parsed by numpy, or None when any row needs a closer look."""
    # loadtxt skips blank lines, which would shift every later line number.
    if any(not row.strip() for row in rows):
        return None
    numeric = [layout.positions[name] for name in COLUMNS[1:]]
    try:
        with warnings.catch_warnings():
            # numpy warns (and converts) on a time with a UTC offset; such a
            # time is refused, with its line, by the row-by-row parse.
            warnings.simplefilter("error")
            table = np.loadtxt(
                rows,
                delimiter=",",
                usecols=numeric,
                dtype=np.float64,
                comments=None,
                ndmin=2,
            )
            stamps = np.loadtxt(
                rows,
                delimiter=",",
                usecols=layout.positions["time"],
                dtype=str,
                comments=None,
                ndmin=1,
            )
            times = _parse_times(stamps)
    except (ValueError, OverflowError, Warning):
        return None
    n_commas = layout.n_fields - 1
    if times is None or any(row.count(",") != n_commas for row in rows):
        return None
    values = {name: table[:, i] for i, name in enumerate(COLUMNS[1:])}
    return times, values


def _parse_times(stamps: npt.NDArray[np.str_]) -> IntArray | None:
    texts = [text.strip() for text in stamps.tolist()]
    if all(_EPOCH_PATTERN.fullmatch(text) for text in texts[:1000]):
        return np.array(texts).astype(np.int64)
    naive = np.array([_without_utc_suffix(text) for text in texts])
    # numpy reads "2024-01" as a month and bare digits as a year, where the
    # row-by-row parse refuses the one and reads epoch seconds in the other:
    # a time not shaped YYYY-MM-DD... sends the whole file down that parse.
    dated = np.char.endswith(naive.astype("<U5"), "-")
    if (np.char.str_len(naive) < 10).any() or not dated.all():
        return None
    parsed = naive.astype("datetime64[s]")
    if np.isnat(parsed).any():
        return None
    return parsed.astype(np.int64)


def _without_utc_suffix(text: str) -> str:
    for suffix in _UTC_SUFFIXES:
        if text.endswith(suffix):
            return text[: -len(suffix)]
    return text


def _parse_slow(
    rows: list[str], layout: _Layout
) -> tuple[IntArray, dict[str, FloatArray]]:
    """Columns parsed row by row, raising at the first line that fails."""
    times = np.empty(len(rows), dtype=np.int64)
    table = np.empty((len(rows), len(COLUMNS) - 1), dtype=np.float64)
    for i, row in enumerate(rows):
        line = i + _FIRST_ROW_LINE
        fields = row.split(",")
        if not row.strip():
            raise InvalidCandleFile(line, "empty line; every line holds one candle")
        if len(fields) != layout.n_fields:
            raise InvalidCandleFile(
                line,
                f"{len(fields)} fields, but the header names {layout.n_fields}",
            )
        times[i] = _parse_time(fields[layout.positions["time"]], line)
        for j, name in enumerate(COLUMNS[1:]):
            table[i, j] = _parse_number(name, fields[layout.positions[name]], line)
    return times, {name: table[:, j] for j, name in enumerate(COLUMNS[1:])}


def _parse_time(text: str, line: int) -> int:
    text = text.strip()
    if _EPOCH_PATTERN.fullmatch(text):
        return _within_years(int(text), text, line)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidCandleFile(
            line,
            f'time "{text[:40]}" is neither epoch seconds nor an ISO-8601 time '
            "such as 2024-01-01T09:30:00Z",
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    elif value.utcoffset() != timedelta(0):
        raise InvalidCandleFile(
            line, f'time "{text}" is not in UTC; use Z, +00:00 or no offset'
        )
    if value.microsecond:
        raise InvalidCandleFile(line, f'time "{text}" is not on a whole second')
    return _within_years(int(value.timestamp()), text, line)


def _within_years(seconds: int, text: str, line: int) -> int:
    if not _EARLIEST <= seconds < _LATEST:
        raise InvalidCandleFile(line, f'time "{text[:40]}" {_OUTSIDE_YEARS}')
    return seconds


def _parse_number(name: str, text: str, line: int) -> float:
    try:
        return float(text)
    except ValueError:
        raise InvalidCandleFile(
            line, f'{name} "{text.strip()[:40]}" is not a number'
        ) from None


def _check_rows(
    times: IntArray, values: dict[str, FloatArray], interval: Interval
) -> None:
    """Raise InvalidCandleFile for the first row that breaks a rule.

    Rules are checked over whole columns; the earliest bad row wins, and
    within one row the first rule in the order below.
    """
    problems = _find_problems(times, values, interval)
    if problems:
        index, problem = min(problems, key=lambda found: found[0])
        raise InvalidCandleFile(index + _FIRST_ROW_LINE, problem)


def _find_problems(
    times: IntArray, values: dict[str, FloatArray], interval: Interval
) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    seconds = interval.seconds
    if (i := _first((times < _EARLIEST) | (times >= _LATEST))) is not None:
        found.append((i, f"time {_iso(times[i])} {_OUTSIDE_YEARS}"))
    if (i := _first(times % seconds != 0)) is not None:
        found.append((i, f"time {_iso(times[i])} is not on the {interval.value} grid"))
    steps = np.diff(times)
    if (i := _first(steps <= 0)) is not None:
        found.append(
            (
                i + 1,
                f"time {_iso(times[i + 1])} does not come after the time of the "
                f"row before, {_iso(times[i])}",
            )
        )
    for name in COLUMNS[1:]:
        column = values[name]
        if (i := _first(~np.isfinite(column))) is not None:
            found.append((i, f"{name} {_number(column[i])} is not a finite number"))

    for name in PRICES:
        column = values[name]
        if (i := _first(column <= 0)) is not None:
            found.append((i, f"{name} {_number(column[i])} is not positive"))
    if (i := _first(values["volume"] < 0)) is not None:
        found.append((i, f"volume {_number(values['volume'][i])} is negative"))
    found += _body_problems(values)
    return found


def _body_problems(values: dict[str, FloatArray]) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    open_, high, low, close = (values[name] for name in PRICES)
    top = np.maximum(open_, close)
    if (i := _first(high < top)) is not None:
        side = "close" if close[i] >= open_[i] else "open"
        problem = f"high {_number(high[i])} is below {side} {_number(top[i])}"
        found.append((i, problem))
    bottom = np.minimum(open_, close)
    if (i := _first(low > bottom)) is not None:
        side = "close" if close[i] <= open_[i] else "open"
        problem = f"low {_number(low[i])} is above {side} {_number(bottom[i])}"
        found.append((i, problem))
    return found


def _first(mask: BoolArray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def _number(value: np.float64) -> str:
    # repr of a Python float: the shortest text that reads back the same.
    return repr(float(value))


def _iso(epoch_seconds: np.int64 | int) -> str:
    # Problems are described before the earliest is picked, so a time far
    # outside the years a datetime holds must still get a description.
    try:
        moment = datetime.fromtimestamp(int(epoch_seconds), UTC)
    except (ValueError, OverflowError, OSError):
        return str(int(epoch_seconds))
    return moment.isoformat().replace("+00:00", "Z")
