"""Loaded candles kept in memory, least recently used first out, bounded by bytes."""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime
from typing import NamedTuple

from backcast.engine.candles import Candles
from backcast.engine.spec import Interval

DEFAULT_CACHE_BYTES = 512 * 1024 * 1024


class CandleKey(NamedTuple):
    """What a backtest asked for: one series over [start_at, end_at)."""

    instrument: str
    interval: Interval
    start_at: datetime
    end_at: datetime


def candles_nbytes(candles: Candles) -> int:
    """Bytes held by the arrays of `candles` (16 + 40 per candle)."""
    arrays = (candles.times, candles.open, candles.high, candles.low)
    return sum(a.nbytes for a in (*arrays, candles.close, candles.volume))


class CandleCache:
    """An LRU map from `CandleKey` to read-only `Candles`, at most `max_bytes`.

    Entries are shared, not copied: `Candles` arrays are read-only, so a
    strategy cannot alter what the next backtest gets. An entry larger than
    the whole budget is not kept. Safe to use from several threads.
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must not be negative, not {max_bytes}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[CandleKey, Candles] = OrderedDict()
        self._nbytes = 0
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        return self._nbytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CandleKey) -> Candles | None:
        with self._lock:
            candles = self._entries.get(key)
            if candles is not None:
                self._entries.move_to_end(key)
            return candles

    def put(self, key: CandleKey, candles: Candles) -> None:
        size = candles_nbytes(candles)
        with self._lock:
            previous = self._entries.pop(key, None)
            if previous is not None:
                self._nbytes -= candles_nbytes(previous)
            if size > self.max_bytes:
                return
            self._entries[key] = candles
            self._nbytes += size
            while self._nbytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._nbytes -= candles_nbytes(evicted)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._nbytes = 0
