"""The candle cache: hits share the loaded arrays; eviction keeps it in bytes."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import numpy as np

from backcast.engine.candles import Candles
from backcast.engine.spec import Interval
from backcast.marketdata.cache import CandleCache, CandleKey, candles_nbytes

START = datetime(2024, 1, 1, tzinfo=UTC)


def candles_of(n: int) -> Candles:
    prices = np.full(n, 10.0)
    return Candles.of(60 * np.arange(n), prices, prices, prices, prices, prices)


def key_of(days: int) -> CandleKey:
    return CandleKey("BTCUSD", Interval.ONE_MINUTE, START, START + timedelta(days))


def test_candles_take_48_bytes_each() -> None:
    assert candles_nbytes(candles_of(1000)) == 48_000


def test_hit_returns_the_stored_candles() -> None:
    cache = CandleCache()
    candles = candles_of(10)
    cache.put(key_of(1), candles)

    assert cache.get(key_of(1)) is candles
    assert cache.get(key_of(2)) is None


def test_hit_takes_under_a_millisecond() -> None:
    cache = CandleCache()
    cache.put(key_of(1), candles_of(525_600))

    started = time.perf_counter()
    for _ in range(1000):
        cache.get(key_of(1))
    mean_seconds = (time.perf_counter() - started) / 1000

    assert mean_seconds < 0.001


def test_least_recently_used_entry_is_evicted_first() -> None:
    cache = CandleCache(max_bytes=3 * 4800)
    for days in (1, 2, 3):
        cache.put(key_of(days), candles_of(100))
    cache.get(key_of(1))

    cache.put(key_of(4), candles_of(100))

    assert cache.get(key_of(2)) is None
    assert [cache.get(key_of(d)) is not None for d in (1, 3, 4)] == [True] * 3
    assert cache.nbytes == 3 * 4800


def test_a_large_entry_evicts_as_many_as_needed() -> None:
    cache = CandleCache(max_bytes=10_000)
    cache.put(key_of(1), candles_of(100))
    cache.put(key_of(2), candles_of(100))

    cache.put(key_of(3), candles_of(200))

    assert len(cache) == 1
    assert cache.nbytes == 9600


def test_entry_larger_than_the_budget_is_not_kept() -> None:
    cache = CandleCache(max_bytes=1000)

    cache.put(key_of(1), candles_of(100))

    assert cache.get(key_of(1)) is None
    assert cache.nbytes == 0


def test_putting_a_key_again_replaces_its_entry() -> None:
    cache = CandleCache()
    cache.put(key_of(1), candles_of(100))
    newer = candles_of(50)

    cache.put(key_of(1), newer)

    assert cache.get(key_of(1)) is newer
    assert cache.nbytes == 2400
