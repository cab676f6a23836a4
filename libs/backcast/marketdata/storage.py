"""Candles in PostgreSQL as columnar chunks: write, read a range, coverage.

A chunk holds up to `CHUNK_CANDLES` candles of one instrument and interval,
each column as the raw little-endian bytes of a numpy array, so a year of
minute candles comes back in nine rows and one query. The functions take a
synchronous psycopg connection, since they run inside a worker's slot
process and the command line.

Every import of a series also moves its data version on (`candle_imports`),
in the same transaction as the chunks: a reader that sees the version
unchanged knows the candles are unchanged, at the cost of one primary-key
lookup instead of a read of the chunks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

import numpy as np
import psycopg
from psycopg.abc import Buffer
from psycopg.adapt import Loader

from backcast.engine.candles import Candles, FloatArray, IntArray
from backcast.engine.spec import Interval
from backcast.errors import DatabaseUnavailable

logger = logging.getLogger(__name__)

CHUNK_CANDLES = 65_536
"""Candles per chunk at most: 3 MiB of columns, 45.5 days of minutes."""

COLUMNS = ("times", "open", "high", "low", "close", "volume")
_TIME_DTYPE = np.dtype("<i8")
_VALUE_DTYPE = np.dtype("<f8")

_READ_CHUNKS = """
SELECT times, open, high, low, close, volume
FROM candle_chunks
WHERE instrument = %s AND interval = %s AND chunk_start >= %s AND chunk_start < %s
ORDER BY chunk_start
"""

_READ_COVERAGE = """
SELECT min(first_time), max(last_time), sum(n_candles)::bigint
FROM candle_chunks
WHERE instrument = %s AND interval = %s
"""

_LIST_INSTRUMENTS = """
SELECT instrument, interval, first_at, last_at, n_candles
FROM instruments
"""

_LOCK_SERIES = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"

_DELETE_CHUNKS = """
DELETE FROM candle_chunks
WHERE instrument = %s AND interval = %s AND chunk_start BETWEEN %s AND %s
"""

# A version is the import's time in epoch microseconds, or one more than the
# last version if the clock is behind it: it grows with every import, and a
# series dropped and imported again (or a database restored from a dump)
# does not come back to a version a stored result already holds.
_BUMP_VERSION = """
INSERT INTO candle_imports AS i (instrument, interval, version, imported_at)
VALUES (%s, %s, (extract(epoch FROM clock_timestamp()) * 1e6)::bigint, now())
ON CONFLICT (instrument, interval) DO UPDATE SET
    version = greatest(i.version + 1, excluded.version),
    imported_at = excluded.imported_at
RETURNING version
"""

_READ_VERSION = """
SELECT version FROM candle_imports WHERE instrument = %s AND interval = %s
"""

_INSERT_CHUNK = """
INSERT INTO candle_chunks (
    instrument, interval, chunk_start, n_candles, first_time, last_time,
    times, open, high, low, close, volume
) VALUES (%s, %s, %s, %s, %s, %s, %b, %b, %b, %b, %b, %b)
"""


@dataclass(frozen=True)
class Coverage:
    """The stored candles of one instrument and interval: span and count.

    `last_at` is the open time of the last candle. Gaps (a closed market)
    are allowed, so `n_candles` may be below the number of interval steps.
    """

    instrument: str
    interval: Interval
    first_at: datetime
    last_at: datetime
    n_candles: int


def chunk_span_seconds(interval: Interval) -> int:
    """Seconds covered by one chunk; chunk starts are multiples of it."""
    return CHUNK_CANDLES * interval.seconds


def write_candles(
    conn: psycopg.Connection[tuple[object, ...]],
    instrument: str,
    interval: Interval,
    candles: Candles,
) -> int | None:
    """Store `candles`, replacing the stored ones from their first to last time.

    Stored candles of the same instrument and interval outside
    [first time, last time] of `candles` are kept. Runs in one transaction:
    either every chunk is replaced or none is, and the series' data version
    moves on with them. Imports of one series are serialised on an advisory
    lock, so two of them cannot interleave chunks.

    Returns:
        The series' new data version; None when `candles` is empty and
        nothing was written.
    """
    if len(candles) == 0:
        return None
    span = chunk_span_seconds(interval)
    first, last = int(candles.times[0]), int(candles.times[-1])
    first_chunk, last_chunk = first - first % span, last - last % span

    try:
        with conn.transaction():
            conn.execute(_LOCK_SERIES, (f"{instrument}/{interval.value}",))
            merged = _merge_with_stored(
                conn, instrument, interval, candles, (first_chunk, last_chunk)
            )
            conn.execute(
                _DELETE_CHUNKS, (instrument, interval.value, first_chunk, last_chunk)
            )
            with conn.cursor() as cursor:
                cursor.executemany(
                    _INSERT_CHUNK, list(_chunk_rows(instrument, interval, merged))
                )
            row = conn.execute(_BUMP_VERSION, (instrument, interval.value)).fetchone()
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable() from exc
    assert row is not None and isinstance(row[0], int)

    logger.debug(
        "candles stored",
        extra={
            "event": "candles_stored",
            "instrument": instrument,
            "interval": interval.value,
            "n_candles": len(candles),
            "data_version": row[0],
        },
    )
    return row[0]


def read_data_version(
    conn: psycopg.Connection[tuple[object, ...]], instrument: str, interval: Interval
) -> int | None:
    """The data version of one series, or None if it was never imported.

    The version changes with every import of the series (`write_candles`).
    """
    try:
        row = conn.execute(_READ_VERSION, (instrument, interval.value)).fetchone()
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable() from exc
    if row is None:
        return None
    assert isinstance(row[0], int)
    return row[0]


def _merge_with_stored(
    conn: psycopg.Connection[tuple[object, ...]],
    instrument: str,
    interval: Interval,
    candles: Candles,
    chunk_range: tuple[int, int],
) -> Candles:
    # Only the first and last chunk can hold candles outside the new span;
    # the chunks between lie wholly inside it and are simply replaced.
    first_chunk, last_chunk = chunk_range
    span = chunk_span_seconds(interval)
    stored = _fetch_columns(conn, instrument, interval, first_chunk, first_chunk + span)
    if last_chunk != first_chunk:
        tail = _fetch_columns(conn, instrument, interval, last_chunk, last_chunk + span)
        stored = {name: np.concatenate([stored[name], tail[name]]) for name in COLUMNS}

    times = stored["times"]
    before = times < candles.times[0]
    after = times > candles.times[-1]
    if not (before.any() or after.any()):
        return candles
    new = _columns_of(candles)
    return Candles.of(
        *(
            np.concatenate([stored[name][before], new[name], stored[name][after]])
            for name in COLUMNS
        )
    )


def _chunk_rows(
    instrument: str, interval: Interval, candles: Candles
) -> Iterator[tuple[object, ...]]:
    span = chunk_span_seconds(interval)
    keys = candles.times - candles.times % span
    borders = np.flatnonzero(np.diff(keys)) + 1
    starts = np.concatenate([[0], borders])
    ends = np.concatenate([borders, [len(candles)]])
    columns = _columns_of(candles)
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        times = columns["times"][start:end]
        yield (
            instrument,
            interval.value,
            int(keys[start]),
            end - start,
            int(times[0]),
            int(times[-1]),
            times.astype(_TIME_DTYPE).tobytes(),
            *(
                columns[name][start:end].astype(_VALUE_DTYPE).tobytes()
                for name in COLUMNS[1:]
            ),
        )


def _columns_of(candles: Candles) -> dict[str, IntArray | FloatArray]:
    return {name: getattr(candles, name) for name in COLUMNS}


def read_candles(
    conn: psycopg.Connection[tuple[object, ...]],
    instrument: str,
    interval: Interval,
    start_at: datetime,
    end_at: datetime,
) -> Candles:
    """The stored candles with open time in [start_at, end_at), maybe none."""
    start, end = int(start_at.timestamp()), int(end_at.timestamp())
    span = chunk_span_seconds(interval)
    try:
        columns = _fetch_columns(
            conn, instrument, interval, start - start % span, end, (start, end)
        )
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable() from exc
    return _trusted_candles(columns)


def _trusted_candles(columns: dict[str, IntArray | FloatArray]) -> Candles:
    # Every stored chunk was checked by `Candles.of` before it was written,
    # so loading skips the checks: they cost a sixth of a year's load.
    for values in columns.values():
        values.flags.writeable = False
    times = cast(IntArray, columns["times"])
    prices = [cast(FloatArray, columns[name]) for name in COLUMNS[1:]]
    return Candles(times, *prices)


def _fetch_columns(
    conn: psycopg.Connection[tuple[object, ...]],
    instrument: str,
    interval: Interval,
    from_chunk: int,
    to_chunk: int,
    times_within: tuple[int, int] | None = None,
) -> dict[str, IntArray | FloatArray]:
    """Every column of the chunks starting in [from_chunk, to_chunk), joined.

    With `times_within` (start, end), only candles with open time in
    [start, end) are kept; they are cut out chunk by chunk, so the result
    owns exactly the bytes it shows (the cache counts them).
    """
    # Binary results hand bytea over without the hex round trip of the text
    # format, and the borrowing loader skips a copy per value; the views are
    # valid only while the cursor holds the result, so join them inside.
    with conn.cursor(binary=True) as cursor:
        cursor.adapters.register_loader("bytea", _BorrowedBytesLoader)
        cursor.execute(_READ_CHUNKS, (instrument, interval.value, from_chunk, to_chunk))
        return _join_chunks(cursor.fetchall(), times_within)


class _BorrowedBytesLoader(Loader):
    """bytea as a view of the query result's own buffer, not a copy."""

    format = psycopg.pq.Format.BINARY

    def load(self, data: Buffer) -> Buffer:
        return data


def _join_chunks(
    rows: list[tuple[object, ...]], times_within: tuple[int, int] | None
) -> dict[str, IntArray | FloatArray]:
    time_parts: list[IntArray] = []
    value_parts: dict[str, list[FloatArray]] = {name: [] for name in COLUMNS[1:]}
    for row in rows:
        times = np.frombuffer(cast(Buffer, row[0]), dtype=_TIME_DTYPE)
        low, high = 0, len(times)
        if times_within is not None:
            low, high = np.searchsorted(times, times_within).tolist()
        time_parts.append(times[low:high])
        for i, name in enumerate(COLUMNS[1:], start=1):
            values = np.frombuffer(cast(Buffer, row[i]), dtype=_VALUE_DTYPE)
            value_parts[name].append(values[low:high])

    # concatenate copies even a single part, so the arrays own their memory
    # and outlive the query result.
    columns: dict[str, IntArray | FloatArray] = {
        "times": np.concatenate(time_parts) if rows else np.empty(0, np.int64)
    }
    for name, parts in value_parts.items():
        columns[name] = np.concatenate(parts) if rows else np.empty(0, np.float64)
    return columns


def read_coverage(
    conn: psycopg.Connection[tuple[object, ...]], instrument: str, interval: Interval
) -> Coverage | None:
    """The span of the stored candles of one series, or None if it has none."""
    try:
        row = conn.execute(_READ_COVERAGE, (instrument, interval.value)).fetchone()
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable() from exc
    if row is None or row[0] is None:
        return None
    first, last, n_candles = row
    assert isinstance(first, int) and isinstance(last, int)
    assert isinstance(n_candles, int)
    return Coverage(
        instrument,
        interval,
        datetime.fromtimestamp(first, UTC),
        datetime.fromtimestamp(last, UTC),
        n_candles,
    )


def list_instruments(conn: psycopg.Connection[tuple[object, ...]]) -> list[Coverage]:
    """Every stored series with its coverage, by instrument, then shortest
    interval first."""
    try:
        rows = conn.execute(_LIST_INSTRUMENTS).fetchall()
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable() from exc
    listed = [
        Coverage(str(i), Interval(str(v)), _utc(first), _utc(last), int(str(n)))
        for i, v, first, last, n in rows
    ]
    return sorted(listed, key=lambda c: (c.instrument, c.interval.seconds))


def _utc(value: object) -> datetime:
    assert isinstance(value, datetime)
    return value.astimezone(UTC)
