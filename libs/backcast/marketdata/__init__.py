"""Candles for a backtest, synthetic "SYN-*" series or stored ones, via a cache.

Candles come with their data version, which results keep so that the full
equity curve can later be rebuilt from the same candles, or refused when
they were re-imported since.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from dataclasses import dataclass

import psycopg

from backcast.config import marketdata_url, read_int
from backcast.engine.candles import Candles
from backcast.engine.spec import SYNTHETIC_PREFIX, BacktestSpec
from backcast.errors import BacktestFailed, DatabaseUnavailable
from backcast.marketdata import synthetic
from backcast.marketdata.cache import DEFAULT_CACHE_BYTES, CandleCache, CandleKey
from backcast.marketdata.storage import (
    read_candles,
    read_coverage,
    read_data_version,
)

__all__ = [
    "VersionedCandles",
    "candle_cache",
    "close_connections",
    "load_candles",
    "load_versioned_candles",
]

logger = logging.getLogger(__name__)

CACHE_BYTES_VAR = "BACKCAST_MARKETDATA_CACHE_BYTES"

# Version text of stored series; synthetic ones have `synthetic.DATA_VERSION`.
_IMPORT_VERSION_PREFIX = "import:"

_lock = threading.Lock()
# Keyed by URL and thread: a load reads in a transaction of its own, which
# another thread's statements on a shared connection would join.
_connections: dict[tuple[str, int], psycopg.Connection[tuple[object, ...]]] = {}
_cache: CandleCache | None = None


@dataclass(frozen=True)
class VersionedCandles:
    """Candles and the version of the data they were read from.

    `data_version` is the same text for the same candles: "synthetic:N" for
    a generated series (N counts generator changes), "import:V" for a
    stored one, where V changes with every import of the series.
    """

    candles: Candles
    data_version: str


def candle_cache() -> CandleCache:
    """The process-wide cache of loaded and generated candles.

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

    As `load_versioned_candles`, without the version.
    """
    return load_versioned_candles(spec).candles


def load_versioned_candles(
    spec: BacktestSpec, *, url: str | None = None
) -> VersionedCandles:
    """The spec's candles in [start_at, end_at) with their data version.

    "SYN-*" instruments are generated. Others are read from the market-data
    database at `url` (default: BACKCAST_MARKETDATA_URL, else
    BACKCAST_DATABASE_URL) through the process-wide cache, whose entries
    are keyed by data version: an import is seen by the next load. A range
    the stored candles do not cover fails for good (`retryable=False`),
    since another attempt would find no more data; a database outage fails
    the attempt with `retryable=True`.

    Raises:
        BacktestFailed: as above.
    """
    if spec.instrument.startswith(SYNTHETIC_PREFIX):
        return VersionedCandles(_synthetic(spec), synthetic.DATA_VERSION)

    url = url or marketdata_url()
    if url is None:
        raise BacktestFailed(
            f'no market data for instrument "{spec.instrument}": no market-data '
            "database is configured (BACKCAST_MARKETDATA_URL)",
            retryable=False,
        )
    try:
        return _load_stored(url, spec)
    except DatabaseUnavailable as exc:
        _forget_connection(url)
        raise BacktestFailed(
            "market-data database unreachable; the attempt can be retried",
            retryable=True,
        ) from exc


def _synthetic(spec: BacktestSpec) -> Candles:
    # Even a few candles cost whole chunks of several random streams (about
    # 1.5 ms for four hours of 5-minute candles, far more than their backtest),
    # so a burst of jobs on one series generates it once. A synthetic
    # series never changes within a release: one version fits all.
    cache = candle_cache()
    key = _key(spec, 0)
    candles = cache.get(key)
    if candles is None:
        candles = synthetic.synthetic_candles(
            spec.instrument, spec.interval, spec.start_at, spec.end_at
        )
        cache.put(key, candles)
    return candles


def _load_stored(url: str, spec: BacktestSpec) -> VersionedCandles:
    conn = _connection(url)
    cache = candle_cache()
    # One primary-key lookup per load keeps the cache honest: a hit is only
    # taken for the version the database holds now.
    version = read_data_version(conn, spec.instrument, spec.interval)
    if version is not None:
        cached = cache.get(_key(spec, version))
        if cached is not None:
            return VersionedCandles(cached, _import_version(version))

    # The version, the candles and their coverage come from one snapshot
    # (the connection's transactions are REPEATABLE READ), so an import
    # committed meanwhile cannot pair new candles with the old version.
    try:
        with conn.transaction():
            version = read_data_version(conn, spec.instrument, spec.interval)
            candles = _read_covered(conn, spec)
    except psycopg.OperationalError as exc:
        # BEGIN and COMMIT, which the reads do not wrap, can fail as well.
        raise DatabaseUnavailable() from exc
    # Series stored before versions were kept have none until re-imported.
    version = version or 0
    cache.put(_key(spec, version), candles)
    return VersionedCandles(candles, _import_version(version))


def _key(spec: BacktestSpec, version: int) -> CandleKey:
    return CandleKey(
        spec.instrument, spec.interval, spec.start_at, spec.end_at, version
    )


def _import_version(version: int) -> str:
    return f"{_IMPORT_VERSION_PREFIX}{version}"


def _read_covered(
    conn: psycopg.Connection[tuple[object, ...]], spec: BacktestSpec
) -> Candles:
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
    # One connection per thread (a slot process has one), kept open:
    # connecting costs more than the load itself. Reads run in autocommit,
    # so it never idles in a transaction.
    key = (url, threading.get_ident())
    with _lock:
        conn = _connections.get(key)
        if conn is None or conn.closed:
            try:
                conn = psycopg.connect(url, autocommit=True)
            except psycopg.OperationalError as exc:
                raise DatabaseUnavailable() from exc
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            _connections[key] = conn
        return conn


def _forget_connection(url: str) -> None:
    with _lock:
        conn = _connections.pop((url, threading.get_ident()), None)
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
