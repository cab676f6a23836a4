"""The execution model on hand-computed candle series.

Decisions at a close fill at the next open; sizing buys whole units with
all the cash (shaved by 2**-52); commission and slippage cost on every fill.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import numpy as np
import pytest
from engine_support import candles_of, crossover

from backcast.engine.candles import Candles
from backcast.engine.simulation import simulate
from backcast.engine.spec import Costs, Interval
from backcast.engine.strategies import moving_average_crossover
from backcast.marketdata.synthetic import synthetic_candles

NO_COSTS = Costs()


def test_market_order_fills_at_the_next_open() -> None:
    candles = candles_of([10, 11, 12, 13], [10.5, 11.5, 12.5, 13.5])

    run = simulate(candles, np.ones(4), NO_COSTS, 100.0)

    # Decision at close 0, fill at open 1 (11): floor(100 / 11) = 9 units,
    # 1.0 left in cash.
    np.testing.assert_allclose(run.units, [0, 9, 9, 9], rtol=0)
    np.testing.assert_allclose(run.cash, [100, 1, 1, 1], rtol=1e-12)
    np.testing.assert_allclose(run.equity, [100, 104.5, 113.5, 122.5], rtol=1e-12)
    assert run.trades == ()
    assert run.commissions_paid == 0.0


@pytest.mark.parametrize(
    ("cash", "units", "left"),
    [(105.0, 10, 5.0), (100.0, 9, 10.0), (9.99, 0, 9.99)],
)
def test_sizing_buys_whole_units_strictly_within_the_cash(
    cash: float, units: int, left: float
) -> None:
    # floor(cash * (1 - 2**-52) / 10): exactly 100 of cash buys 9, not 10.
    candles = candles_of([10, 10, 10], [10, 10, 10])

    run = simulate(candles, np.ones(3), NO_COSTS, cash)

    np.testing.assert_allclose(run.units[-1], units, rtol=0)
    np.testing.assert_allclose(run.cash[-1], left, rtol=1e-12)


def test_commission_and_slippage_are_charged_at_entry_and_exit() -> None:
    candles = candles_of([10, 11, 12, 13], [10, 11.5, 12.5, 13.5])
    costs = Costs(commission=0.01, slippage_bps=100)

    run = simulate(candles, np.array([1.0, 1.0, 0.0, 0.0]), costs, 100.0)

    # Entry at open 1: 11 * 1.01 = 11.11; units = floor(100 / (11.11 * 1.01))
    # = 8; notional 88.88, commission 0.8888, cash 10.2312.
    # Exit at open 3: 13 * 0.99 = 12.87; proceeds 102.96, commission 1.0296,
    # cash 10.2312 + 101.9304 = 112.1616.
    np.testing.assert_allclose(
        run.equity, [100, 10.2312 + 8 * 11.5, 10.2312 + 8 * 12.5, 112.1616], rtol=1e-12
    )
    np.testing.assert_allclose(run.commissions_paid, 0.8888 + 1.0296, rtol=1e-12)
    (trade,) = run.trades
    assert (trade.entry_index, trade.exit_index, trade.units) == (1, 3, 8.0)
    np.testing.assert_allclose(
        [trade.entry_price, trade.exit_price, trade.pnl, trade.return_fraction],
        [11.11, 12.87, 12.1616, 12.1616 / 88.88],
        rtol=1e-12,
    )


def test_decision_on_the_last_candle_never_fills() -> None:
    candles = candles_of([10, 10, 10, 10], [10, 10, 10, 10])

    run = simulate(candles, np.array([0.0, 0.0, 0.0, 1.0]), NO_COSTS, 100.0)

    np.testing.assert_allclose(run.units, [0, 0, 0, 0], rtol=0)
    np.testing.assert_allclose(run.equity, [100, 100, 100, 100], rtol=0)


def test_exit_decided_on_the_last_candle_leaves_the_position_open() -> None:
    candles = candles_of([10, 10, 10, 10], [10, 10, 10, 12])

    run = simulate(candles, np.array([1.0, 1.0, 1.0, 0.0]), NO_COSTS, 100.0)

    assert run.trades == ()
    np.testing.assert_allclose(run.equity[-1], 10 + 9 * 12, rtol=1e-12)


def test_position_open_at_the_end_is_marked_but_not_a_trade() -> None:
    candles = candles_of([10, 10, 11, 10, 10], [10, 10, 11, 12, 14])

    run = simulate(candles, np.array([1.0, 0.0, 1.0, 1.0, 1.0]), NO_COSTS, 100.0)

    # Buy 9 at 10 (cash 10), sell at 11 (cash 109, pnl 9), buy 10 at open 3
    # (cash 9), still held at the last close of 14.
    (trade,) = run.trades
    assert (trade.entry_index, trade.exit_index, trade.units) == (1, 2, 9.0)
    np.testing.assert_allclose(
        [trade.entry_price, trade.exit_price, trade.pnl, trade.return_fraction],
        [10.0, 11.0, 9.0, 0.1],
        rtol=1e-12,
    )
    np.testing.assert_allclose(run.units, [0, 9, 0, 10, 10], rtol=0)
    np.testing.assert_allclose(run.equity[-1], 9 + 10 * 14, rtol=1e-12)


def test_entry_that_cannot_buy_one_unit_is_skipped() -> None:
    candles = candles_of([10, 10, 10, 10], [10, 10, 10, 10])

    run = simulate(candles, np.array([1.0, 0.0, 1.0, 1.0]), NO_COSTS, 5.0)

    assert run.trades == ()
    np.testing.assert_allclose(run.equity, [5, 5, 5, 5], rtol=0)


def test_short_targets_are_rejected() -> None:
    candles = candles_of([10, 10], [10, 10])

    with pytest.raises(ValueError, match="short"):
        simulate(candles, np.array([-1.0, 0.0]), NO_COSTS, 100.0)


def synthetic_minutes(n: int) -> Candles:
    start = datetime(2023, 3, 1, tzinfo=UTC)
    return synthetic_candles(
        "SYN-FILLS", Interval.ONE_MINUTE, start, start + timedelta(minutes=n)
    )


def replay(
    candles: Candles, target: np.ndarray, costs: Costs, cash: float
) -> np.ndarray:
    """Equity at every close, walking every candle one at a time."""
    buy = 1 + costs.slippage_bps / 1e4
    sell = 1 - costs.slippage_bps / 1e4
    units = 0
    equity = []
    for t in range(len(candles)):
        if t > 0 and target[t - 1] > 0 and units == 0:
            price = candles.open[t] * buy
            units = math.floor(cash * (1 - 2**-52) / (price * (1 + costs.commission)))
            cash -= units * price + units * price * costs.commission
        elif t > 0 and target[t - 1] == 0 and units > 0:
            price = candles.open[t] * sell
            cash += units * price - units * price * costs.commission
            units = 0
        equity.append(cash + units * candles.close[t])
    return np.array(equity)


def test_equity_is_cash_plus_units_at_every_close() -> None:
    # Cash far above the price, so every entry buys (the replay retries a
    # skipped entry on every candle, the engine only on the next signal).
    candles = synthetic_minutes(5_000)
    target = moving_average_crossover(candles, crossover(5, 20)).target
    costs = Costs(commission=0.001, slippage_bps=2.0)

    run = simulate(candles, target, costs, 1e6)

    assert len(run.trades) > 50
    np.testing.assert_allclose(
        run.equity, run.cash + run.units * candles.close, rtol=1e-15
    )
    np.testing.assert_allclose(
        run.equity, replay(candles, target, costs, 1e6), rtol=1e-12
    )


@pytest.mark.parametrize("cost", ["commission", "slippage_bps"])
def test_higher_costs_never_raise_final_equity(cost: str) -> None:
    # With cash worth thousands of units, whole-unit rounding cannot outweigh
    # the extra cost of a fill.
    candles = synthetic_minutes(20_000)
    target = moving_average_crossover(candles, crossover(10, 30)).target
    scale = {"commission": 1.0, "slippage_bps": 1e4}[cost]

    finals = [
        simulate(candles, target, Costs(**{cost: level * scale}), 1e7).equity[-1]
        for level in (0.0, 1e-5, 1e-4, 5e-4, 1e-3, 5e-3)
    ]

    assert all(later < earlier for earlier, later in pairwise(finals))
