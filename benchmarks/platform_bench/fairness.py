"""Fairness: one owner with a deep backlog, then many light owners, then a
higher priority; read back from the attempts table.

1. One heavy owner's jobs are queued (SQL) and running.
2. Light owners submit through the gateway, each its own batch at once.
   Figures: the slowest light owner's wait from its submit to its first
   attempt; and Jain's index of slot-seconds over the owners of priority 0
   while every one of them still has jobs queued.
3. A priority-1 owner submits; figure: claims of priority-0 jobs made after
   that submit while priority-1 jobs were still queued (should be none).
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from backcast.cli.client import OWNER_HEADER, open_channel
from backcast.rpc.translate import spec_to_proto
from backcast.v1 import backtest_service_pb2 as api
from backcast.v1 import backtest_service_pb2_grpc as api_grpc
from platform_bench.figures import Figure, Outcome, at_least, at_most, jain_index
from platform_bench.harness import (
    BenchContext,
    connect,
    fresh_database,
    insert_queued_jobs,
    running_platform,
    tiny_spec,
    wait_until_finished,
)

NAME = "fairness"
FULL_HEAVY_JOBS = 100_000
QUICK_HEAVY_JOBS = 2_000
FULL_LIGHT_OWNERS = 100
QUICK_LIGHT_OWNERS = 10
JOBS_PER_LIGHT_OWNER = 10
N_PRIORITY_JOBS = 10
TARGET_FIRST_START_SECONDS = 1.0
TARGET_JAIN = 0.95
# How long the heavy owner runs alone first, so its jobs hold every slot.
HEAVY_ALONE_SECONDS = 2.0
# Longest expected gap between a submit transaction's start and its commit.
COMMIT_SLACK_SECONDS = 0.05


def run(ctx: BenchContext) -> Outcome:
    n_heavy = ctx.size_of(FULL_HEAVY_JOBS, QUICK_HEAVY_JOBS)
    n_light = QUICK_LIGHT_OWNERS if ctx.quick else FULL_LIGHT_OWNERS
    first_start = Figure(
        NAME,
        "slowest light owner's first start",
        "s",
        target=at_most(TARGET_FIRST_START_SECONDS),
        note=f"1 owner with {n_heavy:,} queued, then {n_light} owners x "
        f"{JOBS_PER_LIGHT_OWNER}",
    )
    jain = Figure(
        NAME,
        "Jain index of slot-seconds, all backlogged",
        "",
        target=at_least(TARGET_JAIN),
    )
    overtaken = Figure(
        NAME,
        "priority-0 claims while priority-1 queued",
        "jobs",
        target=at_most(0),
    )
    runs: list[dict[str, Any]] = []
    with fresh_database(ctx.server_url) as url:
        with running_platform(
            ctx, url, n_workers=1, slots_per_worker=ctx.n_cores, name=NAME
        ) as platform:
            for index in range(ctx.runs):
                measured = one_round(
                    url, platform.gateway_address, index, n_heavy, n_light
                )
                first_start.runs.append(measured["first_start_seconds"])
                jain.runs.append(measured["jain"])
                overtaken.runs.append(measured["overtaken"])
                runs.append(measured)
    return Outcome([first_start, jain, overtaken], {"runs": runs})


def one_round(
    url: str, gateway: str, index: int, n_heavy: int, n_light: int
) -> dict[str, Any]:
    heavy = f"heavy-{index}"
    lights = [f"light-{index}-{i}" for i in range(n_light)]
    vip = f"vip-{index}"
    insert_queued_jobs(url, n_heavy, owner=heavy, spec=tiny_spec())
    with connect(url) as conn:
        conn.execute("NOTIFY backcast_jobs_queued")
    time.sleep(HEAVY_ALONE_SECONDS)

    submitted = _submit_all(gateway, lights, JOBS_PER_LIGHT_OWNER, priority=0)
    for owner in lights:
        wait_until_finished(url, owner, JOBS_PER_LIGHT_OWNER, timeout_seconds=300)

    _submit_all(gateway, [vip], N_PRIORITY_JOBS, priority=1)
    wait_until_finished(url, vip, N_PRIORITY_JOBS, timeout_seconds=120)

    with connect(url) as conn:
        # The rest of the backlog is not needed: end it so the next round
        # starts from an empty queue.
        conn.execute(
            "UPDATE jobs SET state = 'cancelled', finished_at = now() "
            "WHERE owner = %s AND state = 'queued'",
            (heavy,),
        )
        first_starts = _first_starts(conn, lights)
        waits = [first_starts[o] - submitted[o] for o in lights]
        share_index, window, shares = _slot_share_index(conn, [heavy, *lights])
        queued_waits = _queued_waits(conn, lights)
        n_overtaken = _overtaking_claims(conn, vip)
    return {
        "first_start_seconds": max(waits),
        "first_start_p50_seconds": sorted(waits)[len(waits) // 2],
        "jain": share_index,
        "window_seconds": window,
        "slot_seconds_heavy": shares[0] if shares else None,
        "slot_seconds_light": shares[1:],
        "first_start_from_commit_seconds": max(queued_waits),
        "overtaken": float(n_overtaken),
    }


def _submit_all(
    gateway: str, owners: list[str], n_jobs: int, *, priority: int
) -> dict[str, float]:
    """Each owner submits `n_jobs` in one SubmitBacktests call, all owners
    at once; returns each owner's time.time() just before its call."""
    spec = spec_to_proto(tiny_spec())

    def submit(owner: str) -> float:
        requests = [
            api.SubmitBacktestRequest(
                spec=spec, priority=priority, request_id=f"{owner}-{i}"
            )
            for i in range(n_jobs)
        ]
        metadata = ((OWNER_HEADER, owner),)
        with open_channel(gateway) as channel:
            stub = api_grpc.BacktestServiceStub(channel)
            # Connect before the clock starts.
            stub.ListStrategies(api.ListStrategiesRequest(), timeout=30.0)
            started = time.time()
            stub.SubmitBacktests(
                api.SubmitBacktestsRequest(requests=requests),
                timeout=30.0,
                metadata=metadata,
            )
        return started

    with ThreadPoolExecutor(max_workers=min(32, len(owners))) as pool:
        times = list(pool.map(submit, owners))
    return dict(zip(owners, times, strict=True))


def _first_starts(conn: Any, owners: list[str]) -> dict[str, float]:
    rows = conn.execute(
        "SELECT j.owner, min(a.started_at) FROM attempts AS a "
        "JOIN jobs AS j ON j.id = a.job_id WHERE j.owner = ANY(%s) "
        "GROUP BY j.owner",
        (owners,),
    ).fetchall()
    return {owner: started.timestamp() for owner, started in rows}


def _queued_waits(conn: Any, owners: list[str]) -> list[float]:
    """Seconds from each owner's jobs entering the queue to its first claim."""
    rows = conn.execute(
        "SELECT extract(epoch FROM min(a.started_at) - min(j.created_at)) "
        "FROM jobs AS j JOIN attempts AS a ON a.job_id = j.id "
        "WHERE j.owner = ANY(%s) GROUP BY j.owner",
        (owners,),
    ).fetchall()
    return [float(row[0]) for row in rows]


def _slot_share_index(conn: Any, owners: list[str]) -> tuple[float, float, list[float]]:
    """Jain's index of each owner's slot-seconds from the moment every
    light owner had submitted to the first moment one of them had nothing
    left queued (its last job's claim); and that window's length."""
    # The window opens when the last light owner's jobs were queued.
    row = conn.execute(
        "SELECT max(created_at) FROM jobs WHERE owner = ANY(%s)", (owners[1:],)
    ).fetchone()
    window_start = row[0].timestamp() + COMMIT_SLACK_SECONDS
    last_claims = conn.execute(
        "SELECT j.owner, max(a.started_at) FROM attempts AS a "
        "JOIN jobs AS j ON j.id = a.job_id WHERE j.owner = ANY(%s) "
        "GROUP BY j.owner",
        (owners[1:],),
    ).fetchall()
    window_end = min(claimed.timestamp() for _, claimed in last_claims)
    if window_end <= window_start:
        return math.nan, 0.0, []

    start = datetime.fromtimestamp(window_start, UTC)
    end = datetime.fromtimestamp(window_end, UTC)
    rows = conn.execute(
        "SELECT j.owner, sum(extract(epoch FROM "
        "  least(coalesce(a.finished_at, now()), %(end)s) "
        "  - greatest(a.started_at, %(start)s))) "
        "FROM attempts AS a JOIN jobs AS j ON j.id = a.job_id "
        "WHERE j.owner = ANY(%(owners)s) AND a.started_at < %(end)s "
        "  AND coalesce(a.finished_at, now()) > %(start)s "
        "GROUP BY j.owner",
        {"owners": owners, "start": start, "end": end},
    ).fetchall()
    seconds = {owner: float(total) for owner, total in rows}
    shares = [seconds.get(owner, 0.0) for owner in owners]
    return jain_index(shares), window_end - window_start, shares


def _overtaking_claims(conn: Any, vip: str) -> int:
    """Claims of priority-0 jobs that began after the priority-1 jobs were
    queued and before the last of them was claimed."""
    row = conn.execute(
        "SELECT min(j.created_at), max(a.started_at) FROM jobs AS j "
        "JOIN attempts AS a ON a.job_id = j.id WHERE j.owner = %s",
        (vip,),
    ).fetchone()
    # created_at is the submit transaction's start; its commit follows
    # within a few milliseconds, and a claim that began before the commit
    # cannot see the jobs.
    since = row[0] + timedelta(seconds=COMMIT_SLACK_SECONDS)
    row = conn.execute(
        "SELECT count(*) FROM attempts AS a JOIN jobs AS j ON j.id = a.job_id "
        "WHERE j.priority = 0 AND a.started_at > %s AND a.started_at < %s",
        (since, row[1]),
    ).fetchone()
    return int(row[0])
