"""What the scheduler's unit tests assign: a short backtest spec."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from backcast.engine.spec import BacktestSpec, Interval, StrategySpec

START = datetime(2024, 1, 1, tzinfo=UTC)
SPEC = BacktestSpec(
    strategy=StrategySpec("buy_and_hold", {}),
    instrument="SYN-X",
    interval=Interval.ONE_HOUR,
    start_at=START,
    end_at=START + timedelta(days=10),
)
