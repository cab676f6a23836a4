"""History: claim latency and drain rate as finished jobs pile up (none,
1,000,000, 5,000,000), in one database that grows between the levels.

Finished jobs (and one attempt row each) are written straight with SQL;
their results rows are left out, since no queue statement reads them. The
claim is the scheduler's own statement (`statements.CLAIM_JOBS`, one job
per call) run from here while no scheduler runs, with synchronous_commit
off: the wait for the WAL flush is the same at any table size and, on a
busy disk, would drown the difference being measured. The drain goes
through the platform as in the drain benchmark, flushes included.
"""

from __future__ import annotations

import time
from typing import Any

from psycopg.types.json import Jsonb

from backcast.jobqueue import statements
from platform_bench import baselines
from platform_bench.drain import drain_rate, warm_up
from platform_bench.figures import (
    Figure,
    Outcome,
    at_least,
    at_most,
    median,
    percentile,
)
from platform_bench.harness import (
    BenchContext,
    connect,
    fresh_database,
    insert_queued_jobs,
    running_platform,
    tiny_spec,
)

NAME = "history"
# The levels are none, a fifth of the largest, and the largest.
FULL_LEVELS = (0, 1_000_000, 5_000_000)
QUICK_LEVELS = (0, 20_000, 100_000)
FULL_DRAIN_JOBS = 2_000
QUICK_DRAIN_JOBS = 200
N_CLAIMS = 300
N_CLAIM_JOBS = 1_000
# The largest level may cost this much more than the empty table.
TOLERANCE = 0.20
N_HISTORY_OWNERS = 1_000

_INSERT_FINISHED = """
WITH made AS (
    INSERT INTO jobs (owner, spec, priority, max_attempts, state, attempt,
                      fencing_token, progress, created_at, updated_at,
                      started_at, finished_at)
    SELECT 'history-' || (g %% %(n_owners)s), %(spec)s, 0, 3, 'succeeded', 1, 1,
           1, t, t + interval '2 seconds', t + interval '1 second',
           t + interval '2 seconds'
    FROM generate_series(1, %(n)s) AS g,
         LATERAL (SELECT now() - interval '10 days' + g * interval '10 ms') AS s(t)
    RETURNING id, started_at, finished_at
)
INSERT INTO attempts (job_id, attempt, worker, outcome, started_at, finished_at)
SELECT id, 1, 'history', 'succeeded', started_at, finished_at FROM made
"""


def run(ctx: BenchContext) -> Outcome:
    largest = ctx.size_of(FULL_LEVELS[-1], QUICK_LEVELS[-1])
    levels = (0, largest // 5, largest)
    n_drain = QUICK_DRAIN_JOBS if ctx.quick or ctx.size else FULL_DRAIN_JOBS
    claim_figures: dict[int, Figure] = {}
    drain_figures: dict[int, Figure] = {}
    details: dict[str, Any] = {"levels": list(levels), "n_drain_jobs": n_drain}
    # History days 0: the scheduler must not prune what was just written.
    env = {"BACKCAST_SCHEDULER_HISTORY_DAYS": "0"}

    with fresh_database(ctx.server_url) as url:
        n_written = 0
        for level in levels:
            started = time.monotonic()
            write_history(url, level - n_written)
            n_written = level
            details[f"write_seconds_{level}"] = round(time.monotonic() - started, 1)

            claim = claim_figures[level] = Figure(
                NAME,
                f"claim p50, {level:,} finished",
                "ms",
                baseline="raw single-job SKIP LOCKED claim",
            )
            for index in range(ctx.runs):
                samples = claim_latencies(url, f"claims-{level}-{index}")
                claim.runs.append(1000 * percentile(samples, 0.5))
                raw_owner = f"raw-claims-{level}-{index}"
                insert_queued_jobs(
                    url, N_CLAIM_JOBS, owner=raw_owner, spec=tiny_spec(), held=True
                )
                raw = baselines.claim_latencies(url, raw_owner, N_CLAIMS)
                claim.baseline_runs.append(1000 * percentile(raw, 0.5))
                _settle_leftovers(url)

            drain = drain_figures[level] = Figure(
                NAME, f"drain, {level:,} finished", "jobs/s"
            )
            with running_platform(
                ctx,
                url,
                n_workers=1,
                slots_per_worker=ctx.n_cores,
                extra_env=env,
                name=f"{NAME}-{level}",
            ) as platform:
                warm_up(url, platform, ctx.n_cores)
                for index in range(ctx.runs):
                    owner = f"drain-{level}-{index}"
                    rate, _ = drain_rate(url, platform, n_drain, owner=owner)
                    drain.runs.append(rate)

    empty, largest = levels[0], levels[-1]
    figures = [*claim_figures.values(), *drain_figures.values()]
    figures.append(
        _ratio(
            f"claim p50 ratio, {largest:,} / {empty:,}",
            claim_figures[largest],
            claim_figures[empty],
            at_most(1 + TOLERANCE),
        )
    )
    figures.append(
        _ratio(
            f"drain ratio, {largest:,} / {empty:,}",
            drain_figures[largest],
            drain_figures[empty],
            at_least(1 - TOLERANCE),
        )
    )
    return Outcome(figures, details)


def write_history(url: str, n: int) -> None:
    """Add `n` finished jobs, each with one attempt, then vacuum and analyze
    (as autovacuum would have, long before a table reached this size)."""
    if n <= 0:
        return
    params = {
        "n": n,
        "n_owners": N_HISTORY_OWNERS,
        "spec": Jsonb(tiny_spec().to_dict()),
    }
    with connect(url) as conn:
        with conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
            conn.execute(_INSERT_FINISHED, params)
        conn.execute("VACUUM ANALYZE jobs")
        conn.execute("VACUUM ANALYZE attempts")


def claim_latencies(url: str, owner: str) -> list[float]:
    """Seconds per claim of one job by the scheduler's statement."""
    insert_queued_jobs(url, N_CLAIM_JOBS, owner=owner, spec=tiny_spec())
    params = {"worker": "bench", "n": 1, "per_owner": 2, "lease_seconds": 30.0}
    samples = []
    with connect(url) as conn:
        conn.execute("SET synchronous_commit = off")
        for _ in range(N_CLAIMS):
            started = time.perf_counter()
            rows = conn.execute(statements.CLAIM_JOBS, params, prepare=True).fetchall()
            samples.append(time.perf_counter() - started)
            assert len(rows) == 1
    _settle_leftovers(url)
    return samples


def _settle_leftovers(url: str) -> None:
    # Claimed jobs end succeeded and unclaimed ones cancelled, so neither
    # is left for the next claim or for a scheduler to pick up.
    with connect(url) as conn:
        conn.execute(
            "UPDATE jobs SET state = CASE state WHEN 'running' THEN 'succeeded' "
            "ELSE 'cancelled' END, lease_holder = NULL, lease_expires_at = NULL, "
            "finished_at = now() WHERE state IN ('queued', 'running')"
        )
        conn.execute(
            "UPDATE attempts SET outcome = 'succeeded', finished_at = now() "
            "WHERE outcome = 'running'"
        )


def _ratio(name: str, numerator: Figure, denominator: Figure, target: Any) -> Figure:
    ratio = numerator.median / denominator.median
    figure = Figure(NAME, name, "", target=target)
    figure.runs.append(ratio)
    baseline_ratio = (
        median(numerator.baseline_runs) / median(denominator.baseline_runs)
        if numerator.baseline_runs
        else float("nan")
    )
    if numerator.baseline_runs:
        figure.baseline = "raw claim, same ratio"
        figure.baseline_runs.append(baseline_ratio)
    return figure
