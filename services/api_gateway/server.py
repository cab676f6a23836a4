"""Starting and stopping the gateway's gRPC server."""

from __future__ import annotations

from backcast.gateway.candles import CandleStorage
from backcast.gateway.pagination import PageTokens
from backcast.gateway.servicer import BacktestServicer
from backcast.gateway.watch import JobEvents
from backcast.jobqueue.store import JobStore
from backcast.rpc.server import ServiceBinding, ServiceHost, start_server
from backcast.v1 import backtest_service_pb2, backtest_service_pb2_grpc

SERVICE_NAME = backtest_service_pb2.DESCRIPTOR.services_by_name[
    "BacktestService"
].full_name


async def start_gateway(
    store: JobStore,
    events: JobEvents,
    *,
    address: str,
    page_token_key: bytes,
    watch_poll_seconds: float,
    marketdata_url: str,
) -> ServiceHost:
    """Serve BacktestService (plus health and reflection) on `address`.

    Candles are imported into and listed from the database at
    `marketdata_url`.
    """
    servicer = BacktestServicer(
        store,
        events,
        PageTokens(page_token_key),
        CandleStorage(marketdata_url),
        watch_poll_seconds=watch_poll_seconds,
    )
    binding = ServiceBinding(
        SERVICE_NAME,
        servicer,
        backtest_service_pb2_grpc.add_BacktestServiceServicer_to_server,
    )
    return await start_server([binding], address)


async def stop_gateway(
    host: ServiceHost,
    events: JobEvents,
    *,
    grace_seconds: float,
    drain_seconds: float = 0.5,
) -> None:
    """Stop serving: NOT_SERVING first, then end open watches, then stop.

    Open watch streams would otherwise hold the whole grace period; ended
    with UNAVAILABLE, their clients reconnect to another replica at once.
    """
    await host.health.enter_graceful_shutdown()
    await events.close()
    await host.stop(grace_seconds, drain_seconds)
