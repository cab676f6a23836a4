"""The candle cache keys entries by data version and keeps one per series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from backcast.engine.candles import Candles
from backcast.engine.spec import Interval
from backcast.marketdata.cache import CandleCache, CandleKey, candles_nbytes

START = datetime(2024, 1, 1, tzinfo=UTC)


def candles_of(n: int) -> Candles:
    prices = np.full(n, 10.0)
    return Candles.of(60 * np.arange(n), prices, prices, prices, prices, prices)


def key_of(version: int, *, days: int = 1, instrument: str = "BTCUSD") -> CandleKey:
    end = START + timedelta(days)
    return CandleKey(instrument, Interval.ONE_MINUTE, START, end, version)


def test_another_version_of_the_same_range_is_a_miss() -> None:
    cache = CandleCache()
    cache.put(key_of(1), candles_of(10))

    assert cache.get(key_of(2)) is None


def test_a_new_version_drops_every_range_of_the_old_one() -> None:
    cache = CandleCache()
    cache.put(key_of(1, days=1), candles_of(10))
    cache.put(key_of(1, days=2), candles_of(20))
    kept = candles_of(30)
    cache.put(key_of(1, instrument="ETHUSD"), kept)

    newer = candles_of(40)
    cache.put(key_of(2, days=3), newer)

    assert len(cache) == 2
    assert cache.get(key_of(1, instrument="ETHUSD")) is kept
    assert cache.get(key_of(2, days=3)) is newer
    assert cache.nbytes == candles_nbytes(kept) + candles_nbytes(newer)


def test_ranges_of_one_version_share_the_cache() -> None:
    cache = CandleCache()
    cache.put(key_of(5, days=1), candles_of(10))
    cache.put(key_of(5, days=2), candles_of(20))

    assert len(cache) == 2
