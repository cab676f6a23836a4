"""GetStatus, ListBacktests, CancelBacktest and GetResult against the store."""

from __future__ import annotations

import grpc
import pytest
from gateway_support import Gateway, as_owner, crossover_spec, sample_result

from backcast.jobqueue.results import stored_result
from backcast.jobqueue.store import JobStore
from backcast.v1 import backtest_service_pb2 as api

ALICE = as_owner("alice")


async def submit(gateway: Gateway, owner: str = "alice") -> api.Backtest:
    response: api.SubmitBacktestResponse = await gateway.stub.SubmitBacktest(
        api.SubmitBacktestRequest(spec=crossover_spec()),
        metadata=as_owner(owner),
        timeout=5,
    )
    return response.backtest


async def run_to_success(store: JobStore, n_trades: int) -> int:
    """Lease the next queued job and complete it with a sample result."""
    (lease,) = await store.claim("test-worker", 1, lease_seconds=30)
    await store.complete(
        lease.job_id, lease.fencing_token, stored_result(sample_result(n_trades))
    )
    return lease.job_id


async def list_all(
    gateway: Gateway,
    page_size: int,
    states: list[api.Backtest.State.ValueType] | None = None,
) -> tuple[list[int], int]:
    """Every listed id, following page tokens, and the number of pages."""
    ids: list[int] = []
    token, pages = "", 0
    while True:
        response = await gateway.stub.ListBacktests(
            api.ListBacktestsRequest(
                states=states or [], page_size=page_size, page_token=token
            ),
            metadata=ALICE,
            timeout=5,
        )
        ids += [b.id for b in response.backtests]
        pages += 1
        token = response.next_page_token
        if not token:
            return ids, pages


async def test_status_shows_the_submitted_backtest(gateway: Gateway) -> None:
    submitted = await submit(gateway)

    response = await gateway.stub.GetStatus(
        api.GetStatusRequest(backtest_id=submitted.id), metadata=ALICE, timeout=5
    )

    assert response.backtest == submitted


async def test_status_lists_every_attempt_with_its_worker_and_outcome(
    gateway: Gateway, store: JobStore
) -> None:
    submitted = await submit(gateway)
    (first,) = await store.claim("worker-a", 1, lease_seconds=30)
    await store.fail(
        first.job_id,
        first.fencing_token,
        "slot died",
        retryable=True,
        retry_delay_seconds=0,
    )

    response = await gateway.stub.GetStatus(
        api.GetStatusRequest(backtest_id=submitted.id), metadata=ALICE, timeout=5
    )

    [attempt] = response.attempts
    assert (attempt.number, attempt.worker) == (1, "worker-a")
    assert attempt.outcome == api.Attempt.OUTCOME_FAILED
    assert attempt.error_message == "slot died"
    assert attempt.HasField("start_time") and attempt.HasField("end_time")


async def test_status_of_a_backtest_not_yet_run_has_no_attempts(
    gateway: Gateway,
) -> None:
    submitted = await submit(gateway)

    response = await gateway.stub.GetStatus(
        api.GetStatusRequest(backtest_id=submitted.id), metadata=ALICE, timeout=5
    )

    assert list(response.attempts) == []


@pytest.mark.parametrize("call", ["GetStatus", "CancelBacktest", "GetResult"])
async def test_another_owners_backtest_is_not_found(
    gateway: Gateway, call: str
) -> None:
    submitted = await submit(gateway, owner="bob")
    request_type = {
        "GetStatus": api.GetStatusRequest,
        "CancelBacktest": api.CancelBacktestRequest,
        "GetResult": api.GetResultRequest,
    }[call]

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await getattr(gateway.stub, call)(
            request_type(backtest_id=submitted.id), metadata=ALICE, timeout=5
        )

    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_zero_backtest_id_is_invalid_argument(gateway: Gateway) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.stub.GetStatus(api.GetStatusRequest(), timeout=5)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_list_pages_through_every_backtest_once_newest_first(
    gateway: Gateway,
) -> None:
    submitted = [(await submit(gateway)).id for _ in range(7)]
    await submit(gateway, owner="bob")

    ids, pages = await list_all(gateway, page_size=3)

    assert ids == sorted(submitted, reverse=True)
    assert pages == 3


async def test_list_with_page_size_dividing_the_total_ends_without_empty_page(
    gateway: Gateway,
) -> None:
    for _ in range(4):
        await submit(gateway)

    ids, pages = await list_all(gateway, page_size=2)

    assert len(ids) == 4
    assert pages == 2


async def test_list_filters_by_state(gateway: Gateway, store: JobStore) -> None:
    queued = [(await submit(gateway)).id for _ in range(3)]
    cancelled = (await submit(gateway)).id
    await gateway.stub.CancelBacktest(
        api.CancelBacktestRequest(backtest_id=cancelled), metadata=ALICE, timeout=5
    )

    only_cancelled, _ = await list_all(
        gateway, page_size=2, states=[api.Backtest.STATE_CANCELLED]
    )
    only_queued, _ = await list_all(
        gateway, page_size=2, states=[api.Backtest.STATE_QUEUED]
    )

    assert only_cancelled == [cancelled]
    assert only_queued == sorted(queued, reverse=True)


async def test_list_rejects_unknown_state_naming_its_index(gateway: Gateway) -> None:
    request = api.ListBacktestsRequest(
        states=[api.Backtest.STATE_QUEUED, api.Backtest.STATE_UNSPECIFIED]
    )

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.stub.ListBacktests(request, timeout=5)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "states[1]" in (caught.value.details() or "")


async def test_negative_page_size_is_invalid_argument(gateway: Gateway) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.stub.ListBacktests(
            api.ListBacktestsRequest(page_size=-1), timeout=5
        )

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def first_page_token(gateway: Gateway) -> str:
    for _ in range(3):
        await submit(gateway)
    response: api.ListBacktestsResponse = await gateway.stub.ListBacktests(
        api.ListBacktestsRequest(page_size=1), metadata=ALICE, timeout=5
    )
    assert response.next_page_token
    return response.next_page_token


async def test_tampered_page_token_is_invalid_argument(gateway: Gateway) -> None:
    token = await first_page_token(gateway)
    flipped = "A" if token[5] != "A" else "B"
    tampered = token[:5] + flipped + token[6:]

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.stub.ListBacktests(
            api.ListBacktestsRequest(page_size=1, page_token=tampered),
            metadata=ALICE,
            timeout=5,
        )

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in (caught.value.details() or "")


@pytest.mark.parametrize("change", ["owner", "filter"])
async def test_page_token_of_another_query_is_invalid_argument(
    gateway: Gateway, change: str
) -> None:
    token = await first_page_token(gateway)
    request = api.ListBacktestsRequest(page_size=1, page_token=token)
    metadata = ALICE
    if change == "owner":
        metadata = as_owner("bob")
    else:
        request.states.append(api.Backtest.STATE_QUEUED)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.stub.ListBacktests(request, metadata=metadata, timeout=5)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_cancel_queued_backtest_cancels_it_at_once(gateway: Gateway) -> None:
    submitted = await submit(gateway)

    response = await gateway.stub.CancelBacktest(
        api.CancelBacktestRequest(backtest_id=submitted.id), metadata=ALICE, timeout=5
    )

    assert response.backtest.state == api.Backtest.STATE_CANCELLED
    assert response.backtest.HasField("end_time")


async def test_cancelling_twice_returns_the_cancelled_backtest(
    gateway: Gateway,
) -> None:
    submitted = await submit(gateway)
    request = api.CancelBacktestRequest(backtest_id=submitted.id)

    first = await gateway.stub.CancelBacktest(request, metadata=ALICE, timeout=5)
    second = await gateway.stub.CancelBacktest(request, metadata=ALICE, timeout=5)

    assert second.backtest == first.backtest


async def test_cancel_running_backtest_asks_its_worker_to_stop(
    gateway: Gateway, store: JobStore
) -> None:
    submitted = await submit(gateway)
    await store.claim("test-worker", 1, lease_seconds=30)

    response = await gateway.stub.CancelBacktest(
        api.CancelBacktestRequest(backtest_id=submitted.id), metadata=ALICE, timeout=5
    )

    assert response.backtest.state == api.Backtest.STATE_CANCELLING


async def test_cancel_succeeded_backtest_is_failed_precondition(
    gateway: Gateway, store: JobStore
) -> None:
    await submit(gateway)
    job_id = await run_to_success(store, n_trades=1)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.stub.CancelBacktest(
            api.CancelBacktestRequest(backtest_id=job_id), metadata=ALICE, timeout=5
        )

    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_result_of_queued_backtest_is_failed_precondition(
    gateway: Gateway,
) -> None:
    submitted = await submit(gateway)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.stub.GetResult(
            api.GetResultRequest(backtest_id=submitted.id), metadata=ALICE, timeout=5
        )

    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_result_of_succeeded_backtest_has_metrics_and_pages_trades(
    gateway: Gateway, store: JobStore
) -> None:
    await submit(gateway)
    job_id = await run_to_success(store, n_trades=5)
    expected = sample_result(5)

    entry_prices: list[float] = []
    token, pages = "", []
    while True:
        page = await gateway.stub.GetResult(
            api.GetResultRequest(backtest_id=job_id, page_size=2, page_token=token),
            metadata=ALICE,
            timeout=5,
        )
        pages.append(page)
        entry_prices += [t.entry_price for t in page.result.trades]
        token = page.next_page_token
        if not token:
            break

    assert [len(p.result.trades) for p in pages] == [2, 2, 1]
    assert entry_prices == [t.entry_price for t in expected.trades]
    for page in pages:
        assert page.backtest_id == job_id
        assert page.total_trades == 5
        assert page.result.metrics.sharpe_ratio == expected.metrics.sharpe_ratio
        assert len(page.result.equity_curve) == 3


async def test_status_of_succeeded_backtest_has_a_metrics_summary(
    gateway: Gateway, store: JobStore
) -> None:
    await submit(gateway)
    job_id = await run_to_success(store, n_trades=2)

    response = await gateway.stub.GetStatus(
        api.GetStatusRequest(backtest_id=job_id), metadata=ALICE, timeout=5
    )

    assert response.backtest.state == api.Backtest.STATE_SUCCEEDED
    assert response.backtest.summary.n_trades == 2


async def test_result_page_token_is_bound_to_its_backtest(
    gateway: Gateway, store: JobStore
) -> None:
    await submit(gateway)
    await submit(gateway)
    first = await run_to_success(store, n_trades=3)
    second = await run_to_success(store, n_trades=3)
    page = await gateway.stub.GetResult(
        api.GetResultRequest(backtest_id=first, page_size=1),
        metadata=ALICE,
        timeout=5,
    )

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.stub.GetResult(
            api.GetResultRequest(
                backtest_id=second, page_size=1, page_token=page.next_page_token
            ),
            metadata=ALICE,
            timeout=5,
        )

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
