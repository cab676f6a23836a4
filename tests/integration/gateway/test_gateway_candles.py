"""ImportCandles and ListInstruments: streamed CSV uploads into candle storage."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import numpy as np
import psycopg
import pytest
from gateway_support import Gateway, as_owner, start_test_gateway, stop_test_gateway
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from backcast.cli.main import main
from backcast.engine.spec import Interval
from backcast.gateway import candles
from backcast.gateway.server import start_gateway, stop_gateway
from backcast.gateway.watch import JobEvents
from backcast.jobqueue.store import JobStore
from backcast.marketdata.csv_import import parse_candles
from backcast.marketdata.storage import read_candles
from backcast.rpc.server import CLIENT_OPTIONS
from backcast.v1 import backtest_service_pb2 as api
from backcast.v1 import backtest_service_pb2_grpc, spec_pb2

START = datetime(2024, 1, 1, tzinfo=UTC)
ONE_MINUTE = spec_pb2.CANDLE_INTERVAL_ONE_MINUTE
EVENT_NAME = "candles_imported"


@pytest.fixture
async def candle_gateway(store: JobStore, database_url: str) -> AsyncIterator[Gateway]:
    """A running gateway over an empty candle table."""
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True
    ) as conn:
        await conn.execute("SET lock_timeout = '10s'")
        await conn.execute("TRUNCATE candle_chunks")
    running = await start_test_gateway(store, database_url)
    try:
        yield running
    finally:
        await stop_test_gateway(running)


def minute_csv(n: int, *, seed: int = 3) -> str:
    """`n` valid minute candles from START, prices written exactly."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    high = np.maximum(open_, close) * 1.001
    low = np.minimum(open_, close) * 0.999
    volume = rng.uniform(0, 50, n)
    first = int(START.timestamp())
    lines = ["time,open,high,low,close,volume"]
    for i in range(n):
        values = (open_[i], high[i], low[i], close[i], volume[i])
        lines.append(",".join([str(first + 60 * i), *(repr(float(v)) for v in values)]))
    return "\n".join(lines) + "\n"


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def upload(
    data: bytes, *, instrument: str = "BTCUSD", chunk_bytes: int = 4096
) -> list[api.ImportCandlesRequest]:
    """The file in pieces, with the series named in the first message only."""
    chunks = pieces(data, chunk_bytes) or [b""]
    requests = [api.ImportCandlesRequest(csv_chunk=chunk) for chunk in chunks]
    requests[0].instrument = instrument
    requests[0].interval = ONE_MINUTE
    return requests


async def import_candles(
    gateway: Gateway, requests: list[api.ImportCandlesRequest]
) -> api.ImportCandlesResponse:
    """The upload through the blocking API, as the CLI sends it.

    When the gateway refuses a file before its end, an asyncio client's
    write that races the refusal can turn the call's status into INTERNAL
    (grpc/grpc#36066); the blocking client reports the gateway's status.
    """
    address = f"127.0.0.1:{gateway.host.port}"

    def call() -> api.ImportCandlesResponse:
        with grpc.insecure_channel(address, options=CLIENT_OPTIONS) as channel:
            stub = backtest_service_pb2_grpc.BacktestServiceStub(channel)
            response: api.ImportCandlesResponse = stub.ImportCandles(
                iter(requests), metadata=as_owner("alice"), timeout=30
            )
            return response

    return await asyncio.to_thread(call)


def bad_request_of(error: grpc.RpcError) -> dict[str, str]:
    """The BadRequest violations of a failed call, description by field."""
    status = rpc_status.from_call(error)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            return {v.field: v.description for v in bad_request.field_violations}
    return {}


def stored_minutes(database_url: str, instrument: str = "BTCUSD") -> int:
    with psycopg.connect(database_url) as conn:
        stored = read_candles(
            conn, instrument, Interval.ONE_MINUTE, START, START + timedelta(days=30)
        )
    return len(stored)


async def test_csv_imported_in_many_chunks_reads_back_the_same_candles(
    candle_gateway: Gateway, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="backcast.gateway")
    text = minute_csv(3_000)
    requests = upload(text.encode(), chunk_bytes=7_001)
    # A later message may repeat the series as long as it is the same.
    requests[1].instrument = "BTCUSD"
    requests[1].interval = ONE_MINUTE
    assert len(requests) > 10

    response = await import_candles(candle_gateway, requests)

    assert response.n_imported == 3_000
    [logged] = [r for r in caplog.records if r.__dict__.get("event") == EVENT_NAME]
    assert logged.__dict__["instrument"] == "BTCUSD"
    assert logged.__dict__["n_candles"] == 3_000
    assert logged.__dict__["owner"] == "alice"
    coverage = response.coverage
    assert (coverage.instrument, coverage.interval) == ("BTCUSD", ONE_MINUTE)
    assert coverage.n_candles == 3_000
    assert coverage.first_time.ToDatetime(tzinfo=UTC) == START
    last = START + timedelta(minutes=2_999)
    assert coverage.last_time.ToDatetime(tzinfo=UTC) == last
    expected = parse_candles(text, Interval.ONE_MINUTE)
    with psycopg.connect(database_url) as conn:
        stored = read_candles(
            conn, "BTCUSD", Interval.ONE_MINUTE, START, last + timedelta(minutes=1)
        )
    for name in ("times", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(stored, name), getattr(expected, name))


async def test_list_instruments_shows_the_imported_coverage(
    candle_gateway: Gateway,
) -> None:
    empty = await candle_gateway.stub.ListInstruments(
        api.ListInstrumentsRequest(), timeout=5
    )
    assert list(empty.instruments) == []

    imported = await import_candles(
        candle_gateway, upload(minute_csv(500).encode(), instrument="ETH/USD")
    )
    listed = await candle_gateway.stub.ListInstruments(
        api.ListInstrumentsRequest(), timeout=5
    )

    assert list(listed.instruments) == [imported.coverage]
    assert listed.instruments[0].instrument == "ETH/USD"
    assert listed.instruments[0].n_candles == 500


async def test_bad_row_is_invalid_argument_naming_its_line_and_stores_nothing(
    candle_gateway: Gateway, database_url: str
) -> None:
    before = minute_csv(400, seed=5)
    await import_candles(candle_gateway, upload(before.encode()))
    lines = minute_csv(400).splitlines()
    # Line 301 of the file (the header is line 1): high below the close.
    fields = lines[300].split(",")
    fields[2] = "1.5"
    lines[300] = ",".join(fields)
    data = "\n".join(lines).encode()

    with pytest.raises(grpc.RpcError) as caught:
        await import_candles(candle_gateway, upload(data, chunk_bytes=1_000))

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = bad_request_of(caught.value)
    assert violations["file"].startswith("line 301: high 1.5 is below")
    with psycopg.connect(database_url) as conn:
        stored = read_candles(
            conn, "BTCUSD", Interval.ONE_MINUTE, START, START + timedelta(days=1)
        )
    kept = parse_candles(before, Interval.ONE_MINUTE)
    np.testing.assert_array_equal(stored.close, kept.close)


async def test_text_that_is_not_utf8_is_refused_naming_its_line(
    candle_gateway: Gateway,
) -> None:
    data = minute_csv(5).encode() + b"\xff\xfe,1,1,1,1,1\n"

    with pytest.raises(grpc.RpcError) as caught:
        await import_candles(candle_gateway, upload(data))

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_of(caught.value)["file"].startswith("line 7: not UTF-8")


async def test_synthetic_instrument_is_refused(candle_gateway: Gateway) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        await import_candles(
            candle_gateway, upload(minute_csv(10).encode(), instrument="SYN-BTCUSD")
        )

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "synthetic" in bad_request_of(caught.value)["instrument"]


async def test_first_message_without_series_names_both_fields(
    candle_gateway: Gateway,
) -> None:
    requests = [api.ImportCandlesRequest(csv_chunk=minute_csv(10).encode())]

    with pytest.raises(grpc.RpcError) as caught:
        await import_candles(candle_gateway, requests)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad_request_of(caught.value)) == {"instrument", "interval"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("instrument", "ETHUSD"),
        ("interval", spec_pb2.CANDLE_INTERVAL_ONE_HOUR),
    ],
)
async def test_later_message_naming_another_series_is_refused(
    candle_gateway: Gateway, database_url: str, field: str, value: object
) -> None:
    requests = upload(minute_csv(300).encode(), chunk_bytes=2_000)
    setattr(requests[2], field, value)

    with pytest.raises(grpc.RpcError) as caught:
        await import_candles(candle_gateway, requests)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "differs from" in bad_request_of(caught.value)[field]
    assert stored_minutes(database_url) == 0


async def test_chunk_over_one_mebibyte_is_refused(candle_gateway: Gateway) -> None:
    text = minute_csv(20_000)
    assert len(text) > candles.MAX_CHUNK_BYTES
    requests = upload(text.encode(), chunk_bytes=candles.MAX_CHUNK_BYTES + 1)

    with pytest.raises(grpc.RpcError) as caught:
        await import_candles(candle_gateway, requests)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violation = bad_request_of(caught.value)["csv_chunk"]
    assert violation.startswith(f"{candles.MAX_CHUNK_BYTES + 1} bytes")


async def test_file_over_the_total_limit_is_refused(
    candle_gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real limit is 256 MiB; the check is the same at any size.
    monkeypatch.setattr(candles, "MAX_FILE_BYTES", 10_000)

    with pytest.raises(grpc.RpcError) as caught:
        await import_candles(candle_gateway, upload(minute_csv(300).encode()))

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "exceeds 10000 bytes" in bad_request_of(caught.value)["csv_chunk"]


@pytest.mark.parametrize("data", [b"", b"time,open,high,low,close,volume\n"])
async def test_file_without_candles_is_refused(
    candle_gateway: Gateway, data: bytes
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        await import_candles(candle_gateway, upload(data))

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad_request_of(caught.value)) & {"csv_chunk", "file"}


async def test_unreachable_candle_database_is_unavailable(
    store: JobStore, database_url: str
) -> None:
    events = JobEvents(database_url)
    events.start()
    host = await start_gateway(
        store,
        events,
        address="127.0.0.1:0",
        page_token_key=b"integration-test-page-token-key",
        watch_poll_seconds=2.0,
        # Port 1 refuses connections at once.
        marketdata_url="postgresql://postgres@127.0.0.1:1/postgres",
    )
    channel = grpc.aio.insecure_channel(
        f"127.0.0.1:{host.port}", options=CLIENT_OPTIONS
    )
    stub = backtest_service_pb2_grpc.BacktestServiceStub(channel)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ListInstruments(api.ListInstrumentsRequest(), timeout=15)
    finally:
        await channel.close()
        await stop_gateway(host, events, grace_seconds=0, drain_seconds=0)

    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "btcusd-1m.csv"
    path.write_text(minute_csv(1_200))
    return path


async def test_cli_imports_and_lists_through_the_gateway(
    candle_gateway: Gateway,
    csv_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    address = f"127.0.0.1:{candle_gateway.host.port}"
    # With a gateway given, no database setting is needed or read.
    for name in ("BACKCAST_MARKETDATA_URL", "BACKCAST_DATABASE_URL", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    # The CLI is synchronous: run it off the loop that serves the gateway.
    imported = await asyncio.to_thread(
        main,
        [
            "data",
            "import",
            str(csv_file),
            "--symbol",
            "BTCUSD",
            "--interval",
            "1m",
            "--gateway",
            address,
        ],
    )
    monkeypatch.setenv("BACKCAST_GATEWAY", address)
    listed = await asyncio.to_thread(main, ["data", "list"])

    assert (imported, listed) == (0, 0)
    out = capsys.readouterr().out
    assert "imported 1200 1m candles of BTCUSD" in out
    assert "BTCUSD" in out.splitlines()[-1]
    assert "1200" in out.splitlines()[-1]
