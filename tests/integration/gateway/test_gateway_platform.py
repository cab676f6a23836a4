"""What every service offers besides its API: health and reflection."""

from __future__ import annotations

from gateway_support import Gateway
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc


async def test_health_check_reports_serving(gateway: Gateway) -> None:
    health = health_pb2_grpc.HealthStub(gateway.channel)

    for service in ("", "backcast.v1.BacktestService"):
        response = await health.Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
        assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_backtest_service(gateway: Gateway) -> None:
    reflection = reflection_pb2_grpc.ServerReflectionStub(gateway.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")

    call = reflection.ServerReflectionInfo(iter([request]), timeout=5)
    names = [
        service.name
        async for response in call
        for service in response.list_services_response.service
    ]

    assert "backcast.v1.BacktestService" in names
