"""Candles for a backtest: synthetic "SYN-*" series, or stored ones via a cache."""

from __future__ import annotations

import atexit
import logging
import os
import threading

import psycopg

from backcast.config import marketdata_url, read_int
from backcast.engine.candles import Candles
from backcast.engine.spec import SYNTHETIC_PREFIX, BacktestSpec
from backcast.errors import BacktestFailed, DatabaseUnavailable
from backcast.marketdata.cache import DEFAULT_CACHE_BYTES, CandleCache, CandleKey
from backcast.marketdata.storage import read_candles, read_coverage
from backcast.marketdata.synthetic import synthetic_candles

__all__ = ["candle_cache", "close_connections", "load_candles"]

logger = logging.getLogger(__name__)

CACHE_BYTES_VAR = "BACKCAST_MARKETDATA_CACHE_BYTES"

_lock = threading.Lock()
_connections: dict[str, psycopg.Connection[tuple[object, ...]]] = {}
_cache: CandleCache | None = None


def candle_cache() -> CandleCache:
    """The process-wide cache of stored candles.

    Its size comes from BACKCAST_MARKETDATA_CACHE_BYTES (default 512 MiB; 0
    turns caching off), read on first use.
    """
    global _cache
    with _lock:
        if _cache is None:
            max_bytes = read_int(
                os.environ, CACHE_BYTES_VAR, DEFAULT_CACHE_BYTES, 0, 2**40
            )
            _cache = CandleCache(max_bytes)
        return _cache


def load_candles(spec: BacktestSpec) -> Candles:
    """The spec's candles in [start_at, end_at), or BacktestFailed.

    "SYN-*" instruments are generated. Others are read from the market-data
    database (BACKCAST_MARKETDATA_URL, else BACKCAST_DATABASE_URL) through
    the process-wide cache. A range the stored candles do not cover fails
    for good (`retryable=False`), since another attempt would find no more
    data; a database outage fails the attempt with `retryable=True`.
    """
    if spec.instrument.startswith(SYNTHETIC_PREFIX):
        return synthetic_candles(
            spec.instrument, spec.interval, spec.start_at, spec.end_at
        )

    key = CandleKey(spec.instrument, spec.interval, spec.start_at, spec.end_at)
    cache = candle_cache()
    cached = cache.get(key)
    if cached is not None:
        return cached

    url = marketdata_url()
    if url is None:
        raise BacktestFailed(
            f'no market data for instrument "{spec.instrument}": no market-data '
            "database is configured (BACKCAST_MARKETDATA_URL)",
            retryable=False,
        )
    try:
        candles = _load_stored(url, spec)
    except DatabaseUnavailable as exc:
        _forget_connection(url)
        raise BacktestFailed(
            "market-data database unreachable; the attempt can be retried",
            retryable=True,
        ) from exc
    cache.put(key, candles)
    return candles


def _load_stored(url: str, spec: BacktestSpec) -> Candles:
    conn = _connection(url)
    candles = read_candles(
        conn, spec.instrument, spec.interval, spec.start_at, spec.end_at
    )
    missing = _missing_data_message(spec)
    if len(candles) == 0:
        raise BacktestFailed(missing, retryable=False)

    # Gaps inside the stored span are a closed market and allowed; a range
    # reaching past either end of it is data that was never imported.
    coverage = read_coverage(conn, spec.instrument, spec.interval)
    assert coverage is not None
    last_end = coverage.last_at + spec.interval.step
    if coverage.first_at > spec.start_at or last_end < spec.end_at:
        raise BacktestFailed(
            f"{missing} (stored: {coverage.first_at.isoformat()} to "
            f"{last_end.isoformat()})",
            retryable=False,
        )
    return candles


def _missing_data_message(spec: BacktestSpec) -> str:
    return (
        f'no market data for instrument "{spec.instrument}" at '
        f"{spec.interval.value} in [{spec.start_at.isoformat()}, "
        f"{spec.end_at.isoformat()}); import it with `backcast data import`"
    )


def _connection(url: str) -> psycopg.Connection[tuple[object, ...]]:
    # One connection per process, kept open: connecting costs more than the
    # load itself. Reads run in autocommit, so it never idles in a transaction.
    with _lock:
        conn = _connections.get(url)
        if conn is None or conn.closed:
            try:
                conn = psycopg.connect(url, autocommit=True)
            except psycopg.OperationalError as exc:
                raise DatabaseUnavailable() from exc
            _connections[url] = conn
        return conn


def _forget_connection(url: str) -> None:
    with _lock:
        conn = _connections.pop(url, None)
    if conn is not None:
        conn.close()


@atexit.register
def close_connections() -> None:
    """Close this process's market-data connections (a later load reopens)."""
    with _lock:
        connections = list(_connections.values())
        _connections.clear()
    for conn in connections:
        conn.close()
