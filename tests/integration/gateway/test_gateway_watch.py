"""WatchBacktest: snapshot first, then changes, until a terminal state."""

from __future__ import annotations

import asyncio

import grpc
import psycopg
import pytest
from gateway_support import (
    Gateway,
    as_owner,
    crossover_spec,
    sample_result,
    start_test_gateway,
)

from backcast.gateway.watch import APPLICATION_NAME
from backcast.jobqueue.jobs import HeldLease
from backcast.jobqueue.results import stored_result
from backcast.jobqueue.store import JobStore
from backcast.v1 import backtest_service_pb2 as api

ALICE = as_owner("alice")
# Well under the 2 s safety-net poll: these changes must arrive by NOTIFY.
NOTIFY_SECONDS = 1.5


async def submit(gateway: Gateway) -> int:
    response: api.SubmitBacktestResponse = await gateway.stub.SubmitBacktest(
        api.SubmitBacktestRequest(spec=crossover_spec()), metadata=ALICE, timeout=5
    )
    return response.backtest.id


async def next_state(
    stream: grpc.aio.UnaryStreamCall, seconds: float
) -> api.Backtest.State.ValueType:
    response = await asyncio.wait_for(stream.read(), seconds)
    assert isinstance(response, api.WatchBacktestResponse)
    return response.backtest.state


async def test_watch_sends_snapshot_then_each_change_and_ends_at_terminal_state(
    gateway: Gateway, store: JobStore
) -> None:
    job_id = await submit(gateway)
    stream = gateway.stub.WatchBacktest(
        api.WatchBacktestRequest(backtest_id=job_id), metadata=ALICE, timeout=20
    )
    assert await next_state(stream, 5) == api.Backtest.STATE_QUEUED

    (lease,) = await store.claim("test-worker", 1, lease_seconds=30)
    assert await next_state(stream, NOTIFY_SECONDS) == api.Backtest.STATE_RUNNING

    held = HeldLease(job_id, lease.fencing_token, progress=0.5)
    await store.renew("test-worker", [held], lease_seconds=30)
    progressed = await asyncio.wait_for(stream.read(), NOTIFY_SECONDS)
    assert progressed.backtest.progress == 0.5

    await store.complete(job_id, lease.fencing_token, stored_result(sample_result(1)))
    assert await next_state(stream, NOTIFY_SECONDS) == api.Backtest.STATE_SUCCEEDED

    assert await asyncio.wait_for(stream.read(), 5) is grpc.aio.EOF
    assert await stream.code() == grpc.StatusCode.OK


async def test_watch_of_finished_backtest_sends_one_snapshot_and_ends(
    gateway: Gateway,
) -> None:
    job_id = await submit(gateway)
    await gateway.stub.CancelBacktest(
        api.CancelBacktestRequest(backtest_id=job_id), metadata=ALICE, timeout=5
    )

    stream = gateway.stub.WatchBacktest(
        api.WatchBacktestRequest(backtest_id=job_id), metadata=ALICE, timeout=10
    )
    states = [response.backtest.state async for response in stream]

    assert states == [api.Backtest.STATE_CANCELLED]


async def test_watch_of_another_owners_backtest_is_not_found(gateway: Gateway) -> None:
    job_id = await submit(gateway)
    stream = gateway.stub.WatchBacktest(
        api.WatchBacktestRequest(backtest_id=job_id),
        metadata=as_owner("bob"),
        timeout=10,
    )

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stream.read()

    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_stopping_the_gateway_ends_open_watches_as_unavailable(
    store: JobStore, database_url: str
) -> None:
    gateway = await start_test_gateway(store, database_url)
    job_id = await submit(gateway)
    stream = gateway.stub.WatchBacktest(
        api.WatchBacktestRequest(backtest_id=job_id), metadata=ALICE, timeout=20
    )
    assert await next_state(stream, 5) == api.Backtest.STATE_QUEUED

    stopping = asyncio.create_task(
        stop_gateway_later(gateway), name="stop-test-gateway"
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await asyncio.wait_for(stream.read(), 5)
    await stopping

    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def stop_gateway_later(gateway: Gateway) -> None:
    # Stop without closing the client channel first, as a real replica would.
    from backcast.gateway.server import stop_gateway

    await stop_gateway(gateway.host, gateway.events, grace_seconds=5, drain_seconds=0)
    await gateway.channel.close()


async def listener_pids(database_url: str) -> list[int]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT pid FROM pg_stat_activity "
            "WHERE application_name = %s AND datname = current_database()",
            (APPLICATION_NAME,),
        )
        return [row[0] for row in await cursor.fetchall()]


async def test_watch_still_sees_changes_after_the_listening_connection_drops(
    gateway: Gateway, store: JobStore, database_url: str
) -> None:
    job_id = await submit(gateway)
    stream = gateway.stub.WatchBacktest(
        api.WatchBacktestRequest(backtest_id=job_id), metadata=ALICE, timeout=20
    )
    assert await next_state(stream, 5) == api.Backtest.STATE_QUEUED

    (old_pid,) = await listener_pids(database_url)
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await conn.execute("SELECT pg_terminate_backend(%s)", (old_pid,))
    for _ in range(100):
        pids = await listener_pids(database_url)
        if pids and pids != [old_pid] and gateway.events.listening.is_set():
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the job events listener did not reconnect within 5 s")

    await store.claim("test-worker", 1, lease_seconds=30)
    assert await next_state(stream, NOTIFY_SECONDS) == api.Backtest.STATE_RUNNING
