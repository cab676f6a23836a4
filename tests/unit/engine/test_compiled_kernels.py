"""The compiled kernels against plain-Python replays of the same rules."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from engine_support import crossover

from backcast.engine import kernels
from backcast.engine.candles import Candles
from backcast.engine.metrics import compute_metrics
from backcast.engine.simulation import simulate
from backcast.engine.spec import Costs, Interval
from backcast.engine.strategies import moving_average_crossover
from backcast.marketdata.synthetic import synthetic_candles


@dataclass
class Replay:
    """The execution model walked one candle at a time with Python floats."""

    cash: float
    units: float = 0.0
    commissions: float = 0.0
    entry: tuple[int, float, float] = (0, 0.0, 0.0)
    equity: list[float] = field(default_factory=list)
    held: list[float] = field(default_factory=list)
    trades: list[tuple[int, int, float, float, float, float]] = field(
        default_factory=list
    )


def replay(candles: Candles, target: np.ndarray, costs: Costs, cash: float) -> Replay:
    """Acts on a change of target only, as the engine does."""
    book = Replay(cash=cash)
    slip = costs.slippage_bps / 1e4
    for t in range(len(candles)):
        changed = t > 0 and target[t - 1] != (target[t - 2] if t > 1 else 0.0)
        if changed and target[t - 1] == 0 and book.units > 0:
            price = candles.open[t] * (1 - slip)
            proceeds = book.units * price
            fee = proceeds * costs.commission
            index, entry_price, entry_cost = book.entry
            pnl = proceeds - fee - entry_cost
            book.trades.append((index, t, entry_price, price, book.units, pnl))
            book.cash += proceeds - fee
            book.units = 0.0
            book.commissions += fee
        elif changed and target[t - 1] > 0:
            price = candles.open[t] * (1 + slip)
            shaved = book.cash * (1 - 2**-52)
            units = math.floor(shaved / (price * (1 + costs.commission)))
            cost = units * price
            fee = cost * costs.commission
            if units >= 1:
                book.cash -= cost + fee
                book.units = float(units)
                book.entry = (t, price, cost + fee)
                book.commissions += fee
        book.equity.append(book.cash + book.units * candles.close[t])
        book.held.append(book.units)
    return book


def synthetic_minutes(n: int) -> Candles:
    start = datetime(2022, 6, 1, tzinfo=UTC)
    return synthetic_candles(
        "SYN-KERNELS", Interval.ONE_MINUTE, start, start + timedelta(minutes=n)
    )


@pytest.mark.parametrize(
    ("cash", "costs"),
    [
        (1e6, Costs()),
        (1e6, Costs(commission=0.001, slippage_bps=2.0)),
        # Prices run from about 57.5 to 60.3: some entries cannot buy a unit
        # and are skipped until the next change of target.
        (59.0, Costs()),
    ],
    ids=["no-costs", "costs", "cash-near-the-price"],
)
def test_compiled_fills_agree_with_a_candle_by_candle_replay(
    cash: float, costs: Costs
) -> None:
    candles = synthetic_minutes(4_000)
    target = moving_average_crossover(candles, crossover(5, 20)).target

    run = simulate(candles, target, costs, cash)
    expected = replay(candles, target, costs, cash)

    assert len(run.trades) > 50
    np.testing.assert_allclose(run.equity, expected.equity, rtol=1e-12)
    np.testing.assert_allclose(run.units, expected.held, rtol=0)
    np.testing.assert_allclose(run.commissions_paid, expected.commissions, rtol=1e-12)
    got = [
        (t.entry_index, t.exit_index, t.entry_price, t.exit_price, t.units, t.pnl)
        for t in run.trades
    ]
    assert [row[:2] for row in got] == [row[:2] for row in expected.trades]
    np.testing.assert_allclose(
        [row[2:] for row in got], [row[2:] for row in expected.trades], rtol=1e-12
    )


def test_drawdown_statistics_match_their_numpy_definitions() -> None:
    rng = np.random.default_rng(7)
    equity = 1e4 * np.exp(np.cumsum(rng.normal(0.0, 0.01, 3_000)))
    equity[1_000:1_050] = equity[999]
    times = 60 * np.arange(equity.size, dtype=np.int64)

    drawdown, longest, seconds = kernels.drawdown_statistics(times, equity)

    peaks = np.maximum.accumulate(equity)
    below = np.concatenate(([False], equity < peaks, [False]))
    edges = np.flatnonzero(np.diff(below))
    np.testing.assert_allclose(drawdown, 1.0 - np.min(equity / peaks), rtol=1e-12)
    # A run of k closes below the peak is k candles after the peak's close.
    assert longest == int(np.max(edges[1::2] - edges[0::2]))
    assert seconds == 60 * longest


def test_daily_closes_match_a_numpy_resampling() -> None:
    times = np.sort(np.random.default_rng(3).choice(20 * 1_440, 5_000, replace=False))
    times = 60 * times.astype(np.int64)
    equity = np.arange(times.size, dtype=np.float64)

    days, closes = kernels.daily_closes(times, equity)

    day_of = times // 86_400
    last = np.flatnonzero(np.diff(np.append(day_of, day_of[-1] + 1)))
    np.testing.assert_array_equal(days, day_of[last])
    np.testing.assert_array_equal(closes, equity[last])


def test_exposure_counts_closes_with_units_held() -> None:
    candles = synthetic_minutes(3_000)
    signals = moving_average_crossover(candles, crossover(5, 20))
    run = simulate(candles, signals.target, Costs(), 1e6)

    metrics = compute_metrics(
        run,
        candles,
        interval_seconds=60,
        initial_cash=1e6,
        first_decision=signals.first_decision,
        instrument="SYN-TEST",
    )

    assert metrics.exposure == np.count_nonzero(run.units) / len(candles)
    assert 0.2 < metrics.exposure < 0.8
