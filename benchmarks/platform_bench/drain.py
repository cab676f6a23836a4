"""Drain: N tiny jobs already queued, released at once; jobs per second from
the release to the last SUCCEEDED, beside a raw SKIP LOCKED loop."""

from __future__ import annotations

from typing import Any

from platform_bench import baselines
from platform_bench.figures import Figure, Outcome, at_least
from platform_bench.harness import (
    BenchContext,
    CpuMeter,
    database_counters,
    finished_span_seconds,
    fresh_database,
    insert_queued_jobs,
    release_queued_jobs,
    running_platform,
    tiny_spec,
    wait_until_finished,
)

NAME = "drain"
FULL_JOBS = 20_000
QUICK_JOBS = 1_000
TARGET_JOBS_PER_SECOND = 20_000.0
WARM_UP_JOBS_PER_SLOT = 5
# Attempts the worker holds beyond its slots, as a worker for short
# backtests is set up (`--prefetch`): half of them are claimed at a time,
# and the raw loop claims (and completes) batches of the same size.
PREFETCH_PER_SLOT = 16


def run(ctx: BenchContext) -> Outcome:
    n_jobs = ctx.size_of(FULL_JOBS, QUICK_JOBS)
    figure = Figure(
        NAME,
        "jobs/s, release to last SUCCEEDED",
        "jobs/s",
        baseline="raw SKIP LOCKED batch claim + complete, a connection per core",
        target=at_least(TARGET_JOBS_PER_SECOND),
        note=f"{n_jobs:,} jobs of 48 candles; 1 worker, {ctx.n_cores} slots",
    )
    cpu_runs: list[dict[str, float]] = []
    with fresh_database(ctx.server_url) as url:
        prefetch = PREFETCH_PER_SLOT * ctx.n_cores
        with running_platform(
            ctx,
            url,
            n_workers=1,
            slots_per_worker=ctx.n_cores,
            extra_env={"BACKCAST_WORKER_PREFETCH": str(prefetch)},
            name=NAME,
        ) as platform:
            warm_up(url, platform, ctx.n_cores)
            for index in range(ctx.runs):
                rate, cpu = drain_rate(url, platform, n_jobs, owner=f"drain-{index}")
                figure.runs.append(rate)
                cpu_runs.append(cpu)
                figure.baseline_runs.append(
                    raw_drain_rate(ctx, url, n_jobs, owner=f"raw-{index}")
                )
    details: dict[str, Any] = {
        "n_jobs": n_jobs,
        "n_workers": 1,
        "slots_per_worker": ctx.n_cores,
        "prefetch": prefetch,
        # Per job: CPU seconds of each process, transactions, and
        # sequential scans of `jobs` with the rows they read.
        "cpu_seconds_per_job": [
            {part: seconds / n_jobs for part, seconds in cpu.items()}
            for cpu in cpu_runs
        ],
    }
    return Outcome([figure], details)


def drain_rate(
    url: str, platform: Any, n_jobs: int, *, owner: str
) -> tuple[float, dict[str, float]]:
    """Jobs per second for `n_jobs` released at once, and the CPU seconds
    each process spent on them."""
    insert_queued_jobs(url, n_jobs, owner=owner, spec=tiny_spec(), held=True)
    meter = CpuMeter(platform, url)
    meter.start()
    before = database_counters(url)
    released_at = release_queued_jobs(url, owner)
    wait_until_finished(url, owner, n_jobs, timeout_seconds=60 + n_jobs / 20)
    cpu = meter.stop()
    # Reported with the CPU: transactions and sequential scans of `jobs`
    # while the jobs drained (the wait's own reads, a few a second, too).
    after = database_counters(url)
    cpu.update({name: after[name] - before[name] for name in after})
    return n_jobs / finished_span_seconds(url, owner, released_at), cpu


def warm_up(url: str, platform: Any, n_slots: int) -> None:
    """Run a few jobs first: a fresh slot's first backtests import and
    compile what later ones find ready."""
    drain_rate(url, platform, WARM_UP_JOBS_PER_SLOT * n_slots, owner="warm-up")


def raw_drain_rate(ctx: BenchContext, url: str, n_jobs: int, *, owner: str) -> float:
    insert_queued_jobs(url, n_jobs, owner=owner, spec=tiny_spec(), held=True)
    return baselines.skip_locked_drain(
        url,
        owner,
        n_connections=ctx.n_cores,
        batch=PREFETCH_PER_SLOT * ctx.n_cores // 2,
    )
