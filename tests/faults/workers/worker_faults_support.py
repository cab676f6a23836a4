"""Processes, a controllable TCP proxy, a stream of small jobs and database
peeks for the worker fault tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import grpc
import psycopg
from grpc_health.v1 import health_pb2

from backcast.cli.client import GatewayClient, check_health
from backcast.cli.platform import HOST, Platform, PlatformOptions, ServiceProcess
from backcast.cli.views import backtest_line, is_terminal
from backcast.engine.spec import BacktestSpec, Costs, Interval, StrategySpec
from backcast.rpc.translate import spec_to_proto
from backcast.scheduler.backoff import BASE_SECONDS
from backcast.scheduler.config import SchedulerConfig
from backcast.v1 import backtest_service_pb2 as api
from backcast.v1 import spec_pb2

T = TypeVar("T")

OWNER = "faults"
STATE = api.Backtest.State
TERMINAL = (STATE.STATE_SUCCEEDED, STATE.STATE_FAILED, STATE.STATE_CANCELLED)


# --- specs ------------------------------------------------------------------


def small_spec(instrument: str, index: int = 0) -> spec_pb2.BacktestSpec:
    """Two days of 1h candles of `instrument`: a result of a few KiB that a
    slot computes in milliseconds, so faults, not the engine, set the pace."""
    start = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=index % 20)
    spec = BacktestSpec(
        strategy=StrategySpec(
            "moving_average_crossover",
            {"fast_period": 3 + index % 4, "slow_period": 12, "kind": "simple"},
        ),
        instrument=instrument,
        interval=Interval.ONE_HOUR,
        start_at=start,
        end_at=start + timedelta(days=2),
        costs=Costs(commission=0.001, slippage_bps=1.0),
    )
    return spec_to_proto(spec)


# --- waiting ----------------------------------------------------------------


def wait_for(
    probe: Callable[[], T | None],
    *,
    timeout_seconds: float,
    what: str,
    poll_seconds: float = 0.05,
) -> T:
    """The first truthy value of `probe()`; AssertionError after the timeout."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout_seconds:g} s")
        time.sleep(poll_seconds)


def wait_until_finished(
    client: GatewayClient, backtest_ids: Sequence[int], *, timeout_seconds: float
) -> dict[int, api.Backtest]:
    """Every backtest once it is terminal."""
    latest: dict[int, api.Backtest] = {}

    def all_finished() -> bool:
        for backtest_id in backtest_ids:
            known = latest.get(backtest_id)
            if known is None or not is_terminal(known):
                latest[backtest_id] = client.get_status(backtest_id)
        return all(is_terminal(b) for b in latest.values())

    try:
        wait_for(
            all_finished,
            timeout_seconds=timeout_seconds,
            what="end of every backtest",
            poll_seconds=0.2,
        )
    except AssertionError as error:
        unfinished = [backtest_line(b) for b in latest.values() if not is_terminal(b)]
        raise AssertionError(f"{error}; unfinished: {unfinished[:10]}") from None
    return latest


# --- the database -----------------------------------------------------------


@dataclass(frozen=True)
class AttemptRow:
    """One row of the attempts table."""

    attempt: int
    worker: str
    outcome: str
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class JobRow:
    """The columns of a job row that the fault tests look at."""

    state: str
    attempt: int
    fencing_token: int
    lease_holder: str | None
    progress: float
    has_result: bool


def attempts_of(database_url: str, job_id: int) -> list[AttemptRow]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT attempt, worker, outcome, started_at, finished_at"
            " FROM attempts WHERE job_id = %s ORDER BY attempt",
            (job_id,),
        ).fetchall()
    return [AttemptRow(*row) for row in rows]


def job_row(database_url: str, job_id: int) -> JobRow:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT j.state, j.attempt, j.fencing_token, j.lease_holder,"
            " j.progress, r.job_id IS NOT NULL"
            " FROM jobs AS j LEFT JOIN results AS r ON r.job_id = j.id"
            " WHERE j.id = %s",
            (job_id,),
        ).fetchone()
    assert row is not None, f"job {job_id} not in the jobs table"
    return JobRow(*row)


def lease_expiry(database_url: str, job_id: int) -> datetime:
    """When the current lease of a running job runs out."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT lease_expires_at FROM jobs WHERE id = %s AND state = 'running'",
            (job_id,),
        ).fetchone()
    assert row is not None and row[0] is not None, f"job {job_id} is not leased"
    value: datetime = row[0]
    return value


def database_now(database_url: str) -> datetime:
    """The database server's clock, which stamps every attempt row."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    value: datetime = row[0]
    return value


# --- service logs -----------------------------------------------------------


def log_events(
    service: ServiceProcess, event: str, **fields: object
) -> list[dict[str, Any]]:
    """The JSON log lines of `service` with this `event` and these fields."""
    if service.log_path is None or not service.log_path.exists():
        return []
    found = []
    with service.log_path.open(encoding="utf-8", errors="replace") as log:
        for line in log:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a traceback or other raw output
            if not isinstance(record, dict) or record.get("event") != event:
                continue
            if all(record.get(k) == v for k, v in fields.items()):
                found.append(record)
    return found


def wait_for_event(
    service: ServiceProcess,
    event: str,
    *,
    timeout_seconds: float = 30,
    **fields: object,
) -> dict[str, Any]:
    """The first log line of `service` with this `event` and these fields."""

    def logged() -> list[dict[str, Any]]:
        return log_events(service, event, **fields)

    found = wait_for(
        logged,
        timeout_seconds=timeout_seconds,
        what=f"{event} {fields} in the log of {service.name}",
        poll_seconds=0.02,
    )
    return found[0]


# --- the platform -----------------------------------------------------------


@dataclass(frozen=True)
class Timings:
    """Lease timings of the scheduler, short so that faults resolve in seconds."""

    lease_seconds: float = 2.0
    heartbeat_seconds: float = 0.3
    poll_seconds: float = 0.5

    def env(self) -> dict[str, str]:
        return {
            "BACKCAST_SCHEDULER_LEASE_SECONDS": str(self.lease_seconds),
            "BACKCAST_SCHEDULER_HEARTBEAT_SECONDS": str(self.heartbeat_seconds),
            "BACKCAST_SCHEDULER_POLL_SECONDS": str(self.poll_seconds),
        }

    @property
    def reap_interval_seconds(self) -> float:
        config = SchedulerConfig(
            database_url="",
            lease_seconds=self.lease_seconds,
            heartbeat_seconds=self.heartbeat_seconds,
        )
        return config.reap_interval_seconds

    @property
    def requeue_delay_seconds(self) -> float:
        """How long a job whose lease expired waits before it may be claimed."""
        return BASE_SECONDS


class Fleet:
    """A gateway and a scheduler, and workers added one at a time, each with
    its own injected faults and, if asked, a proxy in front of its scheduler.

    Platform starts identical workers; these tests need a worker whose slots
    hold one instrument's attempts while another's do not, and a worker that
    reaches the scheduler through a link the test can cut.
    """

    def __init__(self, database_url: str, root: Path, timings: Timings) -> None:
        self.database_url = database_url
        self.timings = timings
        self.proxies: list[TcpProxy] = []
        self.platform = Platform(
            PlatformOptions(
                n_workers=0,
                gateway_port=0,
                scheduler_port=0,
                data_dir=root,
                log_dir=root / "logs",
                database_url=database_url,
                extra_env=timings.env(),
                stop_grace_seconds=2.0,
            )
        )

    @property
    def gateway(self) -> ServiceProcess:
        assert self.platform.gateway is not None
        return self.platform.gateway

    @property
    def scheduler(self) -> ServiceProcess:
        assert self.platform.scheduler is not None
        return self.platform.scheduler

    @property
    def workers(self) -> list[ServiceProcess]:
        return self.platform.workers

    def start(self) -> None:
        self.platform.start()

    def stop(self) -> None:
        for service in self.platform.services:
            # A worker left frozen would sit out the whole stop grace period.
            service.signal(signal.SIGCONT)
        self.platform.stop()
        for proxy in self.proxies:
            proxy.close()

    def client(self) -> GatewayClient:
        return GatewayClient(self.platform.gateway_address, owner=OWNER)

    def proxy_to_scheduler(self) -> TcpProxy:
        """A proxy in front of the scheduler, closed with the fleet."""
        proxy = TcpProxy(self.scheduler.address)
        proxy.start()
        self.proxies.append(proxy)
        return proxy

    def add_worker(
        self,
        name: str,
        *,
        n_slots: int = 1,
        faults: str = "",
        scheduler_address: str | None = None,
        wait: bool = True,
    ) -> ServiceProcess:
        """Start a worker; unless `wait` is False, return once the scheduler
        has its stream."""
        address = f"{HOST}:{_free_port()}"
        env = dict(os.environ)
        # Workers never touch the job tables.
        env.pop("BACKCAST_DATABASE_URL", None)
        env.pop("DATABASE_URL", None)
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "BACKCAST_LOG_LEVEL": "INFO",
                "BACKCAST_WORKER_ID": name,
                "BACKCAST_WORKER_SCHEDULER": scheduler_address
                or self.scheduler.address,
                "BACKCAST_WORKER_ADDRESS": address,
                "BACKCAST_WORKER_SLOTS": str(n_slots),
                "BACKCAST_MARKETDATA_URL": self.database_url,
                "BACKCAST_FAULTS": faults,
            }
        )
        log_path = self.platform.options.logs_path / f"{name}.log"
        worker = ServiceProcess(name, "backcast.compute", address, env, log_path)
        # Listed with the platform's workers, so that its stop ends it too.
        self.workers.append(worker)
        worker.start()
        if wait:
            self.wait_connected(worker)
        return worker

    def wait_connected(self, worker: ServiceProcess) -> None:
        """Wait until the scheduler has welcomed `worker`."""

        def connected() -> bool:
            code = worker.returncode()
            if code is not None:
                raise AssertionError(
                    self.platform.explain(worker, f"exited with code {code}")
                )
            events = log_events(self.scheduler, "worker_connected", worker=worker.name)
            return bool(events) and _is_serving(worker.address)

        # Generous: a worker's slot processes load (or, with a stale cache,
        # compile) the engine's kernels before it connects, which has taken
        # over a minute on a busy two-core machine.
        wait_for(
            connected,
            timeout_seconds=180,
            what=f"connection of {worker.name} to the scheduler",
            poll_seconds=0.1,
        )

    def explain_all(self, problem: str) -> str:
        return "\n".join(
            self.platform.explain(service, problem)
            for service in self.platform.services
        )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _is_serving(address: str) -> bool:
    try:
        status = check_health(address, timeout_seconds=0.5)
    except grpc.RpcError:
        return False
    return bool(status == health_pb2.HealthCheckResponse.SERVING)


# --- jobs flowing alongside a fault -----------------------------------------


class JobFlow:
    """Submits a small backtest every `interval_seconds` from a thread of its
    own, so that each fault strikes while other jobs come and go."""

    def __init__(
        self,
        gateway_address: str,
        *,
        instrument_prefix: str = "SYN-FLOW",
        interval_seconds: float = 0.25,
    ) -> None:
        self._gateway_address = gateway_address
        self._prefix = instrument_prefix
        self._interval_seconds = interval_seconds
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._submit, daemon=True)
        self._error: BaseException | None = None
        self.backtest_ids: list[int] = []

    def __enter__(self) -> JobFlow:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            self.stop()
        else:
            # Keep the test's own failure in front; just stop submitting.
            self._stopping.set()
            self._thread.join(timeout=30)

    def stop(self) -> list[int]:
        """Stop submitting; the ids of every backtest submitted."""
        self._stopping.set()
        self._thread.join(timeout=30)
        if self._error is not None:
            raise AssertionError(f"submitting the flow failed: {self._error!r}")
        return list(self.backtest_ids)

    def _submit(self) -> None:
        try:
            with GatewayClient(self._gateway_address, owner=OWNER) as client:
                index = 0
                while not self._stopping.wait(self._interval_seconds):
                    spec = small_spec(f"{self._prefix}{index % 3}", index)
                    self.backtest_ids.append(client.submit(spec).id)
                    index += 1
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self._error = exc

    def assert_all_succeeded(
        self, client: GatewayClient, *, timeout_seconds: float = 60
    ) -> dict[int, api.Backtest]:
        """Stop, then wait for every flow backtest; each must have succeeded."""
        ids = self.stop()
        assert ids, "the flow submitted nothing while the fault struck"
        finished = wait_until_finished(client, ids, timeout_seconds=timeout_seconds)
        failed = [
            backtest_line(b)
            for b in finished.values()
            if b.state != STATE.STATE_SUCCEEDED
        ]
        assert not failed, f"flow backtests that did not succeed: {failed}"
        return finished


# --- a TCP link the test controls -------------------------------------------


@dataclass(eq=False)
class _Link:
    """The two sockets of one proxied connection and the task pumping them."""

    task: asyncio.Task[None]
    writers: list[asyncio.StreamWriter] = field(default_factory=list)


class TcpProxy:
    """Forwards TCP connections to `target` and lets a test break the link.

    - `cut()`: every connection is closed and new ones are reset, as when a
      host or a middlebox drops its connection state;
    - `blackhole()`: bytes stop flowing, in one direction or both, while the
      connections stay open; they are held, not lost, as TCP retransmits
      them once a partition heals;
    - `heal()`: connections are accepted and bytes flow again.

    It runs an asyncio loop in a thread of its own, so the test's thread can
    drive it between blocking calls.
    """

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self._target = (host, int(port))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._refusing = False
        # Set while bytes may flow: towards the target, and back.
        self._upstream_open: asyncio.Event | None = None
        self._downstream_open: asyncio.Event | None = None
        self.address = ""
        self.n_accepted = 0

    def start(self) -> str:
        self._thread.start()
        self._run(self._listen())
        return self.address

    def cut(self) -> None:
        self._run(self._cut())

    def blackhole(self, *, upstream: bool = True, downstream: bool = True) -> None:
        """Hold the bytes sent towards the target (`upstream`) and back."""
        self._run(self._set_gates(upstream=not upstream, downstream=not downstream))

    def heal(self) -> None:
        self._run(self._heal())

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self._run(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def _run(self, work: Any) -> None:
        asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout=10)

    async def _listen(self) -> None:
        self._upstream_open = asyncio.Event()
        self._downstream_open = asyncio.Event()
        self._upstream_open.set()
        self._downstream_open.set()
        self._server = await asyncio.start_server(self._on_connection, HOST, 0)
        port = self._server.sockets[0].getsockname()[1]
        self.address = f"{HOST}:{port}"

    async def _set_gates(self, *, upstream: bool, downstream: bool) -> None:
        assert self._upstream_open is not None and self._downstream_open is not None
        for gate, is_open in (
            (self._upstream_open, upstream),
            (self._downstream_open, downstream),
        ):
            if is_open:
                gate.set()
            else:
                gate.clear()

    async def _cut(self) -> None:
        self._refusing = True
        for link in list(self._links):
            link.task.cancel()
        await asyncio.gather(
            *(link.task for link in list(self._links)), return_exceptions=True
        )

    async def _heal(self) -> None:
        self._refusing = False
        await self._set_gates(upstream=True, downstream=True)

    async def _close(self) -> None:
        await self._cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self._refusing:
            _reset(writer)
            return
        self.n_accepted += 1
        task = asyncio.current_task()
        assert task is not None
        link = _Link(task, [writer])
        self._links.add(link)
        try:
            target_reader, target_writer = await asyncio.open_connection(*self._target)
            link.writers.append(target_writer)
            assert self._upstream_open is not None
            assert self._downstream_open is not None
            await asyncio.gather(
                _pump(reader, target_writer, self._upstream_open),
                _pump(target_reader, writer, self._downstream_open),
            )
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for each in link.writers:
                _reset(each)
            self._links.discard(link)


async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, gate: asyncio.Event
) -> None:
    try:
        while data := await reader.read(65_536):
            # Holding the chunk also stops reading, so the sender's kernel
            # buffers fill up and it sees what a stalled network looks like.
            await gate.wait()
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        # One side ended: end the other, as a host that closes does.
        writer.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    # Linger 0 makes close send RST, as a connection the peer no longer knows.
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
    writer.transport.abort()


# --- a worker stranded past its leases --------------------------------------

# Worker A's slots hold both attempts: the result of SYN-LATE comes out while
# A is cut off, and SYN-HOLD is still running when A is back. Worker B holds
# its own attempt of SYN-LATE a while, so A's late result can land while B's
# lease is the current one.
LATE_HOLD_SECONDS = 2.0
STRANDED_FAULTS = (
    f"attempt.finish@SYN-LATE=sleep({LATE_HOLD_SECONDS:g});"
    "attempt.finish@SYN-HOLD=sleep(60)"
)
TAKEOVER_FAULTS = "attempt.finish@SYN-LATE=sleep(3)"
# Above the flow's, so that B runs the taken-over attempts first.
STRANDED_PRIORITY = 5


@dataclass(frozen=True)
class StrandedJobs:
    """The two jobs a stranded worker held, and the workers involved."""

    late: int
    held: int
    stranded: ServiceProcess
    successor: ServiceProcess


def strand_worker(
    fleet: Fleet,
    client: GatewayClient,
    *,
    isolate: Callable[[ServiceProcess], None],
    restore: Callable[[ServiceProcess], None],
    scheduler_address: str | None = None,
) -> StrandedJobs:
    """Cut worker A off (`isolate`) while it runs two attempts, until worker
    B holds both jobs under new leases; then let A back in (`restore`) and
    wait until both jobs and a flow of small jobs have finished."""
    worker_a = fleet.add_worker(
        "worker-a",
        n_slots=2,
        faults=STRANDED_FAULTS,
        scheduler_address=scheduler_address,
    )
    late, held = [
        client.submit(small_spec(name), priority=STRANDED_PRIORITY).id
        for name in ("SYN-LATE", "SYN-HOLD")
    ]
    # Starts while A takes the jobs; it connects only after A holds them.
    worker_b = fleet.add_worker(
        "worker-b", n_slots=2, faults=TAKEOVER_FAULTS, wait=False
    )
    with JobFlow(fleet.platform.gateway_address) as flow:
        # Progress means the engine is running in A's slots, so the late
        # result comes out one hold later whatever A's state.
        for job_id in (late, held):
            wait_for_progress(client, job_id)
        isolate(worker_a)
        isolated_at = time.monotonic()
        try:
            fleet.wait_connected(worker_b)
            for job_id in (late, held):
                wait_leased_again(fleet.database_url, job_id, worker_b.name)
            # A must meet its late result when it is back, not be told of
            # the lost lease first; the margin covers a slow, loaded slot.
            ready_at = isolated_at + LATE_HOLD_SECONDS + 2.0
            time.sleep(max(0.0, ready_at - time.monotonic()))
        finally:
            restore(worker_a)
        wait_until_finished(client, [late, held], timeout_seconds=60)
        flow.assert_all_succeeded(client)
    return StrandedJobs(late, held, worker_a, worker_b)


def wait_for_progress(client: GatewayClient, job_id: int) -> None:
    """Wait until the scheduler has heard of progress of the job's attempt."""
    wait_for(
        lambda: client.get_status(job_id).progress > 0,
        timeout_seconds=30,
        what=f"progress of job {job_id}",
    )


def wait_leased_again(database_url: str, job_id: int, worker: str) -> None:
    """Wait until `worker` has claimed the job's second attempt (it may have
    finished it already: a warm slot needs milliseconds)."""

    def leased() -> bool:
        return any(
            (a.attempt, a.worker) == (2, worker)
            for a in attempts_of(database_url, job_id)
        )

    wait_for(
        leased,
        timeout_seconds=30,
        what=f"a second lease of job {job_id}, held by {worker}",
    )


def assert_new_holder_result_kept(fleet: Fleet, jobs: StrandedJobs) -> None:
    """Both jobs succeeded under B's lease; A's late reports were refused."""
    a, b = jobs.stranded.name, jobs.successor.name
    for job_id in (jobs.late, jobs.held):
        row = job_row(fleet.database_url, job_id)
        assert (row.state, row.has_result) == ("succeeded", True), row
        summary = [
            (x.attempt, x.worker, x.outcome)
            for x in attempts_of(fleet.database_url, job_id)
        ]
        assert summary == [(1, a, "expired"), (2, b, "succeeded")], summary

    # A computed the late result under its old lease and reported it: the
    # scheduler refused it by the fencing token. After a cut, A's report
    # retries wait out a backoff, so the refusal may come after B finished.
    late_1 = {"job_id": jobs.late, "fencing_token": 1}
    wait_for_event(jobs.stranded, "attempt_succeeded", **late_1)
    wait_for_event(jobs.stranded, "report_lease_lost", **late_1)
    assert log_events(fleet.scheduler, "report_rejected", worker=a, **late_1)
    assert not log_events(fleet.scheduler, "attempt_recorded", worker=a, **late_1)

    # A came back still running the other attempt and reported its progress
    # under the old lease: the renewal matched nothing, and A was told to
    # drop the attempt.
    held_1 = {"job_id": jobs.held, "fencing_token": 1}
    wait_for_event(jobs.stranded, "attempt_lease_lost", **held_1)
    assert log_events(fleet.scheduler, "lease_lost", worker=a, **held_1)

    # Nothing A sent late changed the jobs.
    for job_id in (jobs.late, jobs.held):
        row = job_row(fleet.database_url, job_id)
        assert (row.state, row.fencing_token) == ("succeeded", 2), row
