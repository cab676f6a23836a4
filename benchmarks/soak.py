"""Soak the platform: thousands of backtests while workers and the scheduler
are killed, frozen and restarted at random, then an audit of the database.

Starts PostgreSQL (embedded unless a server is named), a fresh database, the
gateway, the scheduler and the workers as processes with short leases. It
submits the jobs (a day of synthetic 5m candles each) from several threads,
retrying UNAVAILABLE with the same request id, while a chaos loop injects a
fault every few seconds. Once every job has ended, or the time is up, it
checks from the database alone that no job was lost, none succeeded twice,
none is stuck in RUNNING without a live lease and every attempt was counted.
The last line holds the figures; the exit code is 1 when a check failed.

    python benchmarks/soak.py [--jobs N] [--seed N] [--fault-every SECONDS]
                              [--database-url URL] ...     (see --help)
    make soak JOBS=5000

The test suite imports `run_soak` from this file for a shorter run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import secrets
import shutil
import signal
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import grpc
import psycopg
from grpc_health.v1 import health_pb2
from psycopg import sql

from backcast.cli.client import GatewayClient, check_health
from backcast.cli.platform import Platform, PlatformOptions, ServiceProcess
from backcast.engine.spec import BacktestSpec, Interval, StrategySpec
from backcast.rpc.translate import spec_to_proto
from backcast.v1 import spec_pb2

SERVER_URL_VARS = ("BACKCAST_TEST_DATABASE_URL", "BACKCAST_DATABASE_URL")
OWNER = "soak"
# The most the gateway allows: a job must survive several of its workers'
# deaths in a row before it may end FAILED with WORKER_LOST.
MAX_ATTEMPTS = 10
UNFINISHED = ("queued", "running", "cancelling")
# Short leases, so a lost worker's jobs run again within about two seconds.
LEASE_SECONDS = 2.0
SERVICE_ENV = {
    "BACKCAST_SCHEDULER_LEASE_SECONDS": str(LEASE_SECONDS),
    "BACKCAST_SCHEDULER_HEARTBEAT_SECONDS": "0.3",
    "BACKCAST_SCHEDULER_POLL_SECONDS": "0.5",
}
# Codes a repeated submit with the same request id can safely ride out.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
SUBMIT_THREADS = 8
PROGRESS_EVERY_SECONDS = 5.0
# Pace of the chaos loop: how often it looks at the jobs and the services.
STEP_SECONDS = 0.2

KILL_WORKER = "kill_worker"
KILL_SCHEDULER = "kill_scheduler"
FREEZE_WORKER = "freeze_worker"


@dataclass(frozen=True)
class SoakOptions:
    """The size of a soak and the pace of its faults."""

    n_jobs: int = 5000
    n_workers: int = 2
    slots_per_worker: int = 1
    seed: int = 0
    # Jobs submitted per second; None submits them as fast as the gateway
    # takes them. A steady rate makes the soak last a known time, however
    # fast the machine runs the jobs.
    submit_rate: float | None = None
    # Mean seconds between faults; each gap is drawn from [0.5, 1.5] times it.
    fault_every_seconds: float = 4.0
    # Whether SIGSTOP/SIGCONT of a worker is among the faults.
    freeze: bool = True
    # Services down or frozen at once. More than one lets outages overlap
    # (the scheduler dies while a worker is starting), but on a slow machine
    # restarts then take most of the time and the jobs crawl.
    max_outages: int = 1
    # Seconds from the first submit until every job must have ended.
    timeout_seconds: float = 1800.0
    # Where service logs go; a temporary directory when None.
    log_dir: Path | None = None
    # Progress lines on stderr while the soak runs.
    verbose: bool = False


@dataclass
class Fault:
    """One injected fault: when (seconds into the soak), what and to whom."""

    at_seconds: float
    kind: str
    victim: str
    # How long the victim was dead or frozen before its restart or thaw.
    pause_seconds: float
    # From the fault until the victim served again; None while it is down.
    down_seconds: float | None = None

    def describe(self) -> str:
        text = f"{self.at_seconds:.1f} s: {self.kind} {self.victim}"
        text += f", paused {self.pause_seconds:.1f} s"
        if self.down_seconds is not None:
            text += f", down {self.down_seconds:.1f} s"
        return text


@dataclass(frozen=True)
class Audit:
    """What the database says about the soak's jobs once they have ended.

    Every count is of jobs. `lost`: requested and missing, unfinished, or
    succeeded without a result. `duplicated`: extra jobs for one request,
    more than one succeeded attempt, or a result kept for a job that did not
    succeed. `stuck`: running or cancelling without a live lease.
    `miscounted`: the job's attempt count differs from its attempt records,
    or an ended job still has an attempt marked running; None when the
    database keeps no attempt records.
    """

    lost: int
    duplicated: int
    stuck: int
    miscounted: int | None
    states: dict[str, int]
    n_attempts: int
    n_retried: int
    error_reasons: dict[str, int]


@dataclass(frozen=True)
class SoakReport:
    """The figures of one soak."""

    n_jobs: int
    faults: list[Fault]
    audit: Audit
    seconds: float
    # Services that ended without being killed, by name.
    crashes: list[str] = field(default_factory=list)
    # Submits refused for good, by status code; their jobs count as lost.
    refused: dict[str, int] = field(default_factory=dict)
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        audit = self.audit
        problems = audit.lost + audit.duplicated + audit.stuck
        return problems == 0 and not audit.miscounted

    def summary(self) -> str:
        """The figures as one line of key=value pairs."""
        audit = self.audit
        return (
            f"jobs={self.n_jobs} faults={len(self.faults)} lost={audit.lost} "
            f"duplicated={audit.duplicated} stuck={audit.stuck} "
            f"seconds={self.seconds:.1f}"
        )

    def details(self) -> list[str]:
        """A few lines on the faults, the outcomes and the attempts."""
        audit = self.audit
        kinds = Counter(fault.kind for fault in self.faults)
        states = ", ".join(f"{n} {state}" for state, n in sorted(audit.states.items()))
        lines = [
            "faults: "
            + (", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())) or "none"),
            f"jobs: {states or 'none'}",
            f"attempts: {audit.n_attempts} in all; "
            f"{audit.n_retried} jobs ran more than once",
        ]
        if audit.error_reasons:
            reasons = ", ".join(f"{n} {r}" for r, n in audit.error_reasons.items())
            lines.append(f"errors: {reasons}")
        if audit.miscounted is None:
            lines.append("attempt records: none in this schema; not checked")
        else:
            lines.append(f"attempt records: {audit.miscounted} jobs miscounted")
        if self.refused:
            codes = ", ".join(f"{n} {code}" for code, n in self.refused.items())
            lines.append(f"submits refused: {codes}")
        if self.crashes:
            lines.append(f"unplanned exits: {', '.join(self.crashes)}")
        if self.timed_out:
            lines.append("timed out before every job ended")
        return lines


def run_soak(options: SoakOptions, server_url: str | None = None) -> SoakReport:
    """Run one soak on a fresh database of `server_url` and audit it.

    With no `server_url`, an embedded PostgreSQL in a temporary directory
    holds the database. The database is dropped afterwards; the service logs
    stay in `options.log_dir` when one is given.
    """
    with contextlib.ExitStack() as stack:
        if server_url is None:
            server_url = stack.enter_context(embedded_server())
        database_url = stack.enter_context(fresh_database(server_url))
        log_dir = options.log_dir
        if log_dir is None:
            log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))

        platform = Platform(platform_options(options, database_url, log_dir))
        platform.start()
        stack.callback(platform.stop)
        return Soak(options, platform, database_url).run()


class Soak:
    """Submits the jobs from a pool of threads while the calling thread
    injects faults, then audits the database."""

    def __init__(
        self, options: SoakOptions, platform: Platform, database_url: str
    ) -> None:
        self.options = options
        self.platform = platform
        self.database_url = database_url
        self.request_ids = [
            f"soak-{options.seed}-{index}" for index in range(options.n_jobs)
        ]

    def run(self) -> SoakReport:
        started = time.monotonic()
        deadline = started + self.options.timeout_seconds
        chaos = Chaos(self.platform, self.options, started)
        with (
            GatewayClient(self.platform.gateway_address, owner=OWNER) as client,
            ThreadPoolExecutor(SUBMIT_THREADS) as pool,
        ):
            submits = [
                pool.submit(
                    self._submit_one,
                    client,
                    index,
                    started + self._due(index),
                    deadline,
                )
                for index in range(self.options.n_jobs)
            ]
            try:
                timed_out = self._run_chaos(chaos, submits, deadline)
            finally:
                chaos.thaw_all()
            seconds = time.monotonic() - started
            pool.shutdown(cancel_futures=True)
        refused = Counter(
            code.name
            for submit in submits
            if submit.done() and not submit.cancelled()
            if (code := submit.result()) is not None
        )

        return SoakReport(
            n_jobs=self.options.n_jobs,
            faults=chaos.faults,
            audit=audit_jobs(self.database_url, self.request_ids),
            seconds=seconds,
            crashes=chaos.crashes,
            refused=dict(refused),
            timed_out=timed_out,
        )

    def _run_chaos(
        self,
        chaos: Chaos,
        submits: Sequence[Future[grpc.StatusCode | None]],
        deadline: float,
    ) -> bool:
        """Step the chaos until every job has ended; True if time ran out."""
        next_progress = time.monotonic() + PROGRESS_EVERY_SECONDS
        while True:
            n_submitted = sum(submit.done() for submit in submits)
            unfinished = count_unfinished(self.database_url)
            if n_submitted == len(submits) and unfinished == 0:
                return False

            now = time.monotonic()
            if now > deadline:
                return True
            chaos.step(now)
            if self.options.verbose and now >= next_progress:
                print(
                    f"soak: {now - chaos.started:.0f} s, {n_submitted} submitted, "
                    f"{unfinished} unfinished, {len(chaos.faults)} faults",
                    file=sys.stderr,
                    flush=True,
                )
                next_progress = now + PROGRESS_EVERY_SECONDS
            time.sleep(STEP_SECONDS)

    def _due(self, index: int) -> float:
        """Seconds into the soak when job `index` is submitted."""
        rate = self.options.submit_rate
        return 0.0 if rate is None else index / rate

    def _submit_one(
        self, client: GatewayClient, index: int, due_at: float, deadline: float
    ) -> grpc.StatusCode | None:
        """Submit job `index` until it is accepted; the code that refused it."""
        time.sleep(max(0.0, min(due_at, deadline) - time.monotonic()))
        spec = soak_spec(index)
        request_id = self.request_ids[index]
        pause = 0.1
        while True:
            try:
                client.submit(spec, max_attempts=MAX_ATTEMPTS, request_id=request_id)
                return None
            except grpc.RpcError as error:
                code = error.code()
                if code not in RETRYABLE or time.monotonic() > deadline:
                    return code
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


@dataclass
class Outage:
    """A service the chaos has taken down, and when it comes back."""

    service: ServiceProcess
    fault: Fault
    began_at: float
    # When a killed service starts again or a frozen one resumes.
    until: float
    frozen: bool
    restarted: bool = False


class Chaos:
    """Kills and freezes services at random and brings them back.

    `step` never waits for a service, so the loop keeps its pace while one
    starts. It must run on the thread that started the platform, which is
    what `Platform` asks of whoever restarts a service.
    """

    def __init__(self, platform: Platform, options: SoakOptions, started: float):
        self.platform = platform
        self.options = options
        self.started = started
        self.rng = random.Random(options.seed)
        self.faults: list[Fault] = []
        # Services that ended without being killed, with their exit codes.
        self.crashes: list[str] = []
        self._outages: dict[str, Outage] = {}
        self._round: list[str] = []
        self._n_starts: Counter[str] = Counter()
        self._next_fault_at = started + self._gap()

    def step(self, now: float) -> None:
        self._end_outages(now)
        self._restart_crashed()
        room = len(self._outages) < self.options.max_outages
        if room and now >= self._next_fault_at:
            self._inject(now)
            self._next_fault_at = now + self._gap()

    def thaw_all(self) -> None:
        """Resume every frozen service, so that it can be stopped cleanly."""
        for outage in list(self._outages.values()):
            if outage.frozen:
                thaw(outage.service)
                del self._outages[outage.service.name]

    def _gap(self) -> float:
        return self.options.fault_every_seconds * self.rng.uniform(0.5, 1.5)

    def _inject(self, now: float) -> None:
        kind = self._next_kind()
        victims = self._candidates(kind)
        if not victims:
            # Everyone it could hit is already down; try it next time.
            self._round.append(kind)
            return
        victim = self.rng.choice(victims)

        if kind == FREEZE_WORKER:
            # Past the lease about half the time: the job is then leased
            # again and the thawed worker's late reports must be refused.
            pause = self.rng.uniform(0.2, 2 * LEASE_SECONDS)
            os.killpg(victim.pid, signal.SIGSTOP)
        else:
            pause = self.rng.uniform(0.1, 1.0)
            victim.kill_group()
        fault = Fault(now - self.started, kind, victim.name, pause)
        self.faults.append(fault)
        self._outages[victim.name] = Outage(
            victim, fault, now, now + pause, frozen=kind == FREEZE_WORKER
        )

    def _next_kind(self) -> str:
        # Faults come in rounds, each kind once per round in a random order,
        # so that even a short soak meets every kind.
        if not self._round:
            self._round = [KILL_WORKER, KILL_SCHEDULER]
            if self.options.freeze:
                self._round.append(FREEZE_WORKER)
            self.rng.shuffle(self._round)
        return self._round.pop()

    def _candidates(self, kind: str) -> list[ServiceProcess]:
        if kind == KILL_SCHEDULER:
            assert self.platform.scheduler is not None
            services = [self.platform.scheduler]
        else:
            services = self.platform.workers
        return [s for s in services if s.name not in self._outages]

    def _end_outages(self, now: float) -> None:
        for outage in list(self._outages.values()):
            service = outage.service
            if now < outage.until:
                continue
            if outage.frozen:
                thaw(service)
                self._recovered(outage, now)
            elif not outage.restarted:
                self._start(service)
                outage.restarted = True
            elif service.returncode() is not None:
                self.crashes.append(f"{service.name} (code {service.returncode()})")
                self._start(service)
            elif is_serving(service.address):
                self._recovered(outage, now)

    def _recovered(self, outage: Outage, now: float) -> None:
        outage.fault.down_seconds = now - outage.began_at
        del self._outages[outage.service.name]
        if len(self._outages) == self.options.max_outages - 1:
            # A full gap of calm after the outage that made room.
            self._next_fault_at = max(self._next_fault_at, now + self._gap())
        if self.options.verbose:
            print(f"soak: {outage.fault.describe()}", file=sys.stderr, flush=True)

    def _restart_crashed(self) -> None:
        for service in self.platform.services:
            if service.name in self._outages or service.returncode() is None:
                continue
            self.crashes.append(f"{service.name} (code {service.returncode()})")
            self._start(service)

    def _start(self, service: ServiceProcess) -> None:
        # A log of its own per start: starting again would otherwise
        # truncate the log of the life that ended, which explains it.
        self._n_starts[service.name] += 1
        if service.log_path is not None:
            number = self._n_starts[service.name]
            service.log_path = service.log_path.with_name(
                f"{service.name}.{number}.log"
            )
        service.close_log()
        service.start()


def thaw(service: ServiceProcess) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(service.pid, signal.SIGCONT)


def is_serving(address: str) -> bool:
    try:
        status = check_health(address, timeout_seconds=0.2)
    except grpc.RpcError:
        return False
    return bool(status == health_pb2.HealthCheckResponse.SERVING)


def soak_spec(index: int) -> spec_pb2.BacktestSpec:
    """A day of 5m candles (288), its market and parameters varied by `index`."""
    start = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=index % 365)
    spec = BacktestSpec(
        strategy=StrategySpec(
            "moving_average_crossover",
            {
                "fast_period": 3 + index % 7,
                "slow_period": 20 + index % 30,
                "kind": "exponential" if index % 2 else "simple",
            },
        ),
        instrument=f"SYN-SOAK{index % 8}",
        interval=Interval.FIVE_MINUTES,
        start_at=start,
        end_at=start + timedelta(days=1),
    )
    return spec_to_proto(spec)


# --- the database -------------------------------------------------------------


def count_unfinished(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM jobs WHERE state = ANY(%s)", (list(UNFINISHED),)
        ).fetchone()
    assert row is not None
    return int(row[0])


# Each requested job, found by its request id, beside its result. A request
# id with no job gives a row of NULLs, which is how a lost submit shows.
JOB_FIGURES = """
WITH requested AS (
    SELECT unnest(%(request_ids)s::text[]) AS request_id
)
SELECT
    count(*) FILTER (WHERE j.id IS NULL) AS missing,
    count(*) FILTER (WHERE j.state = ANY(%(unfinished)s)) AS unfinished,
    count(*) FILTER (
        WHERE j.state = 'succeeded' AND r.job_id IS NULL) AS without_result,
    count(*) FILTER (
        WHERE j.state <> 'succeeded' AND r.job_id IS NOT NULL) AS stray_result,
    count(*) FILTER (
        WHERE j.state IN ('running', 'cancelling')
          AND NOT coalesce(j.lease_expires_at > now(), false)) AS stuck,
    coalesce(sum(j.attempt), 0) AS n_attempts,
    count(*) FILTER (WHERE j.attempt > 1) AS n_retried
FROM requested AS q
LEFT JOIN jobs AS j ON j.owner = %(owner)s AND j.request_id = q.request_id
LEFT JOIN results AS r ON r.job_id = j.id
"""

# Attempt records beside the count on each job: as many rows as claims, at
# most one success, and none left running once the job has ended.
ATTEMPT_FIGURES = """
SELECT
    count(*) FILTER (WHERE a.n_succeeded > 1) AS succeeded_twice,
    count(*) FILTER (
        WHERE a.n_rows <> j.attempt
           OR a.n_numbers <> j.attempt
           OR (j.state = 'succeeded' AND a.n_succeeded <> 1)
           OR (j.state <> ALL(%(unfinished)s) AND a.n_running > 0)) AS miscounted
FROM jobs AS j
CROSS JOIN LATERAL (
    SELECT count(*) AS n_rows,
           count(DISTINCT attempt) AS n_numbers,
           count(*) FILTER (WHERE outcome = 'succeeded') AS n_succeeded,
           count(*) FILTER (WHERE outcome = 'running') AS n_running
    FROM attempts
    WHERE job_id = j.id
) AS a
WHERE j.owner = %(owner)s
"""


def audit_jobs(database_url: str, request_ids: Sequence[str]) -> Audit:
    """Check the soak's jobs from the database alone."""
    params = {
        "request_ids": list(request_ids),
        "owner": OWNER,
        "unfinished": list(UNFINISHED),
    }
    with psycopg.connect(database_url, autocommit=True) as conn:
        figures = conn.execute(JOB_FIGURES, params).fetchone()
        assert figures is not None
        (missing, unfinished, without_result, stray_result, stuck) = figures[:5]
        n_attempts, n_retried = figures[5:]

        n_jobs = _scalar(conn, "SELECT count(*) FROM jobs WHERE owner = %s", OWNER)
        extra_jobs = n_jobs - (len(request_ids) - missing)
        states = dict(_rows(conn, "SELECT state, count(*) FROM jobs GROUP BY 1"))
        reasons = dict(
            _rows(
                conn,
                "SELECT error_reason, count(*) FROM jobs "
                "WHERE error_reason IS NOT NULL GROUP BY 1 ORDER BY 2 DESC",
            )
        )

        succeeded_twice = 0
        miscounted: int | None = None
        if _has_table(conn, "attempts"):
            attempts = conn.execute(ATTEMPT_FIGURES, params).fetchone()
            assert attempts is not None
            succeeded_twice, miscounted = attempts

    return Audit(
        lost=missing + unfinished + without_result,
        duplicated=extra_jobs + succeeded_twice + stray_result,
        stuck=stuck,
        miscounted=miscounted,
        states=states,
        n_attempts=int(n_attempts),
        n_retried=n_retried,
        error_reasons=reasons,
    )


def _scalar(conn: psycopg.Connection[tuple[int]], query: str, *args: object) -> int:
    row = conn.execute(query, args).fetchone()
    assert row is not None
    return int(row[0])


def _rows(
    conn: psycopg.Connection[tuple[str, int]], query: str
) -> list[tuple[str, int]]:
    return [(str(key), int(n)) for key, n in conn.execute(query).fetchall()]


def _has_table(conn: psycopg.Connection[tuple[object, ...]], name: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on `server_url`, dropped afterwards.

    The platform migrates it when it starts.
    """
    name = f"backcast_soak_{secrets.token_hex(6)}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunsplit(urlsplit(server_url)._replace(path="/" + name))
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name)
                )
            )


@contextlib.contextmanager
def embedded_server() -> Iterator[str]:
    """A PostgreSQL server of its own in a temporary directory."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; harmless here.
        warnings.simplefilter("ignore")
        from pgserver.postgres_server import get_server

        data_dir = tempfile.mkdtemp(prefix="backcast-soak-pg-")
        server = get_server(data_dir, cleanup_mode="stop")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)


def platform_options(
    options: SoakOptions, database_url: str, log_dir: Path
) -> PlatformOptions:
    return PlatformOptions(
        n_workers=options.n_workers,
        slots_per_worker=options.slots_per_worker,
        gateway_port=0,
        scheduler_port=0,
        data_dir=log_dir,
        log_dir=log_dir,
        database_url=database_url,
        extra_env=SERVICE_ENV,
        worker_id_prefix="soak-worker",
        stop_grace_seconds=5.0,
    )


# --- command line ---------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run backtests while services die at random, then audit "
        "the jobs in the database."
    )
    parser.add_argument(
        "--jobs", type=int, default=5000, metavar="N", help="jobs (default 5000)"
    )
    parser.add_argument(
        "--workers", type=int, default=2, metavar="N", help="workers (default 2)"
    )
    parser.add_argument(
        "--slots", type=int, default=1, metavar="N", help="slots each (default 1)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, metavar="N", help="chaos seed (default 0)"
    )
    parser.add_argument(
        "--rate",
        type=float,
        metavar="JOBS",
        help="jobs submitted per second (default: as fast as they are taken)",
    )
    parser.add_argument(
        "--fault-every",
        type=float,
        default=4.0,
        metavar="SECONDS",
        help="mean seconds between faults (default 4)",
    )
    parser.add_argument(
        "--no-freeze", action="store_true", help="leave out SIGSTOP/SIGCONT faults"
    )
    parser.add_argument(
        "--max-outages",
        type=int,
        default=1,
        metavar="N",
        help="services down or frozen at once (default 1)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="seconds for every job to end (default: 120 plus 0.3 a job)",
    )
    parser.add_argument(
        "--database-url",
        default=_server_url_from_env(),
        metavar="URL",
        help="PostgreSQL server to create the soak database on (default: "
        "BACKCAST_TEST_DATABASE_URL or BACKCAST_DATABASE_URL, else an embedded one)",
    )
    parser.add_argument(
        "--log-dir",
        type=Path,
        metavar="DIR",
        help="keep the service logs here (default: a temporary directory, "
        "kept only when a check fails)",
    )
    return parser.parse_args(argv)


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _server_url_from_env() -> str | None:
    return next((os.environ[v] for v in SERVER_URL_VARS if os.environ.get(v)), None)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the services stop and the soak's
    # database is dropped.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    # Kept when a check fails, to explain it.
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="backcast-soak-"))
    options = SoakOptions(
        n_jobs=args.jobs,
        n_workers=args.workers,
        slots_per_worker=args.slots,
        seed=args.seed,
        submit_rate=args.rate,
        fault_every_seconds=args.fault_every,
        freeze=not args.no_freeze,
        max_outages=args.max_outages,
        timeout_seconds=args.timeout or 120.0 + 0.3 * args.jobs,
        log_dir=log_dir,
        verbose=True,
    )
    print(
        f"soak: {options.n_jobs} jobs on {options.n_workers} workers x "
        f"{options.slots_per_worker} slots, a fault every "
        f"{options.fault_every_seconds:g} s on average (seed {options.seed})",
        flush=True,
    )
    report = run_soak(options, args.database_url)
    for line in report.details():
        print(line)
    if args.log_dir is not None or not report.ok:
        print(f"logs: {log_dir}")
    else:
        shutil.rmtree(log_dir, ignore_errors=True)
    print(report.summary(), flush=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
