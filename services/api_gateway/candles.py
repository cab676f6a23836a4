"""Candle imports for the gateway: the CSV upload stream, then candle storage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import psycopg

from backcast.engine.spec import INSTRUMENT_PATTERN, SYNTHETIC_PREFIX, Interval
from backcast.errors import (
    DatabaseUnavailable,
    FieldViolation,
    InvalidArgument,
    InvalidCandleFile,
)
from backcast.marketdata.csv_import import parse_candles
from backcast.marketdata.storage import (
    Coverage,
    list_instruments,
    read_coverage,
    write_candles,
)
from backcast.rpc import translate
from backcast.v1 import backtest_service_pb2 as api

MAX_CHUNK_BYTES = 1 << 20
MAX_FILE_BYTES = 256 << 20
CONNECT_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class CandleUpload:
    """A whole uploaded CSV file and the series it holds."""

    instrument: str
    interval: Interval
    data: bytearray


@dataclass(frozen=True)
class ImportedCandles:
    """What an import stored: the series' coverage after it, and the file's
    number of candles."""

    coverage: Coverage
    n_imported: int


async def receive_upload(
    requests: AsyncIterator[api.ImportCandlesRequest],
) -> CandleUpload:
    """The file of an ImportCandles stream, checked message by message.

    Raises:
        InvalidArgument: naming `instrument`, `interval` or `csv_chunk`; a
            file over MAX_FILE_BYTES is refused as soon as it gets there.
    """
    series: tuple[str, Interval] | None = None
    data = bytearray()
    async for request in requests:
        if series is None:
            series = _series_of(request)
        else:
            _check_repeated(request, series)
        _check_chunk(len(request.csv_chunk), len(data))
        data += request.csv_chunk

    if series is None:
        raise InvalidArgument.of(
            "instrument", "required in the first message; the stream was empty"
        )
    if not data:
        raise InvalidArgument.of(
            "csv_chunk", "no CSV data received; send the file in csv_chunk pieces"
        )
    return CandleUpload(series[0], series[1], data)


def _series_of(request: api.ImportCandlesRequest) -> tuple[str, Interval]:
    violations = _instrument_violations(request.instrument)
    interval = None
    if request.interval == 0:
        violations.append(FieldViolation("interval", "required in the first message"))
    else:
        try:
            interval = translate.interval_from_proto(request.interval, "interval")
        except InvalidArgument as exc:
            violations += exc.violations
    if violations or interval is None:
        raise InvalidArgument(violations)
    return request.instrument, interval


def _instrument_violations(instrument: str) -> list[FieldViolation]:
    if not instrument:
        return [FieldViolation("instrument", "required in the first message")]
    if not INSTRUMENT_PATTERN.match(instrument):
        return [
            FieldViolation(
                "instrument",
                f'"{instrument[:40]}" is not a symbol: 1 to 32 characters of '
                "A-Z, 0-9, '.', '-', '_' or '/', starting with a letter or digit",
            )
        ]
    if instrument.startswith(SYNTHETIC_PREFIX):
        return [
            FieldViolation(
                "instrument",
                f'"{instrument}" is synthetic: {SYNTHETIC_PREFIX}* series are '
                "generated, not stored; import under another symbol",
            )
        ]
    return []


def _check_repeated(
    request: api.ImportCandlesRequest, series: tuple[str, Interval]
) -> None:
    instrument, interval = series
    if request.instrument and request.instrument != instrument:
        raise InvalidArgument.of(
            "instrument",
            f'"{request.instrument[:40]}" differs from "{instrument}" of the first '
            "message; leave it empty or repeat it",
        )
    code = translate.interval_to_proto(interval)
    if request.interval and request.interval != code:
        raise InvalidArgument.of(
            "interval",
            f"{request.interval} differs from {code} of the first message; leave "
            "it unspecified or repeat it",
        )


def _check_chunk(n_bytes: int, n_received: int) -> None:
    if n_bytes > MAX_CHUNK_BYTES:
        raise InvalidArgument.of(
            "csv_chunk",
            f"{n_bytes} bytes; send the file in pieces of at most "
            f"{MAX_CHUNK_BYTES} bytes (1 MiB)",
        )
    # The limit is a property of the request, not a quota that frees up
    # later, so it is INVALID_ARGUMENT like the chunk size.
    if n_received + n_bytes > MAX_FILE_BYTES:
        raise InvalidArgument.of(
            "csv_chunk",
            f"the file exceeds {MAX_FILE_BYTES} bytes (256 MiB); split it by "
            "time range and import the parts one by one",
        )


# LIMITATION: the whole file is held in memory, then parsed on a worker thread
# that shares the interpreter lock with the event loop: a large import takes
# several times the file's size in memory and slows the gateway's other calls
# while it parses. Acceptable while imports are rare and manual; resolve by
# parsing in a separate process, or by an import service apart from the API.
class CandleStorage:
    """The market-data database, reached from the event loop.

    The storage functions are synchronous psycopg, so each call runs on a
    worker thread with a connection of its own, opened for the call and
    closed after it: imports and listings are rare next to backtest calls,
    and connecting costs little beside them.
    """

    def __init__(self, url: str) -> None:
        self._url = url

    @property
    def url(self) -> str:
        """The market-data database's URL (it may hold a password)."""
        return self._url

    async def import_candles(self, upload: CandleUpload) -> ImportedCandles:
        """Parse the whole file, then store its candles in one transaction.

        Raises:
            InvalidCandleFile: naming the first bad line; nothing is stored.
            DatabaseUnavailable: the database could not be reached.
        """
        return await asyncio.to_thread(_import_candles, self._url, upload)

    async def list_series(self) -> list[Coverage]:
        """Every stored instrument and interval with its coverage."""
        return await asyncio.to_thread(_list_series, self._url)


def _import_candles(url: str, upload: CandleUpload) -> ImportedCandles:
    candles = parse_candles(_decoded(upload.data), upload.interval)
    try:
        with _connect(url) as conn:
            write_candles(conn, upload.instrument, upload.interval, candles)
            coverage = read_coverage(conn, upload.instrument, upload.interval)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable() from exc
    assert coverage is not None, "the series was just written"
    return ImportedCandles(coverage, len(candles))


def _list_series(url: str) -> list[Coverage]:
    try:
        with _connect(url) as conn:
            return list_instruments(conn)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable() from exc


def _connect(url: str) -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(
            url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS
        )
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable() from exc


def _decoded(data: bytearray) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InvalidCandleFile(
            line, "not UTF-8 text; save the file as UTF-8"
        ) from None
