"""ListStrategies, and submissions carrying execution options."""

from __future__ import annotations

import grpc
import pytest
from gateway_support import Gateway, as_owner, crossover_spec
from test_gateway_submit import error_details

from backcast.engine.spec import STRATEGIES
from backcast.v1 import backtest_service_pb2 as api
from backcast.v1 import spec_pb2


async def test_list_strategies_describes_the_registry(gateway: Gateway) -> None:
    response = await gateway.stub.ListStrategies(api.ListStrategiesRequest(), timeout=5)

    listed = {s.name: s for s in response.strategies}
    assert list(listed) == list(STRATEGIES)
    assert not listed["buy_and_hold"].supports_short
    assert listed["rsi_mean_reversion"].supports_short
    macd = {p.name: p for p in listed["macd_trend"].parameters}
    assert macd["slow_period"].default_number == 26
    assert (macd["signal_period"].minimum, macd["signal_period"].maximum) == (
        1.0,
        1000.0,
    )


async def test_submit_keeps_the_execution_options(gateway: Gateway) -> None:
    spec = crossover_spec()
    spec.execution.CopyFrom(
        spec_pb2.Execution(
            fill=spec_pb2.FILL_CLOSE,
            units=spec_pb2.UNITS_FRACTIONAL,
            position_fraction=0.5,
            direction=spec_pb2.DIRECTION_LONG_SHORT,
            stop_loss=0.05,
            take_profit=0.1,
        )
    )

    response = await gateway.stub.SubmitBacktest(
        api.SubmitBacktestRequest(spec=spec), metadata=as_owner("alice"), timeout=5
    )

    assert response.backtest.spec.execution == spec.execution


async def test_submit_without_execution_returns_the_defaults(gateway: Gateway) -> None:
    response = await gateway.stub.SubmitBacktest(
        api.SubmitBacktestRequest(spec=crossover_spec()), timeout=5
    )

    execution = response.backtest.spec.execution
    assert execution.fill == spec_pb2.FILL_NEXT_OPEN
    assert execution.units == spec_pb2.UNITS_WHOLE
    assert execution.direction == spec_pb2.DIRECTION_LONG_ONLY
    assert execution.position_fraction == 1.0


@pytest.mark.parametrize(
    ("execution", "field"),
    [
        (spec_pb2.Execution(stop_loss=1.5), "spec.execution.stop_loss"),
        (spec_pb2.Execution(take_profit=101), "spec.execution.take_profit"),
        (spec_pb2.Execution(position_fraction=2), "spec.execution.position_fraction"),
    ],
)
async def test_submit_with_execution_out_of_bounds_is_invalid(
    gateway: Gateway, execution: spec_pb2.Execution, field: str
) -> None:
    spec = crossover_spec()
    spec.execution.CopyFrom(execution)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await gateway.stub.SubmitBacktest(
            api.SubmitBacktestRequest(spec=spec), timeout=5
        )

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    _, fields = error_details(raised.value)
    assert fields == [field]


async def test_long_short_buy_and_hold_is_refused(gateway: Gateway) -> None:
    spec = crossover_spec()
    spec.strategy.buy_and_hold.SetInParent()
    spec.execution.direction = spec_pb2.DIRECTION_LONG_SHORT

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await gateway.stub.SubmitBacktest(
            api.SubmitBacktestRequest(spec=spec), timeout=5
        )

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    _, fields = error_details(raised.value)
    assert fields == ["spec.execution.direction"]
