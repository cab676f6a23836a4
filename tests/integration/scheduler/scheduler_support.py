"""A scripted worker that drives the scheduler's Connect stream directly."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc

from backcast.engine.results import BacktestResult, EquityCurve, Metrics, TradeTable
from backcast.engine.spec import BacktestSpec, Interval, StrategySpec
from backcast.jobqueue.jobs import Job, JobState
from backcast.jobqueue.store import JobStore
from backcast.rpc.translate import result_to_proto
from backcast.scheduler.config import SchedulerConfig
from backcast.v1 import scheduler_service_pb2 as pb
from backcast.v1 import scheduler_service_pb2_grpc

OWNER = "alice"
LEASE_SECONDS = 2.0
HEARTBEAT_SECONDS = 0.3
POLL_SECONDS = 0.3


def scheduler_config(database_url: str, scheduler_id: str = "s1") -> SchedulerConfig:
    return SchedulerConfig(
        database_url=database_url,
        address="127.0.0.1:0",
        lease_seconds=LEASE_SECONDS,
        heartbeat_seconds=HEARTBEAT_SECONDS,
        poll_seconds=POLL_SECONDS,
        scheduler_id=scheduler_id,
    )


def short_spec() -> dict[str, Any]:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    spec = BacktestSpec(
        strategy=StrategySpec("buy_and_hold", {}),
        instrument="SYN-X",
        interval=Interval.ONE_HOUR,
        start_at=start,
        end_at=start + timedelta(days=10),
    )
    return spec.to_dict()


async def submit(store: JobStore, n: int = 1, **spec_changes: Any) -> list[int]:
    spec = {**short_spec(), **spec_changes}
    jobs = [
        await store.submit(OWNER, spec, priority=0, max_attempts=3, request_id=None)
        for _ in range(n)
    ]
    return [job.id for job in jobs]


async def wait_for_job(
    store: JobStore,
    job_id: int,
    accept: Callable[[Job], bool],
    *,
    timeout_seconds: float = 10.0,
) -> Job:
    """Poll the job until `accept` holds; fail the test after the timeout."""
    deadline = asyncio.get_running_loop().time() + timeout_seconds
    while True:
        job = await store.get(OWNER, job_id)
        if accept(job):
            return job
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"job {job_id} stuck in {job.state} ({job})")
        await asyncio.sleep(0.05)


async def wait_for_state(
    store: JobStore, job_id: int, state: JobState, *, timeout_seconds: float = 10.0
) -> Job:
    return await wait_for_job(
        store, job_id, lambda job: job.state is state, timeout_seconds=timeout_seconds
    )


def empty_result() -> pb.CompleteAttemptRequest:
    metrics = Metrics(
        total_return=0.0,
        cagr=0.0,
        annualized_volatility=0.0,
        sharpe_ratio=0.0,
        max_drawdown=0.0,
        max_drawdown_candles=0,
        n_trades=0,
        win_rate=0.0,
        profit_factor=0.0,
        exposure=0.0,
        commissions_paid=0.0,
        buy_and_hold_return=0.0,
        final_equity=10_000.0,
        n_candles=240,
        periods_per_year=365.0,
        sortino_ratio=0.0,
        calmar_ratio=0.0,
        max_drawdown_seconds=0,
        expectancy=0.0,
        expectancy_return=0.0,
        best_trade_return=0.0,
        worst_trade_return=0.0,
        open_trade_pnl=0.0,
    )
    empty = BacktestResult(metrics, TradeTable.of([]), EquityCurve.of([]))
    result = result_to_proto(empty)
    return pb.CompleteAttemptRequest(result=result)


class FakeWorker:
    """One Connect stream whose heartbeats each test writes by hand."""

    def __init__(
        self,
        port: int,
        worker_id: str,
        n_slots: int,
        n_prefetch: int = 0,
        *,
        takes_batches: bool = False,
    ) -> None:
        self.worker_id = worker_id
        self.n_slots = n_slots
        self.n_prefetch = n_prefetch
        self.takes_batches = takes_batches
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.stub = scheduler_service_pb2_grpc.SchedulerServiceStub(self.channel)
        self.welcome: pb.SchedulerWelcome | None = None
        self._call: Any = None
        self._inbox: asyncio.Queue[pb.ConnectResponse] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._beating: asyncio.Task[None] | None = None

    async def connect(self, held: Sequence[pb.HeldLease] = ()) -> pb.SchedulerWelcome:
        self._call = self.stub.Connect()
        hello = pb.WorkerHello(
            worker_id=self.worker_id,
            n_slots=self.n_slots,
            n_prefetch=self.n_prefetch,
            takes_assignment_batches=self.takes_batches,
            version="test",
            held_leases=list(held),
        )
        await self._call.write(pb.ConnectRequest(hello=hello))
        first = await asyncio.wait_for(self._call.read(), 5)
        assert first.WhichOneof("message") == "welcome"
        self.welcome = first.welcome
        self._reader = asyncio.create_task(self._read())
        return self.welcome

    async def _read(self) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
            while (message := await self._call.read()) != grpc.aio.EOF:
                self._inbox.put_nowait(message)

    async def heartbeat(
        self,
        n_free_slots: int,
        held: Sequence[pb.HeldLease] = (),
        *,
        draining: bool = False,
    ) -> None:
        beat = pb.WorkerHeartbeat(
            n_free_slots=n_free_slots, held_leases=list(held), draining=draining
        )
        await self._call.write(pb.ConnectRequest(heartbeat=beat))

    def keep_heartbeating(
        self, report: Callable[[], tuple[int, Sequence[pb.HeldLease]]]
    ) -> None:
        """Heartbeat every HEARTBEAT_SECONDS with what `report` returns."""

        async def beat() -> None:
            while True:
                n_free, held = report()
                await self.heartbeat(n_free, held)
                await asyncio.sleep(HEARTBEAT_SECONDS)

        self._beating = asyncio.create_task(beat())

    def stop_heartbeating(self) -> None:
        if self._beating is not None:
            self._beating.cancel()

    async def receive(self, timeout_seconds: float = 5.0) -> pb.ConnectResponse:
        return await asyncio.wait_for(self._inbox.get(), timeout_seconds)

    async def assignments(
        self, n: int, timeout_seconds: float = 5.0
    ) -> list[pb.Assignment]:
        received = []
        for _ in range(n):
            message = await self.receive(timeout_seconds)
            assert message.WhichOneof("message") == "assignment", message
            received.append(message.assignment)
        return received

    async def assert_quiet(self, seconds: float) -> None:
        """Nothing arrives for `seconds`."""
        with contextlib.suppress(TimeoutError):
            message = await asyncio.wait_for(self._inbox.get(), seconds)
            raise AssertionError(f"unexpected message: {message}")

    async def complete(
        self, job_id: int, fencing_token: int, request: pb.CompleteAttemptRequest
    ) -> None:
        full = self.report(job_id, fencing_token, request)
        await self.stub.CompleteAttempt(full, timeout=5)

    def report(
        self, job_id: int, fencing_token: int, request: pb.CompleteAttemptRequest
    ) -> pb.CompleteAttemptRequest:
        """`request` as this worker's report of the attempt."""
        full = pb.CompleteAttemptRequest()
        full.CopyFrom(request)
        full.job_id = job_id
        full.fencing_token = fencing_token
        full.worker_id = self.worker_id
        return full

    async def complete_many(
        self, reports: Sequence[pb.CompleteAttemptRequest]
    ) -> list[pb.ReportReceipt]:
        request = pb.CompleteAttemptsRequest(reports=list(reports))
        response = await self.stub.CompleteAttempts(request, timeout=5)
        return list(response.receipts)

    async def close(self) -> None:
        self.stop_heartbeating()
        if self._call is not None:
            self._call.cancel()
        if self._reader is not None:
            self._reader.cancel()
        await self.channel.close()


def held_of(
    assignments: Sequence[pb.Assignment], progress: float = 0.0
) -> list[pb.HeldLease]:
    return [
        pb.HeldLease(job_id=a.job_id, fencing_token=a.fencing_token, progress=progress)
        for a in assignments
    ]


# connect_worker(worker_id="w1", n_slots=4, held=(), n_prefetch=0,
#                takes_batches=False) -> a connected FakeWorker
WorkerFactory = Callable[..., Awaitable[FakeWorker]]
