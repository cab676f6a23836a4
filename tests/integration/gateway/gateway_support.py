"""Helpers of the gateway tests: a running gateway, specs, results, counts."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc
import psycopg
from google.protobuf import timestamp_pb2

from backcast.engine.results import (
    BacktestResult,
    EquityCurve,
    EquityPoint,
    Metrics,
    Trade,
    TradeTable,
)
from backcast.gateway.server import start_gateway, stop_gateway
from backcast.gateway.watch import JobEvents
from backcast.jobqueue.store import JobStore
from backcast.rpc.server import CLIENT_OPTIONS, ServiceHost
from backcast.v1 import backtest_service_pb2_grpc, spec_pb2

TEST_PAGE_TOKEN_KEY = b"integration-test-page-token-key"
WATCH_POLL_SECONDS = 2.0


@dataclass
class Gateway:
    """A running gateway and a client stub connected to it."""

    host: ServiceHost
    events: JobEvents
    channel: grpc.aio.Channel
    stub: backtest_service_pb2_grpc.BacktestServiceAsyncStub


async def start_test_gateway(store: JobStore, database_url: str) -> Gateway:
    events = JobEvents(database_url)
    events.start()
    # Listening before the first test step, so no notification is missed.
    await asyncio.wait_for(events.listening.wait(), timeout=10)
    host = await start_gateway(
        store,
        events,
        address="127.0.0.1:0",
        page_token_key=TEST_PAGE_TOKEN_KEY,
        watch_poll_seconds=WATCH_POLL_SECONDS,
        marketdata_url=database_url,
    )
    channel = grpc.aio.insecure_channel(
        f"127.0.0.1:{host.port}", options=CLIENT_OPTIONS
    )
    stub = backtest_service_pb2_grpc.BacktestServiceStub(channel)
    # The generated stub class picks its async flavour by overload on the
    # channel type, which the checker cannot see through here.
    return Gateway(host, events, channel, stub)  # type: ignore[arg-type]


async def stop_test_gateway(gateway: Gateway) -> None:
    await gateway.channel.close()
    await stop_gateway(gateway.host, gateway.events, grace_seconds=0, drain_seconds=0)


def as_owner(owner: str) -> tuple[tuple[str, str], ...]:
    return (("x-backcast-owner", owner),)


def timestamp(year: int, month: int, day: int) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(datetime(year, month, day, tzinfo=UTC))
    return stamp


def crossover_spec(
    fast_period: int = 5, slow_period: int = 20
) -> spec_pb2.BacktestSpec:
    """A valid spec on a synthetic series: a month of hourly candles."""
    return spec_pb2.BacktestSpec(
        strategy=spec_pb2.Strategy(
            moving_average_crossover=spec_pb2.MovingAverageCrossover(
                fast_period=fast_period, slow_period=slow_period
            )
        ),
        instrument="SYN-BTCUSD",
        interval=spec_pb2.CANDLE_INTERVAL_ONE_HOUR,
        start_time=timestamp(2024, 1, 1),
        end_time=timestamp(2024, 2, 1),
        costs=spec_pb2.Costs(commission=0.001, slippage_bps=2),
    )


def sample_result(n_trades: int) -> BacktestResult:
    """A result with `n_trades` distinct trades and a three-point curve."""
    trades = tuple(
        Trade(
            entry_at=datetime(2024, 1, 1, i % 24, tzinfo=UTC),
            exit_at=datetime(2024, 1, 2, i % 24, tzinfo=UTC),
            entry_price=100.0 + i,
            exit_price=101.0 + i,
            units=1.0,
            pnl=1.0,
            return_fraction=1.0 / (100.0 + i),
        )
        for i in range(n_trades)
    )
    metrics = Metrics(
        total_return=0.05,
        cagr=0.8,
        annualized_volatility=0.3,
        sharpe_ratio=1.5,
        max_drawdown=0.1,
        max_drawdown_candles=40,
        n_trades=n_trades,
        win_rate=1.0,
        profit_factor=0.0,
        exposure=0.5,
        commissions_paid=2.5,
        buy_and_hold_return=0.04,
        final_equity=10_500.0,
        n_candles=744,
        periods_per_year=365.0,
        sortino_ratio=2.1,
        calmar_ratio=8.0,
        max_drawdown_seconds=40 * 3_600,
        expectancy=1.0,
        expectancy_return=0.009,
        best_trade_return=0.01,
        worst_trade_return=0.008,
        open_trade_pnl=0.0,
    )
    curve = EquityCurve.of(
        EquityPoint(datetime(2024, 1, day, tzinfo=UTC), 10_000.0 + 250 * day)
        for day in (1, 15, 31)
    )
    return BacktestResult(metrics, TradeTable.of(trades), curve)


async def count_jobs(database_url: str) -> int:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute("SELECT count(*) FROM jobs")
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])
