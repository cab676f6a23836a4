"""Specs name each bad field: execution bounds, parameter bounds, cross checks."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from engine_support import spec_of

from backcast.engine.spec import (
    STRATEGIES,
    BacktestSpec,
    Execution,
    resolve_params,
    validate_spec,
)


def fields_of_problems(spec: BacktestSpec) -> list[str]:
    return [violation.field for violation in validate_spec(spec)]


def test_default_execution_is_valid_for_every_strategy() -> None:
    for name in STRATEGIES:
        params, problems = resolve_params(name, {}, f"spec.strategy.{name}")
        assert problems == []
        assert fields_of_problems(spec_of(name, params)) == []


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"fill": "open"}, "fill"),
        ({"units": "half"}, "units"),
        ({"direction": "short_only"}, "direction"),
        ({"position_fraction": 0.0}, "position_fraction"),
        ({"position_fraction": 1.5}, "position_fraction"),
        ({"position_fraction": float("nan")}, "position_fraction"),
        ({"stop_loss": -0.1}, "stop_loss"),
        ({"stop_loss": 1.0}, "stop_loss"),
        ({"stop_loss": 1.5}, "stop_loss"),
        ({"take_profit": -1.0}, "take_profit"),
        ({"take_profit": 100.5}, "take_profit"),
        ({"take_profit": float("inf")}, "take_profit"),
    ],
)
def test_execution_out_of_bounds_names_its_field(
    options: dict[str, Any], field: str
) -> None:
    spec = replace(spec_of(), execution=Execution(**options))

    assert fields_of_problems(spec) == [f"spec.execution.{field}"]


def test_execution_at_its_bounds_is_valid() -> None:
    execution = Execution(position_fraction=1.0, stop_loss=0.999, take_profit=100.0)

    assert fields_of_problems(replace(spec_of(), execution=execution)) == []


def test_long_short_is_refused_for_a_strategy_without_a_short_rule() -> None:
    spec = replace(spec_of("buy_and_hold"), execution=Execution(direction="long_short"))

    (problem,) = validate_spec(spec)

    assert problem.field == "spec.execution.direction"
    assert "buy_and_hold" in problem.description


def test_long_short_is_accepted_by_strategies_with_a_short_rule() -> None:
    assert not STRATEGIES["buy_and_hold"].supports_short
    for name, info in STRATEGIES.items():
        if not info.supports_short:
            continue
        params, _ = resolve_params(name, {}, "spec")
        spec = replace(
            spec_of(name, params), execution=Execution(direction="long_short")
        )
        assert fields_of_problems(spec) == [], name


@pytest.mark.parametrize(
    ("name", "raw", "field"),
    [
        ("rsi_mean_reversion", {"period": 1}, "period"),
        ("rsi_mean_reversion", {"period": 1001}, "period"),
        ("rsi_mean_reversion", {"oversold": 50.0}, "oversold"),
        ("rsi_mean_reversion", {"overbought": 100.0}, "overbought"),
        ("rsi_mean_reversion", {"overbought": 50.0}, "overbought"),
        ("bollinger_breakout", {"period": 1}, "period"),
        ("bollinger_breakout", {"width": -1.0}, "width"),
        ("bollinger_breakout", {"width": 10.5}, "width"),
        ("macd_trend", {"fast_period": 1000, "slow_period": 1000}, "fast_period"),
        ("macd_trend", {"signal_period": 1001}, "signal_period"),
        ("donchian_breakout", {"entry_period": 1}, "entry_period"),
        ("donchian_breakout", {"exit_period": 10001}, "exit_period"),
        ("donchian_breakout", {"entry_period": 2.5}, "entry_period"),
    ],
)
def test_parameter_out_of_bounds_names_the_parameter(
    name: str, raw: dict[str, Any], field: str
) -> None:
    _, problems = resolve_params(name, raw, f"spec.strategy.{name}")

    assert f"spec.strategy.{name}.{field}" in [p.field for p in problems]


def test_open_bounds_say_so_in_the_message() -> None:
    _, problems = resolve_params(
        "rsi_mean_reversion", {"oversold": 50.0}, "spec.strategy.rsi_mean_reversion"
    )

    assert problems[0].description == "50.0 is outside (0, 50)"


def test_macd_slow_period_must_exceed_the_fast_one() -> None:
    _, problems = resolve_params(
        "macd_trend", {"fast_period": 26, "slow_period": 12}, "spec.strategy.macd"
    )

    assert [p.field for p in problems] == ["spec.strategy.macd.slow_period"]


def test_new_strategies_fill_in_their_documented_defaults() -> None:
    defaults = {
        "rsi_mean_reversion": {"period": 14, "oversold": 30.0, "overbought": 70.0},
        "bollinger_breakout": {"period": 20, "width": 2.0},
        "macd_trend": {"fast_period": 12, "slow_period": 26, "signal_period": 9},
        "donchian_breakout": {"entry_period": 20, "exit_period": 10},
    }
    for name, expected in defaults.items():
        params, problems = resolve_params(name, {}, "spec")
        assert (params, problems) == (expected, [])


def test_spec_round_trips_through_its_dict_with_execution() -> None:
    execution = Execution(
        fill="close",
        units="fractional",
        position_fraction=0.4,
        direction="long_short",
        stop_loss=0.05,
        take_profit=0.2,
    )
    spec = replace(spec_of("macd_trend", {"fast_period": 3}), execution=execution)

    assert BacktestSpec.from_dict(spec.to_dict()) == spec


def test_spec_stored_without_execution_reads_the_defaults() -> None:
    stored = spec_of().to_dict()
    del stored["execution"]

    assert BacktestSpec.from_dict(stored).execution == Execution()
