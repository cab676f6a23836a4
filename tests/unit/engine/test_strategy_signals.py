"""Strategies decide a target position per candle close, flat during warm-up."""

from __future__ import annotations

import numpy as np
import pytest
from engine_support import candles_of, crossover

from backcast.engine.spec import STRATEGIES
from backcast.engine.strategies import SIGNALS, buy_and_hold, moving_average_crossover


def test_every_registered_strategy_has_a_signal_function() -> None:
    assert set(SIGNALS) == set(STRATEGIES)


@pytest.mark.parametrize("kind", ["simple", "exponential"])
def test_crossover_is_long_only_while_the_fast_average_is_above(kind: str) -> None:
    # Simple: fast (2) = [-, 1.5, 2.5, 3.5, 3.5, 2.5, 1.5],
    #         slow (3) = [-, -, 2, 3, 3.33, 3, 2].
    # Exponential: fast = [-, 1.5, 2.5, 3.5, 3.17, 2.39, 1.46],
    #              slow = [-, -, 2, 3, 3, 2.5, 1.75].
    closes = [1.0, 2.0, 3.0, 4.0, 3.0, 2.0, 1.0]

    signals = moving_average_crossover(
        candles_of(closes, closes), crossover(2, 3, kind)
    )

    np.testing.assert_allclose(signals.target, [0, 0, 1, 1, 1, 0, 0], rtol=0)
    assert signals.first_decision == 2


def test_crossover_stays_flat_during_warm_up_on_a_rising_series() -> None:
    closes = [float(price) for price in range(1, 11)]

    signals = moving_average_crossover(candles_of(closes, closes), crossover(2, 5))

    np.testing.assert_allclose(signals.target, [0, 0, 0, 0, 1, 1, 1, 1, 1, 1], rtol=0)
    assert signals.first_decision == 4


@pytest.mark.parametrize("kind", ["simple", "exponential"])
def test_crossover_never_trades_a_flat_market(kind: str) -> None:
    closes = [1.1] * 40 + [1.3] * 400

    signals = moving_average_crossover(
        candles_of(closes, closes), crossover(3, 7, kind)
    )

    # Long only while the step up works through the averages; once both have
    # settled, rounding differences between them must not flip the position.
    assert not np.any(signals.target[:40])
    assert np.all(signals.target[40:43])
    assert not np.any(signals.target[-200:])


def test_buy_and_hold_wants_a_position_from_the_first_close() -> None:
    closes = [1.0, 2.0, 3.0]

    signals = buy_and_hold(candles_of(closes, closes), {})

    np.testing.assert_allclose(signals.target, [1, 1, 1], rtol=0)
    assert signals.first_decision == 0
