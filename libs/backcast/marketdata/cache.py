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
    """What a backtest asked for: one series over [start_at, end_at), as of
    one data version of the series (see `storage.read_data_version`)."""

    instrument: str
    interval: Interval
    start_at: datetime
    end_at: datetime
    data_version: int = 0


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
        """Keep `candles` under `key`, dropping other versions of its series.

        The database holds one version of a series at a time, so of the
        entries of one instrument and interval at most one can still be hit.
        """
        size = candles_nbytes(candles)
        with self._lock:
            previous = self._entries.pop(key, None)
            if previous is not None:
                self._nbytes -= candles_nbytes(previous)
            self._drop_other_versions(key)
            if size > self.max_bytes:
                return
            self._entries[key] = candles
            self._nbytes += size
            while self._nbytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._nbytes -= candles_nbytes(evicted)

    def _drop_other_versions(self, key: CandleKey) -> None:
        stale = [
            other
            for other in self._entries
            if other[:2] == key[:2] and other.data_version != key.data_version
        ]
        for other in stale:
            self._nbytes -= candles_nbytes(self._entries.pop(other))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._nbytes = 0
