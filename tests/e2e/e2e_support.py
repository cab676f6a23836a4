"""Specs, waits and database peeks shared by the end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import psycopg

from backcast.cli.client import GatewayClient
from backcast.cli.views import backtest_line, is_terminal
from backcast.engine.spec import BacktestSpec, Costs, Interval, StrategySpec
from backcast.rpc.translate import spec_to_proto
from backcast.v1 import backtest_service_pb2 as api
from backcast.v1 import spec_pb2

T = TypeVar("T")

OWNER = "e2e"
STATE = api.Backtest.State

# Candles of the long backtest the kill and cancel tests keep a slot busy
# with. Measured here: 3,000,000 take about 2.5 s of one slot; the maximum
# spec size keeps a slot busy for about 4 s.
LONG_N_CANDLES = 5_000_000


def small_spec(index: int) -> spec_pb2.BacktestSpec:
    """A week of 5m candles (2,016), varied by `index`."""
    start = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=index % 28)
    spec = BacktestSpec(
        strategy=StrategySpec(
            "moving_average_crossover",
            {
                "fast_period": 5 + index % 10,
                "slow_period": 30 + index,
                "kind": "exponential" if index % 2 else "simple",
            },
        ),
        instrument=f"SYN-E2E{index % 5}",
        interval=Interval.FIVE_MINUTES,
        start_at=start,
        end_at=start + timedelta(days=7),
        costs=Costs(commission=0.001, slippage_bps=1.0),
    )
    return spec_to_proto(spec)


def long_spec(
    instrument: str, n_candles: int = LONG_N_CANDLES
) -> spec_pb2.BacktestSpec:
    """`n_candles` 1m candles of `instrument`: seconds of work for one slot."""
    start = datetime(2015, 1, 1, tzinfo=UTC)
    spec = BacktestSpec(
        strategy=StrategySpec(
            "moving_average_crossover",
            {"fast_period": 20, "slow_period": 120, "kind": "simple"},
        ),
        instrument=instrument,
        interval=Interval.ONE_MINUTE,
        start_at=start,
        end_at=start + timedelta(minutes=n_candles),
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


def wait_for_state(
    client: GatewayClient,
    backtest_id: int,
    states: Iterable[int],
    *,
    timeout_seconds: float = 30.0,
) -> api.Backtest:
    """The backtest once it is in one of `states`."""
    wanted = set(states)
    seen: list[str] = []

    def probe() -> api.Backtest | None:
        backtest = client.get_status(backtest_id)
        line = backtest_line(backtest)
        if not seen or seen[-1] != line:
            seen.append(line)
        return backtest if backtest.state in wanted else None

    try:
        return wait_for(probe, timeout_seconds=timeout_seconds, what="a state")
    except AssertionError as error:
        names = ", ".join(STATE.Name(s) for s in wanted)
        history = "\n  ".join(seen[-10:])
        raise AssertionError(
            f"backtest {backtest_id} not in {names}: {error}; seen:\n  {history}"
        ) from None


def wait_until_finished(
    client: GatewayClient, backtest_ids: Sequence[int], *, timeout_seconds: float
) -> dict[int, api.Backtest]:
    """Every backtest once terminal, polling only the unfinished ones."""
    latest: dict[int, api.Backtest] = {}

    def probe() -> bool:
        for backtest_id in backtest_ids:
            known = latest.get(backtest_id)
            if known is None or not is_terminal(known):
                latest[backtest_id] = client.get_status(backtest_id)
        return all(is_terminal(b) for b in latest.values())

    try:
        wait_for(
            probe, timeout_seconds=timeout_seconds, what="backtests", poll_seconds=0.2
        )
    except AssertionError as error:
        unfinished = [backtest_line(b) for b in latest.values() if not is_terminal(b)]
        raise AssertionError(f"{error}; unfinished: {unfinished[:10]}") from None
    return latest


def lease_holder(database_url: str, job_id: int) -> str | None:
    """The worker holding the lease of a running job, from the jobs table."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT lease_holder FROM jobs WHERE id = %s AND state = 'running'",
            (job_id,),
        ).fetchone()
    return None if row is None else row[0]


def count_jobs(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM jobs").fetchone()
    assert row is not None
    return int(row[0])


def backcast_command() -> list[str]:
    """The installed `backcast` script next to this Python, or the module."""
    script = Path(sys.executable).parent / "backcast"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "backcast.cli.main"]


def run_backcast(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout_seconds: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run the command-line client as a separate process."""
    full_env = dict(os.environ)
    full_env.pop("BACKCAST_GATEWAY", None)
    full_env.pop("BACKCAST_OWNER", None)
    full_env.update(env or {})
    return subprocess.run(
        [*backcast_command(), *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout_seconds,
        check=False,
    )
