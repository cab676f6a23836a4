"""Latency: with free slots, from the SubmitBacktest call to RUNNING (the
claim) and to SUCCEEDED, for a tiny backtest, one at a time; beside a raw
LISTEN/NOTIFY round trip on the same database.

Times come from one clock: the client's `time.time()` before the call, and
the database's `now()` of the claim and of the completion (same machine).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import psycopg

from backcast.cli.client import GatewayClient
from backcast.rpc.translate import spec_to_proto
from platform_bench import baselines
from platform_bench.figures import Figure, Outcome, at_most, percentile
from platform_bench.harness import (
    BenchContext,
    BenchError,
    connect,
    fresh_database,
    running_platform,
    tiny_spec,
)

NAME = "latency"
FULL_SAMPLES = 300
QUICK_SAMPLES = 30
# Pause between samples, so every submit finds the slots free and the
# worker's heartbeat after the last completion already sent.
PAUSE_SECONDS = 0.02
TARGET_P50_MS = 5.0
TARGET_P99_MS = 25.0
OWNER = "latency"

_TIMES = """
SELECT a.started_at, j.finished_at
FROM jobs AS j JOIN attempts AS a ON a.job_id = j.id AND a.attempt = 1
WHERE j.id = %s AND j.state = 'succeeded'
"""


def run(ctx: BenchContext) -> Outcome:
    n_samples = ctx.size_of(FULL_SAMPLES, QUICK_SAMPLES)
    raw = "raw LISTEN/NOTIFY round trip"
    figures = [
        Figure(
            NAME,
            "submit to RUNNING p50",
            "ms",
            baseline=raw,
            target=at_most(TARGET_P50_MS),
        ),
        Figure(
            NAME,
            "submit to RUNNING p99",
            "ms",
            baseline=raw,
            target=at_most(TARGET_P99_MS),
        ),
        Figure(NAME, "submit to SUCCEEDED p50", "ms", baseline=raw),
        Figure(NAME, "submit to SUCCEEDED p99", "ms", baseline=raw),
    ]
    with fresh_database(ctx.server_url) as url:
        with running_platform(
            ctx, url, n_workers=1, slots_per_worker=ctx.n_cores, name=NAME
        ) as platform:
            with GatewayClient(platform.gateway_address, owner=OWNER) as client:
                # The first backtests warm the slots (imports, compiled kernels).
                sample_latencies(client, url, 5)
                for _ in range(ctx.runs):
                    running, succeeded = sample_latencies(client, url, n_samples)
                    notify = baselines.notify_round_trips(url, n_samples)
                    for figure, samples in zip(
                        figures, (running, running, succeeded, succeeded), strict=True
                    ):
                        fraction = 0.5 if "p50" in figure.name else 0.99
                        figure.runs.append(1000 * percentile(samples, fraction))
                        figure.baseline_runs.append(1000 * percentile(notify, fraction))
    return Outcome(figures, {"n_samples": n_samples, "slots": ctx.n_cores})


def sample_latencies(
    client: GatewayClient, url: str, n: int
) -> tuple[list[float], list[float]]:
    """Seconds to RUNNING and to SUCCEEDED for `n` backtests, one at a time."""
    spec = spec_to_proto(tiny_spec())
    to_running: list[float] = []
    to_succeeded: list[float] = []
    with connect(url) as conn:
        for _ in range(n):
            submitted_at = time.time()
            job_id = client.submit(spec).id
            started_at, finished_at = _wait_for_times(conn, job_id)
            to_running.append(started_at.timestamp() - submitted_at)
            to_succeeded.append(finished_at.timestamp() - submitted_at)
            time.sleep(PAUSE_SECONDS)
    return to_running, to_succeeded


def _wait_for_times(
    conn: psycopg.Connection[tuple[Any, ...]], job_id: int
) -> tuple[datetime, datetime]:
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        row = conn.execute(_TIMES, (job_id,), prepare=True).fetchone()
        if row is not None:
            return row[0], row[1]
        time.sleep(0.002)
    raise BenchError(f"backtest {job_id} did not succeed within 30 s")
