"""RSI, Bollinger, MACD and Donchian rules on tiny series, worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from engine_support import candles_of, crossover

from backcast.engine.candles import Candles
from backcast.engine.strategies import (
    bollinger_breakout,
    donchian_breakout,
    macd_trend,
    moving_average_crossover,
    rsi_mean_reversion,
)


def closing_at(closes: list[float]) -> Candles:
    """Candles that open at their close, so high = low = close."""
    return candles_of(closes, closes)


# Changes of +1 or -1 make RSI = 100 * average gain: with period 2 it reads
# [-, -, 100, 50, 25, 12.5, 56.25, 78.125, 89.0625, 94.53125].
RSI_CLOSES = [10.0, 11.0, 12.0, 11.0, 10.0, 9.0, 10.0, 11.0, 12.0, 13.0]
RSI_PARAMS = {"period": 2, "oversold": 30.0, "overbought": 70.0}


def test_rsi_buys_below_oversold_and_exits_above_overbought() -> None:
    signals = rsi_mean_reversion(closing_at(RSI_CLOSES), RSI_PARAMS)

    # 100 at index 2 is above overbought but a flat position has nothing to
    # exit; 25 at index 4 enters, 78.125 at index 7 exits.
    np.testing.assert_array_equal(signals.target, [0, 0, 0, 0, 1, 1, 1, 0, 0, 0])
    assert signals.first_decision == 2


def test_rsi_short_rule_mirrors_the_long_one() -> None:
    signals = rsi_mean_reversion(closing_at(RSI_CLOSES), RSI_PARAMS, shorts=True)

    # Above overbought goes short (index 2 and 7), below oversold turns long.
    np.testing.assert_array_equal(signals.target, [0, 0, -1, -1, 1, 1, 1, -1, -1, -1])


def test_rsi_waits_for_its_first_value() -> None:
    # A fall on the first change would read oversold at once if the
    # warm-up were skipped.
    closes = [10.0, 5.0, 5.0, 5.0]

    signals = rsi_mean_reversion(closing_at(closes), {**RSI_PARAMS, "period": 3})

    np.testing.assert_array_equal(signals.target, [0, 0, 0, 1])
    assert signals.first_decision == 3


# Period 3, width 1: middle and deviation of the last three closes.
BOLLINGER_CLOSES = [10.0, 10.0, 10.0, 13.0, 13.0, 10.0, 7.0, 7.0, 10.0]
BOLLINGER_PARAMS = {"period": 3, "width": 1.0}


def test_bollinger_buys_above_the_upper_band_and_exits_below_the_middle() -> None:
    signals = bollinger_breakout(closing_at(BOLLINGER_CLOSES), BOLLINGER_PARAMS)

    # 2: a flat window, close on the band, no entry. 3: mean 11, sd sqrt(2),
    # 13 > 12.41 enters. 4: 13 stays above the middle 12. 5: 10 < 12 exits.
    # 8: mean 8, sd sqrt(2), 10 > 9.41 enters again.
    np.testing.assert_array_equal(signals.target, [0, 0, 0, 1, 1, 0, 0, 0, 1])
    assert signals.first_decision == 2


def test_bollinger_short_rule_mirrors_the_long_one() -> None:
    signals = bollinger_breakout(
        closing_at(BOLLINGER_CLOSES), BOLLINGER_PARAMS, shorts=True
    )

    # 5: 10 is below the lower band 12 - sqrt(2): the long turns short.
    # 6, 7: closes stay at or below the middle. 8: 10 above the upper band
    # exits the short and goes long.
    np.testing.assert_array_equal(signals.target, [0, 0, 0, 1, 1, -1, -1, -1, 1])


# fast 1 (the close itself), slow 2 and signal 2 (alpha 2/3): MACD from
# index 1 is [0.5, 0.8333, 0.2778, -0.5741, -0.5247, -0.1749], its signal
# from index 2 is [0.6667, 0.4074, -0.2469, -0.4321, -0.2606].
MACD_CLOSES = [1.0, 2.0, 4.0, 4.0, 2.0, 1.0, 1.0]
MACD_PARAMS = {"fast_period": 1, "slow_period": 2, "signal_period": 2}


def test_macd_is_long_while_the_line_is_above_its_signal() -> None:
    signals = macd_trend(closing_at(MACD_CLOSES), MACD_PARAMS)

    np.testing.assert_array_equal(signals.target, [0, 0, 1, 0, 0, 0, 1])
    assert signals.first_decision == 2


def test_macd_short_rule_mirrors_the_long_one() -> None:
    signals = macd_trend(closing_at(MACD_CLOSES), MACD_PARAMS, shorts=True)

    np.testing.assert_array_equal(signals.target, [0, 0, 1, -1, -1, -1, 1])


def test_macd_never_trades_a_flat_market() -> None:
    closes = [5.0] * 30 + [7.0] * 300

    signals = macd_trend(
        closing_at(closes),
        {"fast_period": 3, "slow_period": 7, "signal_period": 4},
        shorts=True,
    )

    assert not np.any(signals.target[:30])
    assert not np.any(signals.target[-100:])


# Entry window 3, exit window 2, of the candles before the current one.
DONCHIAN_CLOSES = [5.0, 6.0, 5.0, 7.0, 6.0, 4.0, 3.0, 5.0, 6.0]
DONCHIAN_PARAMS = {"entry_period": 3, "exit_period": 2}


def test_donchian_buys_above_the_prior_high_and_exits_below_the_prior_low() -> None:
    signals = donchian_breakout(closing_at(DONCHIAN_CLOSES), DONCHIAN_PARAMS)

    # 3: 7 > max(5, 6, 5) enters; with the current candle in its own window
    # 7 > 7 would not. 5: 4 < min(7, 6) exits. 8: 6 > max(4, 3, 5) enters.
    np.testing.assert_array_equal(signals.target, [0, 0, 0, 1, 1, 0, 0, 0, 1])
    assert signals.first_decision == 3


def test_donchian_short_rule_mirrors_the_long_one() -> None:
    signals = donchian_breakout(
        closing_at(DONCHIAN_CLOSES), DONCHIAN_PARAMS, shorts=True
    )

    # 5: 4 < min(5, 7, 6) turns the long short. 7: 5 > max(4, 3) exits it.
    np.testing.assert_array_equal(signals.target, [0, 0, 0, 1, 1, -1, -1, 0, 1])


def test_donchian_waits_for_both_windows() -> None:
    # 1 breaks above the one candle before it, but the exit window of 3 is
    # not full until index 3.
    closes = [5.0, 6.0, 7.0, 8.0]

    signals = donchian_breakout(
        closing_at(closes), {"entry_period": 2, "exit_period": 3}
    )

    np.testing.assert_array_equal(signals.target, [0, 0, 0, 1])
    assert signals.first_decision == 3


@pytest.mark.parametrize("kind", ["simple", "exponential"])
def test_crossover_short_rule_is_short_while_the_fast_average_is_below(
    kind: str,
) -> None:
    closes = [1.0, 2.0, 3.0, 4.0, 3.0, 2.0, 1.0]

    signals = moving_average_crossover(
        closing_at(closes), crossover(2, 3, kind), shorts=True
    )

    np.testing.assert_array_equal(signals.target, [0, 0, 1, 1, 1, -1, -1])
