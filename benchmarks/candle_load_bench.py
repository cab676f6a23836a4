"""Time loading a year of minute candles from PostgreSQL, cold and cached.

Stores 525,600 one-minute candles of one instrument in a fresh database,
then times the worker's own load path (`load_versioned_candles`): cold,
with the worker cache emptied before every run, and from the cache. The
baseline, in the same database and run, reads the same candles stored the
obvious way, one row per candle, into the same numpy arrays. Prints medians
of several runs and whether the targets are met (cold at most 50 ms, cached
under 1 ms). A benchmark, not a test: it always exits 0.

    python benchmarks/candle_load_bench.py [--candles N] [--runs N]
        [--database-url URL]

The server is --database-url, else BACKCAST_BENCH_DATABASE_URL or
BACKCAST_TEST_DATABASE_URL, else an embedded PostgreSQL in a temporary
directory; the benchmark database is created there and dropped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import psycopg
from psycopg import sql

from backcast import marketdata
from backcast.db import migrate
from backcast.engine.candles import Candles
from backcast.engine.spec import BacktestSpec, Interval, StrategySpec
from backcast.marketdata.storage import write_candles
from backcast.marketdata.synthetic import synthetic_candles

INSTRUMENT = "BENCH-LOAD"
START = datetime(2023, 1, 1, tzinfo=UTC)
SERVER_URL_VARS = ("BACKCAST_BENCH_DATABASE_URL", "BACKCAST_TEST_DATABASE_URL")
TARGET_COLD_MS = 50.0
TARGET_CACHED_MS = 1.0

ROW_TABLE = """
CREATE TABLE candle_rows (
    time bigint PRIMARY KEY,
    open float8 NOT NULL, high float8 NOT NULL, low float8 NOT NULL,
    close float8 NOT NULL, volume float8 NOT NULL
)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candles", type=int, default=525_600)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--database-url")
    args = parser.parse_args()

    with server(args.database_url) as server_url, scratch_database(server_url) as url:
        spec = load_spec(args.candles)
        candles = synthetic_candles(
            "SYN-" + INSTRUMENT, spec.interval, spec.start_at, spec.end_at
        )
        store_both_ways(url, candles)
        print(f"{len(candles):,} one-minute candles of {INSTRUMENT} in PostgreSQL")

        cache = marketdata.candle_cache()

        def cold() -> object:
            cache.clear()
            return marketdata.load_versioned_candles(spec, url=url)

        loaded = cold().candles  # type: ignore[attr-defined]
        assert np.array_equal(loaded.close, candles.close), "stored candles differ"
        with psycopg.connect(url) as conn:
            baseline = read_rows(conn, spec)
            assert np.array_equal(baseline.close, candles.close)
            timings = {
                "columnar chunks, cold": median_ms(cold, args.runs),
                "row per candle (baseline)": median_ms(
                    lambda: read_rows(conn, spec), args.runs
                ),
            }
        marketdata.load_versioned_candles(spec, url=url)
        timings["columnar chunks, cached"] = median_ms(
            lambda: marketdata.load_versioned_candles(spec, url=url), args.runs * 20
        )
        marketdata.close_connections()

    print()
    print(f"{'':32}{'median ms':>12}{'candles/s':>16}")
    for name, ms in timings.items():
        print(f"{name:32}{ms:12.3f}{len(candles) / (ms / 1e3):16,.0f}")
    ratio = timings["row per candle (baseline)"] / timings["columnar chunks, cold"]
    print(f"cold load vs row per candle: {ratio:.1f}x faster")
    report("cold load", timings["columnar chunks, cold"], TARGET_COLD_MS)
    report("cached load", timings["columnar chunks, cached"], TARGET_CACHED_MS)


def load_spec(n_candles: int) -> BacktestSpec:
    return BacktestSpec(
        strategy=StrategySpec("buy_and_hold", {}),
        instrument=INSTRUMENT,
        interval=Interval.ONE_MINUTE,
        start_at=START,
        end_at=START + timedelta(minutes=n_candles),
    )


def store_both_ways(url: str, candles: Candles) -> None:
    with psycopg.connect(url) as conn:
        write_candles(conn, INSTRUMENT, Interval.ONE_MINUTE, candles)
        conn.execute(ROW_TABLE)
        with conn.cursor().copy(
            "COPY candle_rows FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "float8", "float8", "float8", "float8", "float8"])
            for row in zip(
                candles.times.tolist(),
                candles.open.tolist(),
                candles.high.tolist(),
                candles.low.tolist(),
                candles.close.tolist(),
                candles.volume.tolist(),
                strict=True,
            ):
                copy.write_row(row)
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE candle_rows")


def read_rows(
    conn: psycopg.Connection[tuple[object, ...]], spec: BacktestSpec
) -> Candles:
    """The candles of one row each, as a careful client would read them:
    binary transfer, straight into numpy arrays."""
    start, end = int(spec.start_at.timestamp()), int(spec.end_at.timestamp())
    cursor = conn.cursor(binary=True)
    cursor.execute(
        "SELECT time, open, high, low, close, volume FROM candle_rows "
        "WHERE time >= %s AND time < %s ORDER BY time",
        (start, end),
    )
    columns = np.array(cursor.fetchall(), dtype=np.float64).T
    conn.rollback()
    return Candles.of(columns[0].astype(np.int64), *columns[1:])


def median_ms(run: Callable[[], object], runs: int) -> float:
    run()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        samples.append((time.perf_counter() - started) * 1e3)
    return statistics.median(samples)


def report(what: str, ms: float, target_ms: float) -> None:
    verdict = "met" if ms <= target_ms else "not met"
    print(f"target {what} <= {target_ms:g} ms: {verdict} ({ms:.3f} ms)")


@contextlib.contextmanager
def server(url: str | None) -> Iterator[str]:
    url = url or next(filter(None, map(os.environ.get, SERVER_URL_VARS)), None)
    if url:
        yield url
        return
    from pgserver.postgres_server import get_server

    data_dir = tempfile.mkdtemp(prefix="backcast-bench-pg-")
    embedded = get_server(data_dir, cleanup_mode="stop")
    try:
        yield embedded.get_uri()
    finally:
        embedded.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)


@contextlib.contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    name = f"backcast_bench_{secrets.token_hex(6)}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = urlunsplit(urlsplit(server_url)._replace(path="/" + name))
    try:
        migrate(url)
        yield url
    finally:
        marketdata.close_connections()
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name)
                )
            )


if __name__ == "__main__":
    main()
