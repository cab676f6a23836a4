"""load_candles serves synthetic instruments without any database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from backcast.engine.spec import BacktestSpec, Costs, Interval, StrategySpec
from backcast.errors import BacktestFailed
from backcast.marketdata import candle_cache, load_candles
from backcast.marketdata.cache import CandleKey

START = datetime(2024, 6, 1, tzinfo=UTC)


def spec_for(instrument: str, interval: Interval = Interval.ONE_HOUR) -> BacktestSpec:
    return BacktestSpec(
        strategy=StrategySpec("buy_and_hold", {}),
        instrument=instrument,
        interval=interval,
        start_at=START,
        end_at=START + timedelta(days=10),
        costs=Costs(),
    )


def test_synthetic_instrument_gets_every_candle_of_its_period() -> None:
    spec = spec_for("SYN-ETHUSD")

    candles = load_candles(spec)

    assert len(candles) == spec.n_candles == 240
    assert candles.times[0] == int(START.timestamp())
    np.testing.assert_array_equal(np.diff(candles.times), 3_600)


def test_same_spec_loads_the_same_candles() -> None:
    first, second = load_candles(spec_for("SYN-X")), load_candles(spec_for("SYN-X"))

    np.testing.assert_array_equal(first.close, second.close)


def test_other_instruments_fail_without_retry_when_no_database_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("BACKCAST_MARKETDATA_URL", "BACKCAST_DATABASE_URL", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)

    with pytest.raises(BacktestFailed) as failure:
        load_candles(spec_for("BTCUSD"))

    assert failure.value.retryable is False
    assert failure.value.message == (
        'no market data for instrument "BTCUSD": no market-data database is '
        "configured (BACKCAST_MARKETDATA_URL)"
    )


def test_repeated_synthetic_load_is_served_from_the_cache() -> None:
    candle_cache().clear()
    spec = spec_for("SYN-CACHED")

    first, second = load_candles(spec), load_candles(spec)

    assert second.close is first.close
    assert (
        candle_cache().get(
            CandleKey(spec.instrument, spec.interval, spec.start_at, spec.end_at)
        )
        is first
    )


def test_synthetic_load_with_the_cache_off_generates_the_same_candles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cached = load_candles(spec_for("SYN-UNCACHED"))
    monkeypatch.setattr(candle_cache(), "max_bytes", 0)
    candle_cache().clear()

    generated = load_candles(spec_for("SYN-UNCACHED"))

    assert generated.close is not cached.close
    np.testing.assert_array_equal(generated.close, cached.close)
    assert len(candle_cache()) == 0
