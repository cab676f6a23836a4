"""Bootstrap shared by every service: a grpc.aio server with error mapping,
health, reflection, keepalive that suits long streams, and graceful stop.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from backcast.rpc.errors import AppErrorInterceptor
from backcast.telemetry import EVENT

logger = logging.getLogger(__name__)

# Workers and watchers ping about every 30 s; the server must allow that or
# it answers with GOAWAY too_many_pings. Results can be a few MiB.
SERVER_OPTIONS: Sequence[tuple[str, Any]] = (
    # A second server on a taken port must fail, not silently share it.
    ("grpc.so_reuseport", 0),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 0),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
)

CLIENT_OPTIONS: Sequence[tuple[str, Any]] = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
)


@dataclass(frozen=True)
class ServiceBinding:
    """One servicer and how to mount it: `add(servicer, server)` and its
    full proto name (for health and reflection)."""

    name: str
    servicer: object
    add: Callable[[Any, grpc.aio.Server], None]


@dataclass
class ServiceHost:
    """A running grpc.aio server; `port` is the one actually bound."""

    server: grpc.aio.Server
    health: health.aio.HealthServicer
    port: int
    names: list[str] = field(default_factory=list)

    async def stop(self, grace_seconds: float, drain_seconds: float = 0.5) -> None:
        """NOT_SERVING first so balancers move away, then stop with a grace."""
        for name in ["", *self.names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await asyncio.sleep(drain_seconds)
        await self.server.stop(grace_seconds)


async def start_server(bindings: Sequence[ServiceBinding], address: str) -> ServiceHost:
    """Start serving `bindings` plus health and reflection on `address`
    (`host:port`; port 0 picks a free one)."""
    server = grpc.aio.server(
        interceptors=[AppErrorInterceptor()], options=SERVER_OPTIONS
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [b.name for b in bindings]
    for binding in bindings:
        binding.add(binding.servicer, server)
    reflection.enable_server_reflection(
        [*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind {address}")
    await server.start()
    for name in ["", *names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    logger.info(
        "server started",
        extra={EVENT: "server_started", "address": address, "port": port},
    )
    return ServiceHost(server, health_servicer, port, names)


def stop_event_on_signals() -> asyncio.Event:
    """An event set by the first SIGTERM or SIGINT of the running loop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


def replace_port(address: str, port: int) -> str:
    host = address.rsplit(":", 1)[0]
    return f"{host}:{port}"
