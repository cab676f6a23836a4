"""Fills at the close, fractional units, shorts and stops, worked out by hand."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from engine_support import START, candles_of

from backcast.engine.candles import Candles
from backcast.engine.simulation import simulate
from backcast.engine.spec import Costs

NO_COSTS = Costs()


def ranged(
    opens: Sequence[float],
    highs: Sequence[float],
    lows: Sequence[float],
    closes: Sequence[float],
) -> Candles:
    first = int(START.timestamp())
    times = first + 60 * np.arange(len(opens), dtype=np.int64)
    return Candles.of(times, opens, highs, lows, closes, np.ones(len(opens)))


def test_fill_at_close_trades_at_the_deciding_candle() -> None:
    candles = candles_of([10, 11, 12, 13], [10.5, 11.5, 12.5, 13.5])
    target = np.array([1.0, 1.0, 0.0, 0.0])

    run = simulate(candles, target, NO_COSTS, 100.0, fill_at_close=True)

    # Buy floor(100 / 10.5) = 9 at close 0 (94.5, 5.5 left); sell at close 2
    # for 112.5: cash 118, pnl 18.
    np.testing.assert_allclose(run.equity, [100, 109, 118, 118], rtol=1e-12)
    (trade,) = run.trades
    assert (trade.entry_index, trade.exit_index, trade.units) == (0, 2, 9.0)
    np.testing.assert_allclose(
        [trade.entry_price, trade.exit_price, trade.pnl, trade.return_fraction],
        [10.5, 12.5, 18.0, 18.0 / 94.5],
        rtol=1e-12,
    )


def test_fill_at_close_never_fills_the_last_decision() -> None:
    candles = candles_of([10, 10, 10], [10, 10, 10])

    run = simulate(
        candles, np.array([0.0, 0.0, 1.0]), NO_COSTS, 100.0, fill_at_close=True
    )

    np.testing.assert_allclose(run.units, [0, 0, 0], rtol=0)


def test_fractional_units_spend_all_the_cash() -> None:
    candles = candles_of([10, 10, 10], [10, 12, 12])

    run = simulate(candles, np.ones(3), NO_COSTS, 100.0, fractional=True)

    np.testing.assert_allclose(run.units, [0, 10, 10], rtol=1e-15)
    np.testing.assert_allclose(run.equity, [100, 120, 120], rtol=1e-14)
    assert run.cash.min() >= 0.0


def test_short_gains_when_the_price_falls() -> None:
    candles = candles_of([10, 10, 8, 8], [10, 9, 8, 9])
    target = np.array([-1.0, -1.0, 0.0, 0.0])

    run = simulate(candles, target, NO_COSTS, 100.0, shorts=True)

    # Sell 9 short at open 1 (cash 190), buy them back at open 3 for 72.
    np.testing.assert_allclose(run.units, [0, -9, -9, 0], rtol=0)
    np.testing.assert_allclose(run.equity, [100, 109, 118, 118], rtol=1e-12)
    (trade,) = run.trades
    assert (trade.entry_index, trade.exit_index, trade.units) == (1, 3, -9.0)
    np.testing.assert_allclose(
        [trade.entry_price, trade.exit_price, trade.pnl, trade.return_fraction],
        [10.0, 8.0, 18.0, 0.2],
        rtol=1e-12,
    )


def test_short_pays_commission_and_adverse_slippage_on_both_fills() -> None:
    candles = candles_of([10, 10, 10, 10], [10, 10, 10, 10])
    costs = Costs(commission=0.01, slippage_bps=100)
    target = np.array([-1.0, -1.0, 0.0, 0.0])

    run = simulate(candles, target, costs, 100.0, shorts=True)

    # Sell at 9.9: floor(100 / (9.9 * 1.01)) = 10 units, 99 in, 0.99 fee,
    # cash 198.01. Buy back at 10.1: 101 out, 1.01 fee, cash 96.
    np.testing.assert_allclose(run.equity, [100, 98.01, 98.01, 96.0], rtol=1e-12)
    np.testing.assert_allclose(run.commissions_paid, 2.0, rtol=1e-12)
    (trade,) = run.trades
    np.testing.assert_allclose(
        [trade.entry_price, trade.exit_price, trade.pnl, trade.return_fraction],
        [9.9, 10.1, -4.0, -4.0 / 99.0],
        rtol=1e-12,
    )


def test_change_from_long_to_short_closes_and_opens_at_one_fill() -> None:
    candles = candles_of([10, 10, 12, 12], [10, 10, 12, 12])
    target = np.array([1.0, -1.0, -1.0, -1.0])

    run = simulate(candles, target, NO_COSTS, 100.0, shorts=True)

    # Buy 9 at 10; at open 2 sell them for 108 (cash 118, pnl 18) and sell
    # floor(118 / 12) = 9 short (cash 226); the short is still open.
    np.testing.assert_allclose(run.units, [0, 9, -9, -9], rtol=0)
    np.testing.assert_allclose(run.equity, [100, 100, 118, 118], rtol=1e-12)
    (trade,) = run.trades
    assert (trade.entry_index, trade.exit_index, trade.units) == (1, 2, 9.0)
    np.testing.assert_allclose(trade.pnl, 18.0, rtol=1e-12)


@pytest.mark.parametrize(
    ("open_2", "high_2", "low_2", "stops", "exit_price"),
    [
        (10.0, 10.0, 8.5, (0.1, 0.0), 9.0),
        (8.0, 10.0, 7.5, (0.1, 0.0), 8.0),
        (10.0, 11.5, 9.5, (0.0, 0.1), 11.0),
        (12.0, 12.5, 10.0, (0.0, 0.1), 12.0),
        (10.0, 11.5, 8.5, (0.1, 0.1), 9.0),
    ],
    ids=["stop-touched", "stop-gapped", "profit-touched", "profit-gapped", "both"],
)
def test_stops_fill_at_their_level_or_the_gapping_open(
    open_2: float,
    high_2: float,
    low_2: float,
    stops: tuple[float, float],
    exit_price: float,
) -> None:
    candles = ranged(
        [10, 10, open_2, 10, 10],
        [10, 10, high_2, 10, 10],
        [10, 10, low_2, 10, 10],
        [10, 10, 10, 10, 10],
    )
    stop_loss, take_profit = stops

    run = simulate(
        candles,
        np.ones(5),
        NO_COSTS,
        100.0,
        stop_loss=stop_loss,
        take_profit=take_profit,
    )

    # 9 units bought at open 1 (cash 10), closed in candle 2; the target
    # never changes again, so the position stays flat.
    (trade,) = run.trades
    assert (trade.entry_index, trade.exit_index) == (1, 2)
    np.testing.assert_allclose(trade.exit_price, exit_price, rtol=1e-12)
    np.testing.assert_allclose(run.units, [0, 9, 0, 0, 0], rtol=0)
    np.testing.assert_allclose(run.equity[-1], 10 + 9 * exit_price, rtol=1e-12)


def test_short_stop_loss_buys_back_above_the_entry() -> None:
    candles = ranged(
        [10, 10, 10, 10], [10, 10, 11.5, 10], [10, 10, 9.5, 10], [10, 10, 10, 10]
    )

    run = simulate(candles, -np.ones(4), NO_COSTS, 100.0, shorts=True, stop_loss=0.1)

    # Short 9 at 10 (cash 190); the level 11 is touched in candle 2: buy
    # back for 99, cash 91.
    (trade,) = run.trades
    np.testing.assert_allclose([trade.exit_price, trade.pnl], [11.0, -9.0], rtol=1e-12)
    np.testing.assert_allclose(run.equity, [100, 100, 91, 91], rtol=1e-12)
