"""Data versions of stored series: every import moves them on, and the
candle cache serves only the version the database holds now."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest

from backcast.engine import run_backtest
from backcast.engine.candles import Candles
from backcast.engine.spec import BacktestSpec, Interval, StrategySpec
from backcast.marketdata import (
    candle_cache,
    close_connections,
    load_candles,
    load_versioned_candles,
)
from backcast.marketdata.storage import read_data_version, write_candles
from backcast.marketdata.synthetic import DATA_VERSION

Connection = psycopg.Connection[tuple[object, ...]]

MINUTE = Interval.ONE_MINUTE
START = datetime(2024, 1, 1, tzinfo=UTC)
START_SECONDS = int(START.timestamp())
N_CANDLES = 3_000


@pytest.fixture
def conn(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Connection]:
    """A connection to empty candle tables, also set as the market-data URL."""
    monkeypatch.setenv("BACKCAST_MARKETDATA_URL", database_url)
    candle_cache().clear()
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("SET lock_timeout = '10s'")
        connection.execute("TRUNCATE candle_chunks, candle_imports")
        yield connection
    candle_cache().clear()
    close_connections()


def trending_candles(drift: float, *, seed: int) -> Candles:
    rng = np.random.default_rng(seed)
    steps = rng.normal(drift, 2e-3, N_CANDLES)
    close = 100 * np.exp(np.cumsum(steps))
    open_ = np.concatenate([[100.0], close[:-1]])
    high = np.maximum(open_, close) * 1.0005
    low = np.minimum(open_, close) * 0.9995
    times = START_SECONDS + 60 * np.arange(N_CANDLES)
    return Candles.of(times, open_, high, low, close, np.ones(N_CANDLES))


def crossover_spec(instrument: str = "BTCUSD") -> BacktestSpec:
    return BacktestSpec(
        strategy=StrategySpec(
            "moving_average_crossover",
            {"fast_period": 10, "slow_period": 30, "kind": "simple"},
        ),
        instrument=instrument,
        interval=MINUTE,
        start_at=START,
        end_at=START + timedelta(minutes=N_CANDLES),
    )


def test_every_import_moves_the_data_version_on(conn: Connection) -> None:
    first = write_candles(conn, "BTCUSD", MINUTE, trending_candles(1e-4, seed=1))
    second = write_candles(conn, "BTCUSD", MINUTE, trending_candles(1e-4, seed=1))
    other = write_candles(conn, "BTCUSD", Interval.ONE_HOUR, _hourly())

    assert first is not None and second is not None and other is not None
    assert second > first
    assert read_data_version(conn, "BTCUSD", MINUTE) == second
    assert read_data_version(conn, "BTCUSD", Interval.ONE_HOUR) == other
    assert read_data_version(conn, "ETHUSD", MINUTE) is None


def test_an_import_that_fails_keeps_the_data_version(conn: Connection) -> None:
    before = write_candles(conn, "BTCUSD", MINUTE, trending_candles(1e-4, seed=1))
    conn.execute(
        "ALTER TABLE candle_chunks ADD CONSTRAINT no_more CHECK (false) NOT VALID"
    )
    try:
        with pytest.raises(psycopg.errors.CheckViolation):
            write_candles(conn, "BTCUSD", MINUTE, trending_candles(-1e-4, seed=2))
    finally:
        conn.execute("ALTER TABLE candle_chunks DROP CONSTRAINT no_more")

    assert read_data_version(conn, "BTCUSD", MINUTE) == before


def test_backtest_after_a_reimport_sees_the_new_candles(conn: Connection) -> None:
    rising = trending_candles(2e-4, seed=1)
    falling = trending_candles(-2e-4, seed=2)
    write_candles(conn, "BTCUSD", MINUTE, rising)
    spec = crossover_spec()
    before = run_backtest(spec)
    assert len(candle_cache()) == 1

    write_candles(conn, "BTCUSD", MINUTE, falling)
    after = run_backtest(spec)

    assert before.metrics.buy_and_hold_return > 0 > after.metrics.buy_and_hold_return
    assert after.metrics.final_equity != before.metrics.final_equity
    assert after.data_version != before.data_version
    np.testing.assert_array_equal(load_candles(spec).close, falling.close)
    # The old version's entry went when the new one came in.
    assert len(candle_cache()) == 1


def test_a_load_without_a_reimport_is_a_cache_hit(conn: Connection) -> None:
    version = write_candles(conn, "BTCUSD", MINUTE, trending_candles(1e-4, seed=1))
    spec = crossover_spec()

    first = load_versioned_candles(spec)
    second = load_versioned_candles(spec)

    assert second.candles is first.candles
    assert first.data_version == second.data_version == f"import:{version}"


def test_an_import_between_loads_is_seen_by_another_thread(
    conn: Connection,
) -> None:
    # Each thread loads on a connection of its own; the cache is shared.
    write_candles(conn, "BTCUSD", MINUTE, trending_candles(1e-4, seed=1))
    spec = crossover_spec()
    load_candles(spec)
    falling = trending_candles(-2e-4, seed=2)
    write_candles(conn, "BTCUSD", MINUTE, falling)
    seen: list[Candles] = []

    thread = threading.Thread(target=lambda: seen.append(load_candles(spec)))
    thread.start()
    thread.join(timeout=30)

    np.testing.assert_array_equal(seen[0].close, falling.close)


def test_synthetic_candles_carry_the_generator_version(conn: Connection) -> None:
    loaded = load_versioned_candles(crossover_spec("SYN-BTCUSD"))

    assert loaded.data_version == DATA_VERSION
    assert len(loaded.candles) == N_CANDLES


def _hourly() -> Candles:
    base = trending_candles(1e-4, seed=3)
    times = START_SECONDS + 3_600 * np.arange(N_CANDLES)
    return Candles.of(times, base.open, base.high, base.low, base.close, base.volume)
