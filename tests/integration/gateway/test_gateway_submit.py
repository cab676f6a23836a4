"""SubmitBacktest: validation, idempotency and what gets written."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable

import grpc
import pytest
from gateway_support import Gateway, as_owner, count_jobs, crossover_spec, timestamp
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from backcast.v1 import backtest_service_pb2 as api
from backcast.v1 import spec_pb2


def error_details(error: grpc.aio.AioRpcError) -> tuple[str, list[str]]:
    """The ErrorInfo reason and the BadRequest field paths of a failed call."""
    status = rpc_status.from_call(error)
    assert status is not None
    reason, fields = "", []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            fields = [v.field for v in bad_request.field_violations]
    return reason, fields


async def test_submit_returns_queued_backtest_with_id_at_once(gateway: Gateway) -> None:
    response = await gateway.stub.SubmitBacktest(
        api.SubmitBacktestRequest(spec=crossover_spec(), priority=5),
        metadata=as_owner("alice"),
        timeout=5,
    )

    backtest = response.backtest
    assert backtest.id > 0
    assert backtest.state == api.Backtest.STATE_QUEUED
    assert backtest.owner == "alice"
    assert backtest.priority == 5
    assert backtest.max_attempts == 3
    assert backtest.attempt == 0
    assert backtest.spec.instrument == "SYN-BTCUSD"
    assert backtest.spec.strategy.moving_average_crossover.slow_period == 20
    assert backtest.HasField("create_time")


async def test_submit_without_owner_header_acts_for_anonymous(gateway: Gateway) -> None:
    response = await gateway.stub.SubmitBacktest(
        api.SubmitBacktestRequest(spec=crossover_spec()), timeout=5
    )

    assert response.backtest.owner == "anonymous"


async def test_submit_with_same_request_id_returns_the_same_backtest(
    gateway: Gateway, database_url: str
) -> None:
    request = api.SubmitBacktestRequest(
        spec=crossover_spec(), request_id=str(uuid.uuid4())
    )

    first = await gateway.stub.SubmitBacktest(
        request, metadata=as_owner("alice"), timeout=5
    )
    second = await gateway.stub.SubmitBacktest(
        request, metadata=as_owner("alice"), timeout=5
    )

    assert second.backtest.id == first.backtest.id
    assert second.backtest.request_id == request.request_id
    assert await count_jobs(database_url) == 1


async def test_same_request_id_from_another_owner_creates_another_backtest(
    gateway: Gateway,
) -> None:
    request = api.SubmitBacktestRequest(spec=crossover_spec(), request_id="shared-id")

    alice = await gateway.stub.SubmitBacktest(
        request, metadata=as_owner("alice"), timeout=5
    )
    bob = await gateway.stub.SubmitBacktest(
        request, metadata=as_owner("bob"), timeout=5
    )

    assert alice.backtest.id != bob.backtest.id


async def test_request_id_reused_with_another_spec_is_invalid_argument(
    gateway: Gateway,
) -> None:
    request_id = str(uuid.uuid4())
    await gateway.stub.SubmitBacktest(
        api.SubmitBacktestRequest(spec=crossover_spec(), request_id=request_id),
        metadata=as_owner("alice"),
        timeout=5,
    )

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.stub.SubmitBacktest(
            api.SubmitBacktestRequest(
                spec=crossover_spec(fast_period=7), request_id=request_id
            ),
            metadata=as_owner("alice"),
            timeout=5,
        )

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    reason, fields = error_details(caught.value)
    assert reason == "REQUEST_ID_REUSED"
    assert fields == ["request_id"]


def _slow_not_above_fast(spec: spec_pb2.BacktestSpec) -> None:
    spec.strategy.moving_average_crossover.fast_period = 30
    spec.strategy.moving_average_crossover.slow_period = 30


def _end_before_start(spec: spec_pb2.BacktestSpec) -> None:
    spec.end_time.CopyFrom(timestamp(2023, 12, 1))


def _unknown_interval(spec: spec_pb2.BacktestSpec) -> None:
    # Not a member of the enum: what a client built on a newer contract sends.
    spec.interval = 99  # type: ignore[assignment]


def _no_strategy(spec: spec_pb2.BacktestSpec) -> None:
    spec.ClearField("strategy")


def _nan_commission(spec: spec_pb2.BacktestSpec) -> None:
    spec.costs.commission = math.nan


def _huge_instrument(spec: spec_pb2.BacktestSpec) -> None:
    spec.instrument = "SYN-" + "X" * 1_000_000


def _no_start_time(spec: spec_pb2.BacktestSpec) -> None:
    spec.ClearField("start_time")


@pytest.mark.parametrize(
    ("spoil", "field"),
    [
        (_slow_not_above_fast, "spec.strategy.moving_average_crossover.slow_period"),
        (_end_before_start, "spec.end_time"),
        (_unknown_interval, "spec.interval"),
        (_no_strategy, "spec.strategy"),
        (_nan_commission, "spec.costs.commission"),
        (_huge_instrument, "spec.instrument"),
        (_no_start_time, "spec.start_time"),
    ],
)
async def test_invalid_spec_is_rejected_naming_the_field_and_writes_nothing(
    gateway: Gateway,
    database_url: str,
    spoil: Callable[[spec_pb2.BacktestSpec], None],
    field: str,
) -> None:
    spec = crossover_spec()
    spoil(spec)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.stub.SubmitBacktest(
            api.SubmitBacktestRequest(spec=spec), metadata=as_owner("alice"), timeout=5
        )

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    _, fields = error_details(caught.value)
    assert field in fields
    assert await count_jobs(database_url) == 0


async def test_missing_spec_is_invalid_argument(gateway: Gateway) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.stub.SubmitBacktest(api.SubmitBacktestRequest(), timeout=5)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(caught.value)[1] == ["spec"]


async def test_every_bad_field_is_reported_in_one_reply(
    gateway: Gateway, database_url: str
) -> None:
    spec = crossover_spec()
    _nan_commission(spec)
    request = api.SubmitBacktestRequest(
        spec=spec, priority=101, max_attempts=11, request_id="x" * 129
    )

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.stub.SubmitBacktest(request, timeout=5)

    reason, fields = error_details(caught.value)
    assert reason == "INVALID_ARGUMENT"
    assert fields == [
        "spec.costs.commission",
        "priority",
        "max_attempts",
        "request_id",
    ]
    assert await count_jobs(database_url) == 0


@pytest.mark.parametrize("owner", ["", "has space", "x" * 65, "semi;colon"])
async def test_malformed_owner_header_is_invalid_argument_naming_the_header(
    gateway: Gateway, database_url: str, owner: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.stub.SubmitBacktest(
            api.SubmitBacktestRequest(spec=crossover_spec()),
            metadata=as_owner(owner),
            timeout=5,
        )

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(caught.value)[1] == ["x-backcast-owner"]
    assert await count_jobs(database_url) == 0
