"""Job flows, log reading, database peeks and a PostgreSQL server the test
can stop, shared by the fault tests of the gateway, the scheduler and the
database."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import grpc
import psycopg

from backcast.cli.client import OWNER_HEADER
from backcast.cli.platform import Platform, ServiceProcess
from backcast.engine.spec import BacktestSpec, Interval, StrategySpec
from backcast.rpc.translate import spec_to_proto
from backcast.v1 import backtest_service_pb2 as api
from backcast.v1 import backtest_service_pb2_grpc as api_grpc
from backcast.v1 import spec_pb2

T = TypeVar("T")

OWNER = "faults"
# The `start_platform` fixture: (database_url, env, *, n_workers,
# slots_per_worker, worker_id_prefix) -> a started Platform.
StartPlatform = Callable[..., Platform]
TERMINAL_STATES = ("succeeded", "failed", "cancelled")
# A client cannot know whether a call that ended so reached the database, so
# it sends the same request id again.
RETRY_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
)


def small_spec(index: int, instrument: str = "SYN-FLOW") -> spec_pb2.BacktestSpec:
    """Two days of 5m candles (576): a fraction of a second of one slot."""
    start = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=index % 20)
    spec = BacktestSpec(
        strategy=StrategySpec(
            "moving_average_crossover",
            {"fast_period": 3 + index % 5, "slow_period": 20, "kind": "simple"},
        ),
        instrument=instrument,
        interval=Interval.FIVE_MINUTES,
        start_at=start,
        end_at=start + timedelta(days=2),
    )
    return spec_to_proto(spec)


def wait_for(
    probe: Callable[[], T | None],
    *,
    timeout_seconds: float,
    what: str,
    poll_seconds: float = 0.05,
) -> T:
    """The first truthy value of `probe()`; fails after the timeout."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout_seconds:g} s waiting for {what}"
            )
        time.sleep(poll_seconds)


# --- talking to the gateway -------------------------------------------------


class Gateway:
    """Raw BacktestService calls for the owner "faults", without the channel
    retries of `GatewayClient`, so that a test sees every status."""

    def __init__(self, address: str, *, timeout_seconds: float = 5.0) -> None:
        self._channel = grpc.insecure_channel(
            address, options=[("grpc.enable_retries", 0)]
        )
        self._stub = api_grpc.BacktestServiceStub(self._channel)
        self._metadata = ((OWNER_HEADER, OWNER),)
        self.timeout_seconds = timeout_seconds

    def close(self) -> None:
        self._channel.close()

    def submit(
        self, spec: spec_pb2.BacktestSpec, request_id: str, *, max_attempts: int = 3
    ) -> api.Backtest:
        request = api.SubmitBacktestRequest(
            spec=spec, request_id=request_id, max_attempts=max_attempts
        )
        response = self._stub.SubmitBacktest(
            request, timeout=self.timeout_seconds, metadata=self._metadata
        )
        return response.backtest

    def get_status(self, backtest_id: int) -> api.Backtest:
        request = api.GetStatusRequest(backtest_id=backtest_id)
        response = self._stub.GetStatus(
            request, timeout=self.timeout_seconds, metadata=self._metadata
        )
        return response.backtest


@dataclass
class Submission:
    """One backtest a client asked for, and what became of its calls."""

    request_id: str
    spec: spec_pb2.BacktestSpec
    job_id: int | None = None
    # Status code names of the failed calls, in order.
    failures: list[str] = field(default_factory=list)


class SubmitFlow:
    """A client thread submitting small backtests at a steady pace.

    Each submission keeps its request id through every retry, as a careful
    client does, and is retried until the gateway accepts it.
    """

    def __init__(
        self,
        address: str,
        *,
        interval_seconds: float = 0.1,
        instrument: str = "SYN-FLOW",
        retry_seconds: float = 0.2,
    ) -> None:
        self._gateway = Gateway(address)
        self._interval_seconds = interval_seconds
        self._instrument = instrument
        self._retry_seconds = retry_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.submissions: list[Submission] = []
        # Status codes other than RETRY_CODES: each one is a failed promise.
        self.unexpected: list[tuple[str, str]] = []

    def __enter__(self) -> SubmitFlow:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self, timeout_seconds: float = 60.0) -> None:
        """Stop submitting once the submission under way is accepted."""
        self._stop.set()
        self._thread.join(timeout_seconds)
        self._gateway.close()
        assert not self._thread.is_alive(), "the submit flow did not stop"

    @property
    def job_ids(self) -> list[int]:
        return [s.job_id for s in self.submissions if s.job_id is not None]

    def wait_for_accepted(self, n: int, timeout_seconds: float = 30.0) -> None:
        wait_for(
            lambda: len(self.job_ids) >= n,
            timeout_seconds=timeout_seconds,
            what=f"{n} accepted submissions",
        )

    def _run(self) -> None:
        index = 0
        while not self._stop.is_set():
            submission = Submission(
                str(uuid.uuid4()), small_spec(index, self._instrument)
            )
            self.submissions.append(submission)
            self._submit_until_accepted(submission)
            index += 1
            self._stop.wait(self._interval_seconds)

    def _submit_until_accepted(self, submission: Submission) -> None:
        while True:
            try:
                backtest = self._gateway.submit(submission.spec, submission.request_id)
            except grpc.RpcError as error:
                code = error.code()
                submission.failures.append(code.name)
                if code not in RETRY_CODES:
                    self.unexpected.append((code.name, error.details() or ""))
                    return
                time.sleep(self._retry_seconds)
                continue
            submission.job_id = backtest.id
            return


# --- reading the database ---------------------------------------------------


@dataclass(frozen=True)
class JobRow:
    """What the jobs table says about one job."""

    id: int
    state: str
    attempt: int
    request_id: str | None
    error_message: str | None


def job_rows(database_url: str, job_ids: Iterable[int] | None = None) -> list[JobRow]:
    """The jobs `job_ids` (every job when None), by id."""
    query = "SELECT id, state, attempt, request_id, error_message FROM jobs"
    params: tuple[Any, ...] = ()
    if job_ids is not None:
        query += " WHERE id = ANY(%s)"
        params = (list(job_ids),)
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(query + " ORDER BY id", params).fetchall()
    return [JobRow(*row) for row in rows]


def wait_until_finished(
    database_url: str, job_ids: Sequence[int], *, timeout_seconds: float = 60.0
) -> list[JobRow]:
    """The jobs once every one of them is in a terminal state."""
    latest: list[JobRow] = []

    def finished() -> bool:
        latest[:] = job_rows(database_url, job_ids)
        return len(latest) == len(set(job_ids)) and all(
            row.state in TERMINAL_STATES for row in latest
        )

    try:
        wait_for(finished, timeout_seconds=timeout_seconds, what="jobs to finish")
    except AssertionError as error:
        open_rows = [r for r in latest if r.state not in TERMINAL_STATES]
        raise AssertionError(f"{error}; unfinished: {open_rows[:10]}") from None
    return latest


def terminate_backends(database_url: str) -> int:
    """End every other session on this test's database; returns how many."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return sum(1 for (ended,) in rows if ended)


# --- reading the services' logs ---------------------------------------------


def log_records(service: ServiceProcess) -> Iterator[dict[str, Any]]:
    """The JSON records a service wrote to its log file, oldest first."""
    assert service.log_path is not None, f"{service.name} logs to a terminal"
    with service.log_path.open(encoding="utf-8", errors="replace") as log:
        for line in log:
            if line.startswith("{"):
                yield json.loads(line)


def events_of(service: ServiceProcess, event: str) -> list[dict[str, Any]]:
    return [r for r in log_records(service) if r.get("event") == event]


@dataclass(frozen=True)
class WorkerAttempt:
    """One attempt as a worker's log tells it: received until it ended."""

    worker: str
    job_id: int
    fencing_token: int
    received_at: datetime
    ended_at: datetime | None


_ENDING_EVENTS = (
    "attempt_succeeded",
    "attempt_failed",
    "attempt_cancelled",
    "attempt_lease_lost",
)


def worker_attempts(workers: Iterable[ServiceProcess]) -> list[WorkerAttempt]:
    """Every attempt the workers received, with when it ended there."""
    attempts = []
    for worker in workers:
        received: dict[tuple[int, int], datetime] = {}
        ended: dict[tuple[int, int], datetime] = {}
        for record in log_records(worker):
            event = record.get("event")
            if event != "attempt_received" and event not in _ENDING_EVENTS:
                continue
            key = (int(record["job_id"]), int(record["fencing_token"]))
            at = datetime.fromisoformat(record["time"])
            if event == "attempt_received":
                received.setdefault(key, at)
            else:
                ended.setdefault(key, at)
        for (job_id, token), at in received.items():
            attempts.append(
                WorkerAttempt(
                    worker.name, job_id, token, at, ended.get((job_id, token))
                )
            )
    return attempts


def service_pids(platform: Platform) -> dict[str, int]:
    return {service.name: service.pid for service in platform.services}


# --- a PostgreSQL server to take down ---------------------------------------


class ControlledPostgres:
    """An embedded PostgreSQL (pgserver) that a test stops and starts again.

    It listens on a Unix socket only, whose path survives a restart, so the
    services' URL stays valid while the server is away.
    """

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self.url = ""
        self._server: Any = None
        self._socket_dir = ""

    def open(self) -> str:
        """Create and start the server; returns its URL."""
        from pgserver.postgres_server import get_server

        self._server = get_server(self.pgdata, cleanup_mode="stop")
        info = self._server.get_postmaster_info()
        self._socket_dir = str(info.socket_dir)
        self.url = str(self._server.get_uri())
        return self.url

    def stop(self) -> None:
        """Fast shutdown: sessions are ended, as when an operator stops it."""
        self._pg_ctl(["-w", "-m", "fast", "stop"])

    def start(self) -> None:
        # The same options pgserver starts it with: no TCP, the same socket.
        log = str(self.pgdata / "log")
        self._pg_ctl(
            ["-w", "-o", '-h ""', "-o", f"-k {self._socket_dir}", "-l", log, "start"]
        )

    def is_running(self) -> bool:
        try:
            with psycopg.connect(self.url, connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def close(self) -> None:
        if self._server is None:
            return
        # pgserver stops only the postmaster it started itself.
        if self.is_running():
            self.stop()
        self._server.cleanup()
        self._server = None

    def _pg_ctl(self, args: list[str]) -> None:
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

        pg_ctl(args, pgdata=self.pgdata, user=self._server.system_user, timeout=30)


def lease_expiry(database_url: str, job_id: int) -> datetime | None:
    """When the lease of a running job expires, from the jobs table."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT lease_expires_at FROM jobs WHERE id = %s AND state = 'running'",
            (job_id,),
        ).fetchone()
    return None if row is None else row[0]


def started_job_ids(workers: Iterable[ServiceProcess]) -> set[int]:
    """Jobs whose attempt a worker has handed to a slot."""
    return {
        int(record["job_id"])
        for worker in workers
        for record in events_of(worker, "attempt_started")
    }


@dataclass(frozen=True)
class AttemptRow:
    """One row of the attempts table: a claim of a job and how it ended."""

    job_id: int
    attempt: int
    worker: str
    outcome: str
    started_at: datetime
    finished_at: datetime | None


def attempt_rows(database_url: str) -> list[AttemptRow]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT job_id, attempt, worker, outcome, started_at, finished_at"
            " FROM attempts ORDER BY job_id, attempt"
        ).fetchall()
    return [AttemptRow(*row) for row in rows]


def overlapping_attempts(rows: Sequence[AttemptRow]) -> list[tuple[AttemptRow, ...]]:
    """Pairs of attempts of one job whose time spans overlap.

    An attempt spans its claim to its end; one not ended spans until now.
    Two of them overlapping would mean two workers held the job at once.
    """
    overlaps = []
    by_job: dict[int, list[AttemptRow]] = {}
    for row in rows:
        by_job.setdefault(row.job_id, []).append(row)
    for attempts in by_job.values():
        attempts.sort(key=lambda row: row.started_at)
        for earlier, later in zip(attempts, attempts[1:], strict=False):
            if earlier.finished_at is None or earlier.finished_at > later.started_at:
                overlaps.append((earlier, later))
    return overlaps
