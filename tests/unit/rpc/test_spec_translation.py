"""Specs cross the wire and back unchanged; the registry is listed as sent."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from backcast.engine.spec import (
    STRATEGIES,
    BacktestSpec,
    Costs,
    Execution,
    Interval,
    StrategySpec,
    resolve_params,
)
from backcast.errors import InvalidArgument
from backcast.rpc import translate
from backcast.v1 import backtest_service_pb2 as api
from backcast.v1 import spec_pb2

START = datetime(2024, 1, 1, tzinfo=UTC)
END = datetime(2024, 2, 1, tzinfo=UTC)
DEFAULTS = Execution()


def spec_with(name: str, execution: Execution = DEFAULTS) -> BacktestSpec:
    params, problems = resolve_params(name, {}, "spec")
    assert problems == []
    return BacktestSpec(
        strategy=StrategySpec(name, params),
        instrument="SYN-BTCUSD",
        interval=Interval.ONE_HOUR,
        start_at=START,
        end_at=END,
        costs=Costs(commission=0.001, slippage_bps=2.0),
        initial_cash=5_000.0,
        execution=execution,
    )


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_strategy_round_trips_through_the_proto(name: str) -> None:
    spec = spec_with(name)

    assert translate.spec_from_proto(translate.spec_to_proto(spec)) == spec


@pytest.mark.parametrize(
    "execution",
    [
        Execution(),
        Execution(
            fill="close",
            units="fractional",
            position_fraction=0.25,
            direction="long_short",
            stop_loss=0.05,
            take_profit=0.5,
        ),
    ],
)
def test_execution_round_trips_through_the_proto(execution: Execution) -> None:
    spec = spec_with("donchian_breakout", execution)

    message = translate.spec_to_proto(spec)

    assert translate.spec_from_proto(message) == spec


def test_execution_enums_map_to_their_lowercase_names() -> None:
    spec = spec_with(
        "macd_trend",
        Execution(fill="close", units="fractional", direction="long_short"),
    )

    execution = translate.spec_to_proto(spec).execution

    assert execution.fill == spec_pb2.FILL_CLOSE
    assert execution.units == spec_pb2.UNITS_FRACTIONAL
    assert execution.direction == spec_pb2.DIRECTION_LONG_SHORT


def test_unset_execution_means_the_defaults() -> None:
    message = translate.spec_to_proto(spec_with("rsi_mean_reversion"))
    message.ClearField("execution")

    assert translate.spec_from_proto(message).execution == Execution()


def test_bad_execution_names_its_fields() -> None:
    message = translate.spec_to_proto(spec_with("buy_and_hold"))
    message.execution.stop_loss = 1.5
    message.execution.direction = spec_pb2.DIRECTION_LONG_SHORT
    message.execution.fill = 7  # type: ignore[assignment]  # an unknown value

    with pytest.raises(InvalidArgument) as raised:
        translate.spec_from_proto(message)

    fields = sorted(v.field for v in raised.value.violations)
    assert fields == [
        "spec.execution.direction",
        "spec.execution.fill",
        "spec.execution.stop_loss",
    ]


def test_missing_strategy_lists_every_registered_one() -> None:
    message = translate.spec_to_proto(spec_with("buy_and_hold"))
    message.ClearField("strategy")

    with pytest.raises(InvalidArgument) as raised:
        translate.spec_from_proto(message)

    (problem,) = raised.value.violations
    assert problem.field == "spec.strategy"
    for name in STRATEGIES:
        assert name in problem.description


def test_listed_strategies_follow_the_registry() -> None:
    listed = translate.strategies_to_proto().strategies

    assert [s.name for s in listed] == list(STRATEGIES)
    for description in listed:
        info = STRATEGIES[description.name]
        assert description.supports_short == info.supports_short
        assert [p.name for p in description.parameters] == [p.name for p in info.params]


def test_listed_bounds_are_inclusive_on_the_wire() -> None:
    listed = {s.name: s for s in translate.strategies_to_proto().strategies}
    rsi = {p.name: p for p in listed["rsi_mean_reversion"].parameters}
    crossover = {p.name: p for p in listed["moving_average_crossover"].parameters}

    oversold = rsi["oversold"]
    assert oversold.kind == api.ParameterDescription.KIND_NUMBER
    assert oversold.default_number == 30.0
    assert 0.0 < oversold.minimum < 1e-300
    assert oversold.maximum == math.nextafter(50.0, 0.0)
    assert rsi["period"].kind == api.ParameterDescription.KIND_INTEGER
    assert (rsi["period"].minimum, rsi["period"].maximum) == (2.0, 1000.0)
    kind = crossover["kind"]
    assert kind.kind == api.ParameterDescription.KIND_CHOICE
    assert (kind.default_choice, list(kind.choices)) == (
        "simple",
        ["simple", "exponential"],
    )


def test_stored_spec_without_execution_still_translates() -> None:
    stored = spec_with("bollinger_breakout").to_dict()
    del stored["execution"]

    message = translate.spec_to_proto(BacktestSpec.from_dict(stored))

    assert message.execution.position_fraction == 1.0
    assert translate.spec_from_proto(message) == replace(
        spec_with("bollinger_breakout"), execution=Execution()
    )
