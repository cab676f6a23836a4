"""The full equity curve rebuilt from the account fills and the candles."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from engine_support import START, candles_of, crossover, spec_of

from backcast.engine import backtest
from backcast.engine.backtest import run_on_candles
from backcast.engine.candles import Candles
from backcast.engine.results import AccountFills, full_equity_curve
from backcast.engine.simulation import Simulation
from backcast.engine.spec import STRATEGIES, BacktestSpec, Costs, Execution
from backcast.marketdata.synthetic import synthetic_candles

COSTS = Costs(commission=0.001, slippage_bps=5.0)
N_CANDLES = 20_000


def recorded_run(
    spec: BacktestSpec, candles: Candles, monkeypatch: pytest.MonkeyPatch
) -> tuple[AccountFills, Simulation]:
    """The result's fills and the simulation the backtest made them from."""
    made: list[Simulation] = []
    original = backtest.simulate

    def recording(*args: Any, **kwargs: Any) -> Simulation:
        made.append(original(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(backtest, "simulate", recording)
    result = run_on_candles(spec, candles)
    assert result.account_fills is not None
    return result.account_fills, made[0]


def minute_candles(n: int = N_CANDLES) -> Candles:
    spec = spec_of(instrument="SYN-EQUITY", n_candles=n)
    return synthetic_candles(spec.instrument, spec.interval, spec.start_at, spec.end_at)


EXECUTIONS = {
    "next-open": Execution(),
    "fill-at-close": Execution(fill="close"),
    "shorts": Execution(direction="long_short"),
    "shorts-at-close-fractional": Execution(
        fill="close", units="fractional", direction="long_short"
    ),
    "stops-and-part-of-equity": Execution(
        stop_loss=0.01, take_profit=0.02, position_fraction=0.6
    ),
}


@pytest.mark.parametrize("strategy", list(STRATEGIES))
@pytest.mark.parametrize("execution", list(EXECUTIONS))
def test_rebuilt_equity_equals_the_simulation_bit_for_bit(
    strategy: str, execution: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = EXECUTIONS[execution]
    if options.direction == "long_short" and not STRATEGIES[strategy].supports_short:
        pytest.skip(f"{strategy} has no short rule")
    params = crossover(10, 30) if strategy == "moving_average_crossover" else {}
    spec = replace(
        spec_of(strategy, params, n_candles=N_CANDLES, initial_cash=10_000.0),
        costs=COSTS,
        execution=options,
    )
    candles = minute_candles()

    fills, simulation = recorded_run(spec, candles, monkeypatch)
    curve = full_equity_curve(fills, candles, spec.initial_cash, 60)

    assert len(fills) >= (1 if strategy == "buy_and_hold" else 3)
    np.testing.assert_array_equal(curve.equity, simulation.equity)
    np.testing.assert_array_equal(curve.at, candles.times + 60)


def test_equity_before_the_first_fill_is_the_initial_cash() -> None:
    candles = candles_of([10, 11, 12, 13], [10.5, 11.5, 12.5, 13.5])
    # 9 units bought at the open of candle 1 (11), 1.0 of cash left.
    fills = AccountFills(
        at=candles.times[[1]], cash=np.array([1.0]), units=np.array([9.0])
    )

    curve = full_equity_curve(fills, candles, 100.0, 60)

    assert curve.equity.tolist() == [100.0, 1 + 9 * 11.5, 1 + 9 * 12.5, 1 + 9 * 13.5]
    assert curve[0].at == START.replace(minute=1)


def test_a_backtest_that_never_trades_rebuilds_a_flat_curve() -> None:
    # Falling closes keep the fast average below the slow one: never long.
    candles = candles_of([13, 12, 11, 10], [12.5, 11.5, 10.5, 9.5])
    result = run_on_candles(
        spec_of("moving_average_crossover", crossover(2, 3)), candles
    )
    assert result.account_fills is not None and len(result.account_fills) == 0

    curve = full_equity_curve(result.account_fills, candles, 100.0, 60)

    assert curve.equity.tolist() == [100.0] * 4


def test_candles_without_a_fill_candle_are_refused() -> None:
    candles = minute_candles(2_000)
    between = AccountFills(
        at=np.array([candles.times[5] + 30]), cash=np.ones(1), units=np.ones(1)
    )
    after = AccountFills(
        at=np.array([candles.times[-1] + 60]), cash=np.ones(1), units=np.ones(1)
    )

    with pytest.raises(ValueError, match="missing from the candles"):
        full_equity_curve(between, candles, 100.0, 60)
    with pytest.raises(ValueError, match="missing from the candles"):
        full_equity_curve(after, candles, 100.0, 60)


def test_fills_survive_their_byte_and_text_forms() -> None:
    fills = AccountFills(
        at=np.array([60, 180, 7_200], dtype=np.int64),
        cash=np.array([0.1, 1e6 / 3, -5.5]),
        units=np.array([3.0, 0.0, -2.25]),
    )

    data = fills.to_bytes()

    assert len(data) == 3 * 24
    assert AccountFills.from_bytes(data) == fills
    assert AccountFills.from_text(fills.to_text()) == fills
    assert AccountFills.from_bytes(b"") == AccountFills(
        np.empty(0, np.int64), np.empty(0), np.empty(0)
    )
    with pytest.raises(ValueError, match="not whole fills"):
        AccountFills.from_bytes(data[:-1])
