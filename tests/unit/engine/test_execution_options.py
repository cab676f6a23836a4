"""A spec's execution options reach the fills: sizing, fills, shorts and stops."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from engine_support import candles_of, crossover, spec_of

from backcast.engine.backtest import run_on_candles
from backcast.engine.simulation import simulate
from backcast.engine.spec import BacktestSpec, Costs, Execution


def with_execution(spec: BacktestSpec, **options: Any) -> BacktestSpec:
    return replace(spec, execution=Execution(**options))


def test_position_fraction_sizes_entries_from_part_of_the_equity() -> None:
    candles = candles_of([9, 9, 9], [9, 12, 12])

    run = simulate(candles, np.ones(3), Costs(), 100.0, position_fraction=0.5)

    # floor(100 * 0.5 * (1 - 2**-52) / 9) = 5 units for 45: cash 55, then
    # 55 + 5 * 12 = 115.
    np.testing.assert_allclose(run.units, [0, 5, 5], rtol=0)
    np.testing.assert_allclose(run.equity, [100, 115, 115], rtol=1e-12)


def test_position_fraction_counts_commission_in_the_committed_cash() -> None:
    candles = candles_of([10, 10, 10], [10, 10, 10])

    run = simulate(
        candles, np.ones(3), Costs(commission=0.01), 100.0, position_fraction=0.3
    )

    # floor(30 / (10 * 1.01)) = 2 units: 20 plus 0.2 commission.
    np.testing.assert_allclose(run.units, [0, 2, 2], rtol=0)
    np.testing.assert_allclose(run.cash, [100, 79.8, 79.8], rtol=1e-12)


def test_fractional_position_fraction_commits_exactly_that_share() -> None:
    candles = candles_of([10, 10, 10], [10, 12, 12])

    run = simulate(
        candles, np.ones(3), Costs(), 100.0, fractional=True, position_fraction=0.25
    )

    np.testing.assert_allclose(run.units, [0, 2.5, 2.5], rtol=1e-15)
    np.testing.assert_allclose(run.equity, [100, 105, 105], rtol=1e-14)


def test_position_fraction_outside_its_range_is_refused() -> None:
    candles = candles_of([10, 10], [10, 10])

    with pytest.raises(ValueError, match="position_fraction"):
        simulate(candles, np.ones(2), Costs(), 100.0, position_fraction=0.0)


def test_backtest_fills_at_the_close_with_fractional_units() -> None:
    candles = candles_of([10, 11, 12, 13], [10, 11, 12, 13])
    spec = with_execution(
        spec_of("buy_and_hold"),
        fill="close",
        units="fractional",
        position_fraction=0.5,
    )

    result = run_on_candles(spec, candles)

    # 50 buys 5 units at close 0; 50 + 5 * 13 = 115 at the end.
    np.testing.assert_allclose(result.metrics.final_equity, 115.0, rtol=1e-12)


def test_backtest_goes_short_in_the_long_short_direction() -> None:
    # Crossover 2/3 wants [0, 0, 1, 1, 1, -1, -1] with shorts: long from
    # open 3 (4), short from open 6 (2) to the end.
    closes = [1.0, 2.0, 3.0, 4.0, 3.0, 2.0, 1.0]
    opens = [1.0, 1.5, 2.5, 4.0, 3.5, 2.5, 2.0]
    spec = with_execution(
        spec_of("moving_average_crossover", crossover(2, 3)),
        direction="long_short",
    )

    result = run_on_candles(spec, candles_of(opens, closes))

    # Long floor(100 / 4) - 1 = 24 units (the shave) at 4, sold at 2: cash
    # 52. Short floor(52 / 2) - 1 = 25 units at 2, marked at 1: 52 + 25 = 77.
    (trade,) = result.trades
    assert trade.units == 24.0
    np.testing.assert_allclose(trade.pnl, -48.0, rtol=1e-12)
    np.testing.assert_allclose(result.metrics.final_equity, 77.0, rtol=1e-12)


def test_backtest_stops_out_at_the_stop_loss_level() -> None:
    candles = candles_of([10, 10, 10, 8, 8], [10, 10, 9, 8, 8])
    spec = with_execution(spec_of("buy_and_hold"), stop_loss=0.05)

    result = run_on_candles(spec, candles)

    # 9 units at open 1; candle 2 falls from 10 to 9 through the level 9.5,
    # which fills: 10 + 9 * 9.5 = 95.5, flat from there.
    (trade,) = result.trades
    np.testing.assert_allclose(trade.exit_price, 9.5, rtol=1e-12)
    np.testing.assert_allclose(result.metrics.final_equity, 95.5, rtol=1e-12)


def test_backtest_takes_profit_at_its_level() -> None:
    candles = candles_of([10, 10, 10, 12], [10, 10, 11.5, 12])
    spec = with_execution(spec_of("buy_and_hold"), take_profit=0.1)

    result = run_on_candles(spec, candles)

    (trade,) = result.trades
    np.testing.assert_allclose(trade.exit_price, 11.0, rtol=1e-12)
    np.testing.assert_allclose(result.metrics.final_equity, 10 + 9 * 11.0, rtol=1e-12)
