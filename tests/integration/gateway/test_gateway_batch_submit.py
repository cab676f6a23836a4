"""SubmitBacktests: a batch is queued whole, in order, or not at all."""

from __future__ import annotations

import grpc
import pytest
from gateway_support import Gateway, as_owner, count_jobs, crossover_spec
from test_gateway_submit import error_details

from backcast.v1 import backtest_service_pb2 as api

ALICE = as_owner("alice")


def batch(*requests: api.SubmitBacktestRequest) -> api.SubmitBacktestsRequest:
    return api.SubmitBacktestsRequest(requests=list(requests))


def item(
    slow_period: int = 20, request_id: str = "", priority: int = 0
) -> api.SubmitBacktestRequest:
    return api.SubmitBacktestRequest(
        spec=crossover_spec(slow_period=slow_period),
        request_id=request_id,
        priority=priority,
    )


async def submit_batch(
    gateway: Gateway, request: api.SubmitBacktestsRequest
) -> list[api.Backtest]:
    response = await gateway.stub.SubmitBacktests(request, metadata=ALICE, timeout=5)
    return list(response.backtests)


async def test_batch_is_queued_in_request_order(gateway: Gateway) -> None:
    backtests = await submit_batch(
        gateway, batch(item(20), item(30, request_id="r-30"), item(40, priority=7))
    )

    assert [
        b.spec.strategy.moving_average_crossover.slow_period for b in backtests
    ] == [
        20,
        30,
        40,
    ]
    assert all(b.state == api.Backtest.STATE_QUEUED for b in backtests)
    assert [b.priority for b in backtests] == [0, 0, 7]
    assert backtests[1].request_id == "r-30"
    assert len({b.id for b in backtests}) == 3


async def test_batch_repeating_earlier_request_ids_gets_the_same_jobs(
    gateway: Gateway, database_url: str
) -> None:
    first = await submit_batch(gateway, batch(item(20, "a"), item(30, "b")))

    again = await submit_batch(gateway, batch(item(30, "b"), item(50), item(20, "a")))

    assert [again[0].id, again[2].id] == [first[1].id, first[0].id]
    assert again[1].id not in {b.id for b in first}
    assert await count_jobs(database_url) == 3


async def test_invalid_item_rejects_the_whole_batch_naming_its_index(
    gateway: Gateway, database_url: str
) -> None:
    bad = item(20)
    bad.spec.instrument = ""

    with pytest.raises(grpc.aio.AioRpcError) as rejected:
        await submit_batch(gateway, batch(item(20), bad, item(30, priority=1000)))

    assert rejected.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    _, fields = error_details(rejected.value)
    assert fields == ["requests[1].spec.instrument", "requests[2].priority"]
    assert "requests[1].spec.instrument" in (rejected.value.details() or "")
    assert await count_jobs(database_url) == 0


async def test_request_id_reused_for_another_spec_writes_nothing_of_the_batch(
    gateway: Gateway, database_url: str
) -> None:
    await submit_batch(gateway, batch(item(20, "taken")))

    with pytest.raises(grpc.aio.AioRpcError) as rejected:
        await submit_batch(gateway, batch(item(30), item(40, "taken")))

    assert rejected.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    reason, _ = error_details(rejected.value)
    assert reason == "REQUEST_ID_REUSED"
    assert await count_jobs(database_url) == 1


async def test_request_id_repeated_within_a_batch_is_invalid(
    gateway: Gateway, database_url: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as rejected:
        await submit_batch(gateway, batch(item(20, "x"), item(20, "x")))

    assert rejected.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    _, fields = error_details(rejected.value)
    assert fields == ["requests[1].request_id"]
    assert await count_jobs(database_url) == 0


@pytest.mark.parametrize("size", [0, 1001])
async def test_batch_size_outside_one_to_a_thousand_is_invalid(
    gateway: Gateway, size: int
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as rejected:
        await submit_batch(gateway, batch(*[item(20)] * size))

    assert rejected.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (rejected.value.details() or "").startswith("requests: holds")
