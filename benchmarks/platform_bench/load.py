"""Client load on the gateway from processes of their own, so the clients'
Python does not share a GIL with the measurement or with each other."""

from __future__ import annotations

import asyncio
import multiprocessing
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from backcast.cli.client import OWNER_HEADER
from backcast.rpc.server import CLIENT_OPTIONS
from backcast.rpc.translate import spec_to_proto
from backcast.v1 import backtest_service_pb2 as api
from backcast.v1 import backtest_service_pb2_grpc as api_grpc
from platform_bench.harness import tiny_spec

CALL_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class LoadPlan:
    """What one client process sends: `n_calls` calls, `concurrency` at a
    time, each carrying `batch` backtests (1 means SubmitBacktest)."""

    address: str
    owner: str
    n_calls: int
    concurrency: int
    batch: int = 1


@dataclass(frozen=True)
class LoadResult:
    """Wall-clock times (time.time()) of the first send and the last answer."""

    n_backtests: int
    started_at: float
    finished_at: float
    error: str = ""


def run_clients(plans: Sequence[LoadPlan]) -> float:
    """Backtests accepted per second over every client process together.

    Raises:
        RuntimeError: a client saw an error.
    """
    context = multiprocessing.get_context("spawn")
    with context.Pool(len(plans)) as pool:
        results = pool.map(run_client, plans)
    errors = [r.error for r in results if r.error]
    if errors:
        raise RuntimeError(f"client failed: {errors[0]}")
    n_backtests = sum(r.n_backtests for r in results)
    started = min(r.started_at for r in results)
    finished = max(r.finished_at for r in results)
    return n_backtests / (finished - started)


def run_client(plan: LoadPlan) -> LoadResult:
    return asyncio.run(_client(plan))


async def _client(plan: LoadPlan) -> LoadResult:
    metadata = ((OWNER_HEADER, plan.owner),)
    spec = spec_to_proto(tiny_spec())
    prefix = secrets.token_hex(4)
    # Requests are built before the clock starts: the figure is the
    # gateway's, not the time this process takes to make messages.
    queue: asyncio.Queue[api.SubmitBacktestRequest | api.SubmitBacktestsRequest]
    queue = asyncio.Queue()
    for call in range(plan.n_calls):
        requests = [
            api.SubmitBacktestRequest(spec=spec, request_id=f"{prefix}-{call}-{i}")
            for i in range(plan.batch)
        ]
        if plan.batch == 1:
            queue.put_nowait(requests[0])
        else:
            queue.put_nowait(api.SubmitBacktestsRequest(requests=requests))

    async with grpc.aio.insecure_channel(plan.address, options=CLIENT_OPTIONS) as ch:
        stub = api_grpc.BacktestServiceStub(ch)
        # One call before the clock starts, so the connection is up.
        await stub.ListStrategies(api.ListStrategiesRequest(), timeout=10.0)

        async def send() -> None:
            while not queue.empty():
                request = queue.get_nowait()
                if isinstance(request, api.SubmitBacktestRequest):
                    await stub.SubmitBacktest(
                        request, timeout=CALL_TIMEOUT_SECONDS, metadata=metadata
                    )
                else:
                    await stub.SubmitBacktests(
                        request, timeout=CALL_TIMEOUT_SECONDS, metadata=metadata
                    )

        started = time.time()
        try:
            await asyncio.gather(*(send() for _ in range(plan.concurrency)))
        except grpc.aio.AioRpcError as error:
            text = f"{error.code().name}: {error.details()}"
            return LoadResult(0, started, time.time(), error=text)
        finished = time.time()
    return LoadResult(plan.n_calls * plan.batch, started, finished)
