"""Tiny hand-made candle series and specs for the engine tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import numpy as np

from backcast.engine.candles import Candles
from backcast.engine.spec import BacktestSpec, Costs, Interval, StrategySpec

START = datetime(2024, 1, 1, tzinfo=UTC)


def candles_of(
    opens: Sequence[float],
    closes: Sequence[float],
    *,
    interval: Interval = Interval.ONE_MINUTE,
) -> Candles:
    """Candles from START on, with bodies as wicks and a volume of 1."""
    open_prices = np.asarray(opens, dtype=np.float64)
    close_prices = np.asarray(closes, dtype=np.float64)
    first = int(START.timestamp())
    times = first + interval.seconds * np.arange(open_prices.size, dtype=np.int64)
    return Candles.of(
        times,
        open_prices,
        np.maximum(open_prices, close_prices),
        np.minimum(open_prices, close_prices),
        close_prices,
        np.ones(open_prices.size),
    )


def spec_of(
    strategy: str = "buy_and_hold",
    params: Mapping[str, int | float | str] | None = None,
    *,
    commission: float = 0.0,
    slippage_bps: float = 0.0,
    initial_cash: float = 100.0,
    instrument: str = "SYN-TEST",
    interval: Interval = Interval.ONE_MINUTE,
    n_candles: int = 100,
    start_at: datetime = START,
) -> BacktestSpec:
    return BacktestSpec(
        strategy=StrategySpec(strategy, dict(params or {})),
        instrument=instrument,
        interval=interval,
        start_at=start_at,
        end_at=start_at + timedelta(seconds=interval.seconds * n_candles),
        costs=Costs(commission=commission, slippage_bps=slippage_bps),
        initial_cash=initial_cash,
    )


def crossover(fast: int, slow: int, kind: str = "simple") -> dict[str, int | str]:
    return {"fast_period": fast, "slow_period": slow, "kind": kind}
