"""Submit: SubmitBacktest calls per second from concurrent clients through one
gateway, and backtests per second through the batch RPC SubmitBacktests,
beside raw INSERT loops on the same database."""

from __future__ import annotations

from platform_bench import baselines
from platform_bench.figures import Figure, Outcome, at_least
from platform_bench.harness import (
    BenchContext,
    CpuMeter,
    fresh_database,
    running_platform,
    tiny_spec,
)
from platform_bench.load import LoadPlan, run_clients

NAME = "submit"
FULL_CALLS = 10_000
QUICK_CALLS = 1_000
FULL_BULK = 50_000
QUICK_BULK = 5_000
BULK_BATCH = 1_000
N_CLIENT_PROCESSES = 2
# In-flight calls per client process: enough to keep the gateway's database
# pool (10 connections) busy while the other calls are parsed.
CONCURRENCY = 16
BULK_CONCURRENCY = 2
# Connections of the raw INSERT loop: more than the gateway's pool, fewer
# than would crowd a shared server's max_connections.
RAW_CONNECTIONS = 16
TARGET_CALLS_PER_SECOND = 3_000.0
TARGET_BULK_PER_SECOND = 50_000.0


def run(ctx: BenchContext) -> Outcome:
    n_calls = ctx.size_of(FULL_CALLS, QUICK_CALLS)
    # At least one full batch from each client process.
    n_bulk = max(ctx.size_of(FULL_BULK, QUICK_BULK), BULK_BATCH * N_CLIENT_PROCESSES)
    n_clients = N_CLIENT_PROCESSES * CONCURRENCY
    single = Figure(
        NAME,
        "SubmitBacktest calls/s, one gateway",
        "calls/s",
        baseline=f"raw INSERT per transaction, {RAW_CONNECTIONS} connections",
        target=at_least(TARGET_CALLS_PER_SECOND),
        note=f"{n_calls:,} calls from {n_clients} concurrent clients",
    )
    bulk = Figure(
        NAME,
        f"SubmitBacktests backtests/s ({BULK_BATCH:,} per call)",
        "jobs/s",
        baseline=f"raw INSERT ... SELECT unnest, {BULK_BATCH:,} rows per statement",
        target=at_least(TARGET_BULK_PER_SECOND),
        note=f"{n_bulk:,} backtests",
    )
    cpu_per_call: list[dict[str, float]] = []

    # No workers: submissions are measured alone, and the jobs stay queued.
    with fresh_database(ctx.server_url) as url:
        with running_platform(
            ctx, url, n_workers=0, slots_per_worker=1, name=NAME
        ) as platform:
            for index in range(ctx.runs):
                meter = CpuMeter(platform, url)
                meter.start()
                single.runs.append(
                    run_clients(
                        _plans(platform.gateway_address, f"one-{index}", n_calls, 1)
                    )
                )
                cpu = meter.stop()
                cpu_per_call.append({k: v / n_calls for k, v in cpu.items()})
                single.baseline_runs.append(
                    baselines.insert_loop(
                        url,
                        tiny_spec(),
                        n=n_calls,
                        n_connections=RAW_CONNECTIONS,
                        owner=f"raw-{index}",
                    )
                )
                plans = _plans(
                    platform.gateway_address, f"bulk-{index}", n_bulk, BULK_BATCH
                )
                bulk.runs.append(run_clients(plans))
                bulk.baseline_runs.append(
                    baselines.batch_insert_loop(
                        url,
                        tiny_spec(),
                        n=n_bulk,
                        batch=BULK_BATCH,
                        owner=f"raw-bulk-{index}",
                    )
                )
    details = {
        "n_calls": n_calls,
        "n_bulk_backtests": n_bulk,
        "client_processes": N_CLIENT_PROCESSES,
        "concurrency_per_process": CONCURRENCY,
        "cpu_seconds_per_call": cpu_per_call,
    }
    return Outcome([single, bulk], details)


def _plans(address: str, owner: str, n_backtests: int, batch: int) -> list[LoadPlan]:
    n_calls = n_backtests // batch // N_CLIENT_PROCESSES
    concurrency = CONCURRENCY if batch == 1 else BULK_CONCURRENCY
    return [
        LoadPlan(address, f"{owner}-{i}", n_calls, concurrency, batch)
        for i in range(N_CLIENT_PROCESSES)
    ]
