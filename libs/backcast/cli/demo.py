"""The demo batch: a dozen varied backtests on synthetic instruments,
submitted over gRPC and followed until they finish."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

from backcast.cli.client import GatewayClient, new_request_id
from backcast.cli.tables import percent, render_table
from backcast.cli.views import (
    interval_label,
    is_terminal,
    short_strategy_label,
    state_name,
)
from backcast.engine.spec import BacktestSpec, Costs, Interval, StrategySpec
from backcast.rpc.translate import spec_to_proto
from backcast.v1 import backtest_service_pb2 as api

# Progress is printed each time a backtest crosses another quarter.
_PROGRESS_STEPS = 4


@dataclass(frozen=True)
class DemoBacktest:
    """One backtest of the demo batch."""

    spec: BacktestSpec
    priority: int = 0


def _crossover(fast: int, slow: int, kind: str) -> StrategySpec:
    return StrategySpec(
        "moving_average_crossover",
        {"fast_period": fast, "slow_period": slow, "kind": kind},
    )


def _spec(
    strategy: StrategySpec,
    instrument: str,
    interval: Interval,
    start: str,
    end: str,
    commission: float = 0.0,
    slippage_bps: float = 0.0,
) -> BacktestSpec:
    return BacktestSpec(
        strategy=strategy,
        instrument=instrument,
        interval=interval,
        start_at=datetime.fromisoformat(start).replace(tzinfo=UTC),
        end_at=datetime.fromisoformat(end).replace(tzinfo=UTC),
        costs=Costs(commission=commission, slippage_bps=slippage_bps),
    )


def demo_batch() -> list[DemoBacktest]:
    """Twelve backtests of 4,000 to 21,000 candles each: a few seconds of work."""
    hold = StrategySpec("buy_and_hold", {})
    hour, five, minute = Interval.ONE_HOUR, Interval.FIVE_MINUTES, Interval.ONE_MINUTE
    year = ("2023-01-01", "2024-01-01")
    quarter = ("2024-01-01", "2024-03-01")
    fortnight = ("2024-01-01", "2024-01-15")
    specs = [
        _spec(_crossover(10, 30, "simple"), "SYN-BTCUSD", hour, *year, 0.001),
        _spec(_crossover(12, 26, "exponential"), "SYN-BTCUSD", hour, *year, 0.001, 2),
        _spec(hold, "SYN-BTCUSD", hour, *year, 0.001),
        _spec(_crossover(20, 100, "simple"), "SYN-ETHUSD", five, *quarter, 0.0005),
        _spec(
            _crossover(5, 20, "exponential"), "SYN-ETHUSD", five, *quarter, 0.0005, 1
        ),
        _spec(hold, "SYN-ETHUSD", five, *quarter, 0.0005),
        _spec(_crossover(50, 200, "simple"), "SYN-SOLUSD", minute, *fortnight),
        _spec(
            _crossover(9, 21, "exponential"), "SYN-SOLUSD", minute, *fortnight, 0.0005
        ),
        _spec(hold, "SYN-SOLUSD", minute, *fortnight),
        _spec(
            _crossover(24, 168, "simple"),
            "SYN-EURUSD",
            hour,
            "2022-01-01",
            "2024-01-01",
            0.0002,
        ),
        _spec(_crossover(30, 90, "exponential"), "SYN-SPX", hour, *year, 0.0001, 0.5),
        _spec(_crossover(3, 15, "simple"), "SYN-BTCUSD", five, *quarter, 0.002, 5),
    ]
    return [DemoBacktest(spec) for spec in specs]


class DemoProgress:
    """Prints one line whenever a backtest changes state or crosses a quarter.

    Plain appended lines, no cursor movement, so the output reads the same on
    a terminal, in a pipe and in a CI log.
    """

    def __init__(self, out: TextIO, n_backtests: int) -> None:
        self.out = out
        self.n_backtests = n_backtests
        self.started = time.monotonic()
        self._seen: dict[int, tuple[int, int, int]] = {}

    def update(self, backtest: api.Backtest, n_done: int) -> None:
        step = int(backtest.progress * _PROGRESS_STEPS)
        key = (backtest.state, backtest.attempt, step)
        if self._seen.get(backtest.id) == key:
            return
        self._seen[backtest.id] = key

        elapsed = time.monotonic() - self.started
        label = f"{short_strategy_label(backtest.spec)} {backtest.spec.instrument}"
        label += f" {interval_label(backtest.spec.interval)}"
        state = state_name(backtest.state)
        if backtest.state == api.Backtest.STATE_RUNNING:
            state += f" {backtest.progress * 100:3.0f}%"
        done = f"[{n_done}/{self.n_backtests} done]"
        print(
            f"{elapsed:6.1f}s  #{backtest.id:<5} {label:<36} {state:<13} {done}",
            file=self.out,
            flush=True,
        )


def run_demo(
    client: GatewayClient,
    *,
    out: TextIO = sys.stdout,
    timeout_seconds: float = 600.0,
    poll_seconds: float = 0.25,
    batch: Sequence[DemoBacktest] | None = None,
) -> int:
    """Submit the demo batch, follow it, print the results; 0 if all succeeded."""
    batch = demo_batch() if batch is None else batch
    owner = client.owner or "anonymous"
    print(
        f"submitting {len(batch)} backtests to {client.address} as {owner}",
        file=out,
        flush=True,
    )
    backtests = {}
    for entry in batch:
        backtest = client.submit(
            spec_to_proto(entry.spec),
            priority=entry.priority,
            request_id=new_request_id(),
        )
        backtests[backtest.id] = backtest

    progress = DemoProgress(out, len(backtests))
    deadline = time.monotonic() + timeout_seconds
    while True:
        for backtest_id, backtest in backtests.items():
            if not is_terminal(backtest):
                backtests[backtest_id] = client.get_status(backtest_id)
        n_done = sum(is_terminal(b) for b in backtests.values())
        for backtest in backtests.values():
            progress.update(backtest, n_done)
        if n_done == len(backtests) or time.monotonic() > deadline:
            break
        time.sleep(poll_seconds)

    results = list(backtests.values())
    print("", file=out)
    print(results_table(results), file=out)
    print("", file=out)
    return _report_outcome(results, time.monotonic() - progress.started, out)


def _report_outcome(results: list[api.Backtest], seconds: float, out: TextIO) -> int:
    n_succeeded = sum(b.state == api.Backtest.STATE_SUCCEEDED for b in results)
    n_unfinished = sum(not is_terminal(b) for b in results)
    line = f"{n_succeeded} of {len(results)} backtests succeeded in {seconds:.1f} s"
    if n_unfinished:
        line += f"; {n_unfinished} did not finish in time"
    print(line, file=out, flush=True)
    for backtest in results:
        if backtest.HasField("error") and backtest.error.reason:
            print(
                f"  backtest {backtest.id}: {backtest.error.reason}: "
                f"{backtest.error.message}",
                file=out,
            )
    return 0 if n_succeeded == len(results) else 1


def results_table(results: Sequence[api.Backtest]) -> str:
    """The demo's result table, one row per backtest."""
    rows = []
    for b in sorted(results, key=lambda b: b.id):
        has_summary = b.HasField("summary")
        rows.append(
            [
                str(b.id),
                short_strategy_label(b.spec),
                b.spec.instrument,
                interval_label(b.spec.interval),
                percent(b.summary.total_return) if has_summary else "",
                f"{b.summary.sharpe_ratio:.2f}" if has_summary else "",
                percent(b.summary.max_drawdown) if has_summary else "",
                str(b.summary.n_trades) if has_summary else "",
                state_name(b.state),
            ]
        )
    headers = [
        "id",
        "strategy",
        "instrument",
        "interval",
        "total return",
        "sharpe",
        "max drawdown",
        "trades",
        "state",
    ]
    return render_table(headers, rows)
