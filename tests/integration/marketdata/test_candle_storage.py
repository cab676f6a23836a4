"""Candles in PostgreSQL: exact round trips, chunk borders, coverage, replacing
imports, and loading for a backtest through the cache."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest

from backcast.cli.main import main
from backcast.engine.candles import Candles
from backcast.engine.spec import BacktestSpec, Interval, StrategySpec
from backcast.errors import BacktestFailed, InvalidCandleFile
from backcast.marketdata import candle_cache, close_connections, load_candles
from backcast.marketdata.csv_import import import_candle_file
from backcast.marketdata.storage import (
    CHUNK_CANDLES,
    list_instruments,
    read_candles,
    read_coverage,
    write_candles,
)

Connection = psycopg.Connection[tuple[object, ...]]

MINUTE = Interval.ONE_MINUTE
START = datetime(2024, 1, 1, tzinfo=UTC)
START_SECONDS = int(START.timestamp())


@pytest.fixture
def conn(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Connection]:
    """A connection to an empty candle table, also set as the market-data URL."""
    monkeypatch.setenv("BACKCAST_MARKETDATA_URL", database_url)
    candle_cache().clear()
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("SET lock_timeout = '10s'")
        connection.execute("TRUNCATE candle_chunks")
        yield connection
    candle_cache().clear()
    close_connections()


def random_candles(n: int, *, first: int = START_SECONDS, seed: int = 7) -> Candles:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 1e-3, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 1e-3, n))
    volume = rng.uniform(0, 50, n)
    return Candles.of(first + 60 * np.arange(n), open_, high, low, close, volume)


def at(minutes: int) -> datetime:
    return START + timedelta(minutes=minutes)


def assert_same(actual: Candles, expected: Candles) -> None:
    for name in ("times", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(actual, name), getattr(expected, name))


def spec_for(instrument: str, start_at: datetime, end_at: datetime) -> BacktestSpec:
    return BacktestSpec(
        strategy=StrategySpec("buy_and_hold", {}),
        instrument=instrument,
        interval=MINUTE,
        start_at=start_at,
        end_at=end_at,
    )


def test_stored_candles_come_back_bit_for_bit(conn: Connection) -> None:
    candles = random_candles(1000)

    write_candles(conn, "BTCUSD", MINUTE, candles)
    loaded = read_candles(conn, "BTCUSD", MINUTE, at(0), at(1000))

    assert_same(loaded, candles)
    assert not loaded.close.flags.writeable


def test_range_across_chunk_borders_reads_exactly_that_range(
    conn: Connection,
) -> None:
    # Chunks start at multiples of 65,536 minutes since 1970, so this series
    # spans three of them.
    candles = random_candles(2 * CHUNK_CANDLES + 500)
    write_candles(conn, "BTCUSD", MINUTE, candles)
    n_chunks = conn.execute("SELECT count(*) FROM candle_chunks").fetchone()

    loaded = read_candles(conn, "BTCUSD", MINUTE, at(10), at(CHUNK_CANDLES + 700))

    assert n_chunks == (3,)
    np.testing.assert_array_equal(loaded.times, candles.times[10 : CHUNK_CANDLES + 700])
    np.testing.assert_array_equal(loaded.close, candles.close[10 : CHUNK_CANDLES + 700])


def test_range_outside_the_stored_candles_reads_none(conn: Connection) -> None:
    write_candles(conn, "BTCUSD", MINUTE, random_candles(100))

    assert len(read_candles(conn, "BTCUSD", MINUTE, at(200), at(300))) == 0
    assert len(read_candles(conn, "ETHUSD", MINUTE, at(0), at(100))) == 0


def test_coverage_lists_every_series(conn: Connection) -> None:
    write_candles(conn, "BTCUSD", MINUTE, random_candles(2 * CHUNK_CANDLES))
    hourly = random_candles(48, first=START_SECONDS)
    hourly = Candles.of(
        START_SECONDS + 3600 * np.arange(48),
        hourly.open,
        hourly.high,
        hourly.low,
        hourly.close,
        hourly.volume,
    )
    write_candles(conn, "BTCUSD", Interval.ONE_HOUR, hourly)
    write_candles(conn, "AAPL", MINUTE, random_candles(10))

    listed = [
        (c.instrument, c.interval, c.first_at, c.last_at, c.n_candles)
        for c in list_instruments(conn)
    ]

    assert listed == [
        ("AAPL", MINUTE, at(0), at(9), 10),
        ("BTCUSD", MINUTE, at(0), at(2 * CHUNK_CANDLES - 1), 2 * CHUNK_CANDLES),
        ("BTCUSD", Interval.ONE_HOUR, at(0), at(47 * 60), 48),
    ]


def test_import_replaces_the_overlapping_span_and_keeps_the_rest(
    conn: Connection,
) -> None:
    old = random_candles(CHUNK_CANDLES + 1000, seed=1)
    write_candles(conn, "BTCUSD", MINUTE, old)
    new = random_candles(CHUNK_CANDLES, first=START_SECONDS + 60 * 500, seed=2)

    write_candles(conn, "BTCUSD", MINUTE, new)
    stored = read_candles(conn, "BTCUSD", MINUTE, at(0), at(2 * CHUNK_CANDLES))

    replaced = slice(500, 500 + CHUNK_CANDLES)
    expected_close = old.close.copy()
    expected_close[replaced] = new.close
    np.testing.assert_array_equal(stored.times, old.times)
    np.testing.assert_array_equal(stored.close, expected_close)
    coverage = read_coverage(conn, "BTCUSD", MINUTE)
    assert coverage is not None
    assert coverage.n_candles == CHUNK_CANDLES + 1000


def test_import_with_gaps_drops_stored_candles_inside_its_span(
    conn: Connection,
) -> None:
    write_candles(conn, "BTCUSD", MINUTE, random_candles(10))
    sparse = random_candles(2, first=START_SECONDS + 60 * 2)
    sparse = Candles.of(
        [START_SECONDS + 120, START_SECONDS + 360],
        sparse.open,
        sparse.high,
        sparse.low,
        sparse.close,
        sparse.volume,
    )

    write_candles(conn, "BTCUSD", MINUTE, sparse)
    stored = read_candles(conn, "BTCUSD", MINUTE, at(0), at(10))

    minutes = (stored.times - START_SECONDS) // 60
    assert minutes.tolist() == [0, 1, 2, 6, 7, 8, 9]


def test_bad_file_stores_nothing(conn: Connection, tmp_path: Path) -> None:
    path = tmp_path / "candles.csv"
    path.write_text(
        "time,open,high,low,close,volume\n"
        f"{START_SECONDS},10,11,9,10.5,1\n"
        f"{START_SECONDS + 60},10,11,9,10.5,1\n"
        f"{START_SECONDS + 120},10.2,9.5,9,10.1,1\n"
    )

    with pytest.raises(InvalidCandleFile, match="line 4: high 9.5 is below open 10.2"):
        import_candle_file(conn, path, "BTCUSD", MINUTE)

    assert read_coverage(conn, "BTCUSD", MINUTE) is None


def test_csv_import_round_trips(conn: Connection, tmp_path: Path) -> None:
    path = tmp_path / "candles.csv"
    path.write_text(
        "time,open,high,low,close,volume\n"
        "2024-01-01T00:00:00Z,10,11,9,10.5,1\n"
        "2024-01-01T00:01:00Z,10.5,10.75,10.25,10.5,0\n"
    )

    imported = import_candle_file(conn, path, "BTCUSD", MINUTE)

    assert_same(read_candles(conn, "BTCUSD", MINUTE, at(0), at(2)), imported)
    np.testing.assert_array_equal(imported.high, [11.0, 10.75])


def test_backtest_loads_stored_candles_through_the_cache(conn: Connection) -> None:
    candles = random_candles(3000)
    write_candles(conn, "BTCUSD", MINUTE, candles)
    spec = spec_for("BTCUSD", at(100), at(2100))

    first = load_candles(spec)
    second = load_candles(spec)

    np.testing.assert_array_equal(first.times, candles.times[100:2100])
    assert second is first


def test_backtest_on_missing_data_fails_for_good(conn: Connection) -> None:
    spec = spec_for("BTCUSD", at(0), at(60))

    with pytest.raises(BacktestFailed) as failure:
        load_candles(spec)

    assert failure.value.retryable is False
    assert failure.value.message == (
        'no market data for instrument "BTCUSD" at 1m in '
        "[2024-01-01T00:00:00+00:00, 2024-01-01T01:00:00+00:00); import it with "
        "`backcast data import`"
    )


def test_backtest_past_the_stored_candles_fails_for_good(conn: Connection) -> None:
    write_candles(conn, "BTCUSD", MINUTE, random_candles(30))
    spec = spec_for("BTCUSD", at(0), at(60))

    with pytest.raises(BacktestFailed, match="no market data") as failure:
        load_candles(spec)

    assert failure.value.retryable is False
    assert failure.value.message.endswith(
        "(stored: 2024-01-01T00:00:00+00:00 to 2024-01-01T00:30:00+00:00)"
    )


def test_synthetic_instruments_need_no_stored_candles(conn: Connection) -> None:
    candles = load_candles(spec_for("SYN-BTCUSD", at(0), at(60)))

    assert len(candles) == 60


def test_data_commands_import_and_list(
    conn: Connection,
    database_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "candles.csv"
    path.write_text(
        "time,open,high,low,close,volume\n"
        f"{START_SECONDS},10,11,9,10.5,1\n"
        f"{START_SECONDS + 60},10.5,10.75,10.25,10.5,0\n"
    )
    url = ["--database-url", database_url]

    imported = main(
        ["data", "import", str(path), "--symbol", "BTCUSD"] + url + ["--interval", "1m"]
    )
    listed = main(["data", "list", *url])

    assert (imported, listed) == (0, 0)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("imported 2 1m candles of BTCUSD from 2024-01-01")
    assert lines[-1].split() == [
        "BTCUSD",
        "1m",
        "2024-01-01",
        "00:00:00",
        "2024-01-01",
        "00:01:00",
        "2",
    ]


def test_data_import_reports_the_bad_line(
    conn: Connection,
    database_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "candles.csv"
    path.write_text(f"time,open,high,low,close,volume\n{START_SECONDS},10,9,9,10,1\n")

    code = main(
        ["data", "import", str(path), "--symbol", "BTCUSD", "--interval", "1m"]
        + ["--database-url", database_url]
    )

    assert code == 2
    assert capsys.readouterr().err == (
        "backcast: INVALID_ARGUMENT: file: line 2: high 9.0 is below close 10.0\n"
    )
