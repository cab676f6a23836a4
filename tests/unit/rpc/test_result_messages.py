"""Results and metrics through `backcast.v1` messages and back."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from backcast.engine.results import (
    METRIC_DEFINITIONS,
    BacktestResult,
    EquityCurve,
    Metrics,
    TradeTable,
)
from backcast.errors import InvalidArgument
from backcast.rpc.translate import (
    metrics_to_proto,
    result_from_proto,
    result_to_proto,
)
from backcast.v1 import result_pb2

MONDAY_SECONDS = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp())


def sample_metrics() -> Metrics:
    values: dict[str, Any] = {f.name: 0.5 + i for i, f in enumerate(fields(Metrics))}
    counts = {f.name: 7 + i for i, f in enumerate(fields(Metrics)) if f.type == "int"}
    return Metrics(**{**values, **counts})


def sample_result() -> BacktestResult:
    return BacktestResult(
        metrics=sample_metrics(),
        trades=TradeTable(
            entry_at=MONDAY_SECONDS + np.array([0, 7_200], dtype=np.int64),
            exit_at=MONDAY_SECONDS + np.array([3_600, 9_000], dtype=np.int64),
            entry_price=np.array([10.0, 11.0]),
            exit_price=np.array([11.0, 10.5]),
            units=np.array([9.0, -8.0]),
            pnl=np.array([9.0, 4.0]),
            return_fraction=np.array([0.1, 4 / 88]),
        ),
        equity_curve=EquityCurve(
            at=MONDAY_SECONDS + np.array([60, 120, 180], dtype=np.int64),
            equity=np.array([100.0, 109.0, 113.0]),
        ),
    )


def test_domain_and_proto_metrics_have_the_same_fields() -> None:
    domain = {f.name for f in fields(Metrics)}
    wire = set(result_pb2.Metrics.DESCRIPTOR.fields_by_name)

    assert domain == wire


def test_metrics_carry_every_field_to_the_message() -> None:
    metrics = sample_metrics()

    message = metrics_to_proto(metrics)

    for name, value in metrics.to_dict().items():
        assert getattr(message, name) == value, name


def test_result_survives_a_proto_round_trip() -> None:
    result = sample_result()

    message = result_to_proto(result)

    assert result_from_proto(message) == result
    assert dict(message.metric_definitions) == dict(METRIC_DEFINITIONS)


def test_trades_and_equity_sent_as_columns_survive_a_proto_round_trip() -> None:
    result = sample_result()

    message = result_to_proto(result, columns=True)

    assert len(message.trades) == 0
    assert len(message.equity_curve) == 0
    assert list(message.trade_columns.units) == [9.0, -8.0]
    assert list(message.equity_columns.times) == result.equity_curve.at.tolist()
    assert result_from_proto(message) == result


def test_equity_columns_of_different_lengths_are_refused() -> None:
    message = result_to_proto(sample_result(), columns=True)
    message.equity_columns.equity.append(1.0)

    with pytest.raises(InvalidArgument, match="equity values; every point needs"):
        result_from_proto(message)


def test_trade_columns_of_different_lengths_are_refused() -> None:
    message = result_to_proto(sample_result(), columns=True)
    message.trade_columns.pnls.append(1.0)

    with pytest.raises(InvalidArgument, match="3 pnls.*every trade needs one"):
        result_from_proto(message)


def test_trade_times_are_whole_seconds_of_the_fills() -> None:
    message = result_to_proto(sample_result())

    second = message.trades[1]
    assert second.entry_time.ToDatetime(tzinfo=UTC) == datetime(
        2024, 1, 1, 2, tzinfo=UTC
    )
    assert (second.exit_time.seconds - second.entry_time.seconds) == 1_800
    assert message.equity_curve[0].time.seconds == MONDAY_SECONDS + 60


def test_message_without_definitions_gets_the_current_ones() -> None:
    message = result_to_proto(sample_result())
    message.metric_definitions.clear()

    assert result_from_proto(message).metric_definitions == METRIC_DEFINITIONS


def test_definitions_from_the_message_are_kept() -> None:
    message = result_to_proto(sample_result())
    message.metric_definitions["sharpe_ratio"] = "an older wording"

    definitions = result_from_proto(message).metric_definitions

    assert definitions["sharpe_ratio"] == "an older wording"
