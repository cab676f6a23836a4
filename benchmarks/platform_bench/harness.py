"""What every benchmark needs: a fresh database, the platform as processes,
jobs queued straight with SQL, waits on the database, and CPU accounting.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from backcast.cli.platform import Platform, PlatformOptions
from backcast.db import migrate
from backcast.engine.spec import BacktestSpec, Costs, Interval, StrategySpec

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
SERVER_URL_VARS = ("BACKCAST_BENCH_DATABASE_URL", "BACKCAST_TEST_DATABASE_URL")
DATABASE_PREFIX = "backcast_bench_"
MAX_ATTEMPTS = 3
# The scheduler's safety-net poll, short so that a job released with
# `release_queued_jobs` waits for no timer; NOTIFY wakes it otherwise.
PLATFORM_ENV = {"BACKCAST_SCHEDULER_POLL_SECONDS": "0.1"}
TINY_START = datetime(2024, 1, 1, tzinfo=UTC)
TINY_CANDLES = 48


@dataclass
class BenchContext:
    """Settings shared by every benchmark of one `bench.py` run."""

    server_url: str
    log_dir: Path
    runs: int
    quick: bool
    n_cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    log_level: str = "INFO"
    # Where services write cProfile statistics; None profiles nothing.
    profile_dir: Path | None = None
    # Overrides each benchmark's main size (jobs, calls, samples); None
    # keeps the full or quick size.
    size: int | None = None

    def size_of(self, full: int, quick: int) -> int:
        """The benchmark's main size in this run."""
        if self.size is not None:
            return self.size
        return quick if self.quick else full

    def runs_for(self, most: int) -> int:
        """Runs for a benchmark too slow to repeat more than `most` times."""
        return min(self.runs, most)


def server_url_from_env() -> str:
    for name in SERVER_URL_VARS:
        value = os.environ.get(name)
        if value:
            return value
    return DEFAULT_SERVER_URL


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, migrated `backcast_bench_<hex>` database, dropped afterwards."""
    name = DATABASE_PREFIX + secrets.token_hex(6)
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(server_url, name)
    try:
        migrate(url)
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name)
                )
            )


@contextlib.contextmanager
def running_platform(
    ctx: BenchContext,
    database_url: str,
    *,
    n_workers: int,
    slots_per_worker: int,
    extra_env: Mapping[str, str] | None = None,
    name: str = "platform",
) -> Iterator[Platform]:
    """Gateway, scheduler and workers as processes on `database_url`."""
    env = {**PLATFORM_ENV, **(extra_env or {})}
    if ctx.profile_dir is not None:
        env.update(profiling_env(ctx.profile_dir))
    options = PlatformOptions(
        n_workers=n_workers,
        slots_per_worker=slots_per_worker,
        gateway_port=0,
        scheduler_port=0,
        data_dir=ctx.log_dir,
        log_dir=ctx.log_dir / f"{name}-{secrets.token_hex(3)}",
        database_url=database_url,
        log_level=ctx.log_level,
        extra_env=env,
        worker_id_prefix=f"{name}-worker",
        start_timeout_seconds=120.0,
    )
    platform = Platform(options)
    platform.start()
    try:
        yield platform
    finally:
        platform.stop()


def profiling_env(profile_dir: Path) -> dict[str, str]:
    """Environment that makes each service profile itself into `profile_dir`
    (see profiling/sitecustomize.py)."""
    profile_dir.mkdir(parents=True, exist_ok=True)
    hook_dir = Path(__file__).parent / "profiling"
    path = os.pathsep.join(filter(None, [str(hook_dir), os.environ.get("PYTHONPATH")]))
    return {
        "PYTHONPATH": path,
        "BACKCAST_BENCH_PROFILE_DIR": str(profile_dir.resolve()),
    }


def connect(url: str) -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(url, autocommit=True)


def tiny_spec(index: int = 0, instrument: str = "SYN-BENCH") -> BacktestSpec:
    """The smallest real backtest: buy and hold over 48 synthetic 5m candles.

    Stands in for a no-op job: the platform's work per job is all there,
    the engine's is a fraction of a millisecond.
    """
    start = TINY_START + timedelta(days=index % 28)
    return BacktestSpec(
        strategy=StrategySpec("buy_and_hold", {}),
        instrument=instrument,
        interval=Interval.FIVE_MINUTES,
        start_at=start,
        end_at=start + timedelta(minutes=5 * TINY_CANDLES),
        costs=Costs(commission=0.001, slippage_bps=1.0),
    )


# Triggers off (session_replication_role = replica) skips the per-row
# pg_notify of the submit trigger: a bulk load should not wake listeners
# a hundred thousand times. Needs a superuser, as the bench server has.
_INSERT_QUEUED = """
INSERT INTO jobs (owner, spec, priority, max_attempts, run_after)
SELECT %(owner)s, %(spec)s, %(priority)s, %(max_attempts)s, %(run_after)s
FROM generate_series(1, %(n)s)
"""


def insert_queued_jobs(
    url: str,
    n: int,
    *,
    owner: str,
    spec: BacktestSpec,
    priority: int = 0,
    held: bool = False,
) -> None:
    """Queue `n` copies of `spec` for `owner` in one statement.

    `held` jobs wait (run_after = infinity) until `release_queued_jobs`.
    """
    params = {
        "owner": owner,
        "spec": Jsonb(spec.to_dict()),
        "priority": priority,
        "max_attempts": MAX_ATTEMPTS,
        "run_after": "infinity" if held else "-infinity",
        "n": n,
    }
    with connect(url) as conn, conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute(_INSERT_QUEUED, params)
    with connect(url) as conn:
        conn.execute("VACUUM ANALYZE jobs")


def release_queued_jobs(url: str, owner: str) -> datetime:
    """Make `owner`'s held jobs ready and wake the schedulers; returns the
    database time of the release."""
    with connect(url) as conn:
        with conn.transaction():
            row = conn.execute(
                "UPDATE jobs SET run_after = now() "
                "WHERE owner = %s AND state = 'queued' AND run_after = 'infinity' "
                "RETURNING now()",
                (owner,),
            ).fetchone()
            conn.execute("NOTIFY backcast_jobs_queued")
        assert row is not None, f"no held jobs of {owner}"
        released_at: datetime = row[0]
    return released_at


# Cheap to repeat every few milliseconds: the partial indexes of queued and
# leased jobs hold only unfinished ones. Counting an owner's finished jobs
# instead reads all of their row versions, tens of milliseconds of a core
# per poll once a run has churned through a few thousand jobs.
_UNFINISHED = """
SELECT EXISTS (SELECT 1 FROM jobs WHERE owner = %(owner)s AND state = 'queued')
    OR EXISTS (SELECT 1 FROM jobs
               WHERE owner = %(owner)s AND state IN ('running', 'cancelling'))
"""

_OUTCOMES = """
SELECT count(*) FILTER (WHERE state = 'succeeded'),
       count(*) FILTER (WHERE state IN ('failed', 'cancelled'))
FROM jobs WHERE owner = %(owner)s
"""


def wait_until_finished(
    url: str,
    owner: str,
    n: int,
    *,
    timeout_seconds: float,
    poll_seconds: float = 0.05,
) -> None:
    """Wait until none of `owner`'s jobs is unfinished, then check that `n`
    of them SUCCEEDED; fail on a FAILED or CANCELLED one."""
    deadline = time.monotonic() + timeout_seconds
    params = {"owner": owner}
    with connect(url) as conn:
        while conn.execute(_UNFINISHED, params, prepare=True).fetchone() == (True,):
            if time.monotonic() > deadline:
                raise BenchError(
                    f"jobs of {owner} still unfinished after {timeout_seconds:g} s"
                )
            time.sleep(poll_seconds)
        row = conn.execute(_OUTCOMES, params).fetchone()
    assert row is not None
    n_done, n_failed = row
    if n_failed:
        raise BenchError(f"{n_failed} jobs of {owner} failed")
    if n_done < n:
        raise BenchError(f"only {n_done} of {n} jobs of {owner} succeeded")


def finished_span_seconds(url: str, owner: str, since: datetime) -> float:
    """Seconds from `since` to the last of `owner`'s jobs to finish."""
    with connect(url) as conn:
        row = conn.execute(
            "SELECT extract(epoch FROM max(finished_at) - %s) FROM jobs "
            "WHERE owner = %s",
            (since, owner),
        ).fetchone()
    assert row is not None and row[0] is not None
    return float(row[0])


class BenchError(Exception):
    """A benchmark could not measure what it set out to."""


@dataclass
class CpuMeter:
    """CPU seconds used by the platform's processes and by PostgreSQL's
    backends on one database, between `start` and `stop`."""

    platform: Platform
    database_url: str
    _start: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        self._start = self.read()

    def stop(self) -> dict[str, float]:
        """CPU seconds per part since `start`: each service, and postgres."""
        end = self.read()
        return {name: end[name] - self._start.get(name, 0.0) for name in end}

    def read(self) -> dict[str, float]:
        seconds = {}
        for service in self.platform.services:
            total = session_cpu_seconds(service.pid)
            if service.module == "backcast.compute":
                # The worker's own process apart from its slot processes.
                main = process_cpu_seconds(service.pid)
                seconds[service.name] = main
                seconds[f"{service.name} slots"] = total - main
            else:
                seconds[service.name] = total
        seconds["postgres"] = sum(
            process_cpu_seconds(pid) for pid in backend_pids(self.database_url)
        )
        return seconds


_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int, *, with_children: bool = False) -> float:
    """User plus system CPU of one process (and of its reaped children)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # Fields after the command name, which may hold spaces: see proc(5).
    fields = text.rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    ticks = utime + stime + (cutime + cstime if with_children else 0)
    return ticks / _TICKS


def session_cpu_seconds(session_id: int) -> float:
    """CPU of every live process in a session: a service with its slots."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        if int(fields[3]) == session_id:
            total += process_cpu_seconds(int(entry.name), with_children=True)
    return total


def database_counters(database_url: str) -> dict[str, int]:
    """Cumulative counters of the database: transactions committed, and
    sequential scans of `jobs` with the rows they read (pg_stat_database,
    pg_stat_user_tables)."""
    with connect(database_url) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT d.xact_commit, t.seq_scan, t.seq_tup_read "
            "FROM pg_stat_database AS d, pg_stat_user_tables AS t "
            "WHERE d.datname = current_database() AND t.relname = 'jobs'"
        ).fetchone()
    assert row is not None
    return {
        "transactions": int(row[0]),
        "jobs_seq_scans": int(row[1]),
        "jobs_seq_rows_read": int(row[2]),
    }


def backend_pids(database_url: str) -> list[int]:
    with connect(database_url) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return [int(row[0]) for row in rows]
