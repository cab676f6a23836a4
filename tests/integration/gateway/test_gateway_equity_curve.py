"""GetEquityCurve through the gateway: the full curve of a backtest equals
the engine's equity at every close, and re-imported candles refuse it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import psycopg
import pytest
from gateway_support import (
    Gateway,
    as_owner,
    crossover_spec,
    sample_result,
    timestamp,
)

from backcast.cli.main import main
from backcast.engine import backtest
from backcast.engine.backtest import run_backtest
from backcast.engine.candles import Candles
from backcast.engine.simulation import Simulation
from backcast.engine.spec import Interval
from backcast.gateway.equity import POINTS_PER_MESSAGE
from backcast.jobqueue.results import stored_result
from backcast.jobqueue.store import JobStore
from backcast.marketdata import candle_cache, close_connections
from backcast.marketdata.storage import write_candles
from backcast.rpc.translate import result_from_proto, result_to_proto, spec_from_proto
from backcast.v1 import backtest_service_pb2 as api
from backcast.v1 import spec_pb2

ALICE = as_owner("alice")
INSTRUMENT = "EQCURVE"
MINUTE = Interval.ONE_MINUTE
N_IMPORTED = 5_000


@pytest.fixture
def market_data(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """Empty candle tables; backtests run here read them as the gateway does."""
    monkeypatch.setenv("BACKCAST_MARKETDATA_URL", database_url)
    candle_cache().clear()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '10s'")
        conn.execute("TRUNCATE candle_chunks, candle_imports")
        yield conn
    candle_cache().clear()
    close_connections()


def minute_spec(
    instrument: str, n_candles: int, execution: spec_pb2.Execution | None = None
) -> spec_pb2.BacktestSpec:
    spec = crossover_spec(fast_period=10, slow_period=30)
    spec.instrument = instrument
    spec.interval = spec_pb2.CANDLE_INTERVAL_ONE_MINUTE
    spec.start_time.CopyFrom(timestamp(2024, 1, 1))
    spec.end_time.seconds = spec.start_time.seconds + 60 * n_candles
    if execution is not None:
        spec.execution.CopyFrom(execution)
    return spec


def imported_candles(drift: float, seed: int) -> Candles:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(drift, 2e-3, N_IMPORTED)))
    open_ = np.concatenate([[100.0], close[:-1]])
    high = np.maximum(open_, close) * 1.0005
    low = np.minimum(open_, close) * 0.9995
    first = int(timestamp(2024, 1, 1).seconds)
    times = first + 60 * np.arange(N_IMPORTED)
    return Candles.of(times, open_, high, low, close, np.ones(N_IMPORTED))


async def run_through_the_platform(
    gateway: Gateway,
    store: JobStore,
    spec: spec_pb2.BacktestSpec,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[int, Simulation]:
    """Submit `spec`, run it as a worker would, and store its result.

    The result goes through the same messages as a worker's report to the
    scheduler. Returns the backtest id and the simulation the engine made.
    """
    response = await gateway.stub.SubmitBacktest(
        api.SubmitBacktestRequest(spec=spec), metadata=ALICE, timeout=5
    )
    (lease,) = await store.claim("test-worker", 1, lease_seconds=60)
    assert lease.job_id == response.backtest.id

    made: list[Simulation] = []
    original = backtest.simulate

    def recording(*args: Any, **kwargs: Any) -> Simulation:
        made.append(original(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(backtest, "simulate", recording)
    result = run_backtest(spec_from_proto(spec))
    reported = result_from_proto(result_to_proto(result))
    await store.complete(lease.job_id, lease.fencing_token, stored_result(reported))
    return lease.job_id, made[0]


async def stream_curve(
    gateway: Gateway, backtest_id: int
) -> list[api.GetEquityCurveResponse]:
    call = gateway.stub.GetEquityCurve(
        api.GetEquityCurveRequest(backtest_id=backtest_id), metadata=ALICE, timeout=30
    )
    return [message async for message in call]


def columns_of(
    messages: list[api.GetEquityCurveResponse],
) -> tuple[list[int], list[float]]:
    points = [point for message in messages for point in message.points]
    return [p.time.seconds for p in points], [p.equity for p in points]


async def test_streamed_curve_equals_the_engine_equity_on_synthetic_candles(
    gateway: Gateway, store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    n_candles = 20_000
    execution = spec_pb2.Execution(
        fill=spec_pb2.FILL_CLOSE, direction=spec_pb2.DIRECTION_LONG_SHORT
    )
    spec = minute_spec("SYN-BTCUSD", n_candles, execution)
    backtest_id, simulation = await run_through_the_platform(
        gateway, store, spec, monkeypatch
    )

    messages = await stream_curve(gateway, backtest_id)
    times, equity = columns_of(messages)

    assert len(messages) == -(-n_candles // POINTS_PER_MESSAGE)
    assert all(len(m.points) <= POINTS_PER_MESSAGE for m in messages)
    np.testing.assert_array_equal(np.array(equity), simulation.equity)
    first_close = spec.start_time.seconds + 60
    assert times == list(range(first_close, first_close + 60 * n_candles, 60))
    assert simulation.fill_candles.size > 10


async def test_imported_candles_rebuild_until_they_are_reimported(
    gateway: Gateway,
    store: JobStore,
    market_data: psycopg.Connection[tuple[object, ...]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_candles(market_data, INSTRUMENT, MINUTE, imported_candles(1e-4, 1))
    spec = minute_spec(INSTRUMENT, N_IMPORTED)
    backtest_id, simulation = await run_through_the_platform(
        gateway, store, spec, monkeypatch
    )

    _, equity = columns_of(await stream_curve(gateway, backtest_id))
    np.testing.assert_array_equal(np.array(equity), simulation.equity)

    write_candles(market_data, INSTRUMENT, MINUTE, imported_candles(-1e-4, 2))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stream_curve(gateway, backtest_id)

    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "re-imported since it ran" in (refused.value.details() or "")


async def test_result_stored_without_fills_has_no_full_curve(
    gateway: Gateway, store: JobStore
) -> None:
    await gateway.stub.SubmitBacktest(
        api.SubmitBacktestRequest(spec=crossover_spec()), metadata=ALICE, timeout=5
    )
    (lease,) = await store.claim("test-worker", 1, lease_seconds=60)
    await store.complete(
        lease.job_id, lease.fencing_token, stored_result(sample_result(2))
    )

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stream_curve(gateway, lease.job_id)

    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "without the account fills" in (refused.value.details() or "")


async def test_queued_or_foreign_backtest_has_no_curve(gateway: Gateway) -> None:
    submitted = await gateway.stub.SubmitBacktest(
        api.SubmitBacktestRequest(spec=crossover_spec()), metadata=ALICE, timeout=5
    )
    backtest_id = submitted.backtest.id

    with pytest.raises(grpc.aio.AioRpcError) as queued:
        await stream_curve(gateway, backtest_id)
    foreign = gateway.stub.GetEquityCurve(
        api.GetEquityCurveRequest(backtest_id=backtest_id),
        metadata=as_owner("bob"),
        timeout=5,
    )
    with pytest.raises(grpc.aio.AioRpcError) as hidden:
        [message async for message in foreign]

    assert queued.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert hidden.value.code() == grpc.StatusCode.NOT_FOUND


async def test_cli_writes_the_full_curve_as_csv(
    gateway: Gateway,
    store: JobStore,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    spec = minute_spec("SYN-ETHUSD", 6_000)
    backtest_id, simulation = await run_through_the_platform(
        gateway, store, spec, monkeypatch
    )
    path = tmp_path / "equity.csv"
    connection = ["--gateway", f"127.0.0.1:{gateway.host.port}", "--owner", "alice"]

    # The CLI is synchronous: run it off the loop that serves the gateway.
    written = await asyncio.to_thread(
        main,
        ["result", str(backtest_id), "--equity-full", str(path), *connection],
    )
    refused = await asyncio.to_thread(
        main,
        [
            "result",
            "999999",
            "--equity-full",
            str(tmp_path / "no.csv"),
            *connection,
        ],
    )

    lines = path.read_text().splitlines()
    assert (written, refused) == (0, 2)
    assert lines[0] == "time,equity"
    assert lines[1].startswith("2024-01-01T00:01:00Z,")
    equity = [float(line.split(",")[1]) for line in lines[1:]]
    np.testing.assert_array_equal(np.array(equity), simulation.equity)
    assert not (tmp_path / "no.csv").exists()
