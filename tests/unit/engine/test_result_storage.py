"""Results as the store keeps them: JSON layout, old rows, record views."""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from backcast.engine.results import (
    EQUITY_POINT_BYTES,
    METRIC_DEFINITIONS,
    TRADE_RECORD_BYTES,
    BacktestResult,
    EquityCurve,
    EquityPoint,
    Metrics,
    Trade,
    TradeTable,
)

MONDAY = datetime(2024, 1, 1, tzinfo=UTC)
# Epoch seconds of MONDAY.
MONDAY_SECONDS = 1_704_067_200

# A result row as stored before the newer metrics and the definitions.
OLD_STORED_RESULT: dict[str, Any] = {
    "metrics": {
        "total_return": 0.05,
        "cagr": 0.8,
        "annualized_volatility": 0.3,
        "sharpe_ratio": 1.5,
        "max_drawdown": 0.1,
        "max_drawdown_candles": 40,
        "n_trades": 1,
        "win_rate": 1.0,
        "profit_factor": 0.0,
        "exposure": 0.5,
        "commissions_paid": 2.5,
        "buy_and_hold_return": 0.04,
        "final_equity": 10_500.0,
        "n_candles": 744,
        "periods_per_year": 8766.0,
    },
    "trades": [
        {
            "entry_at": "2024-01-01T00:00:00+00:00",
            "exit_at": "2024-01-02T13:00:00+00:00",
            "entry_price": 100.0,
            "exit_price": 101.0,
            "units": 2.0,
            "pnl": 2.0,
            "return_fraction": 0.01,
        }
    ],
    "equity_curve": [
        ["2024-01-01T01:00:00+00:00", 10_000.0],
        ["2024-01-31T00:00:00+00:00", 10_500.0],
    ],
}


def sample_trades() -> TradeTable:
    hours = np.array([0, 5, 30], dtype=np.int64) * 3_600
    return TradeTable(
        entry_at=MONDAY_SECONDS + hours,
        exit_at=MONDAY_SECONDS + hours + 3_600,
        entry_price=np.array([10.0, 11.0, 12.5]),
        exit_price=np.array([11.0, 10.0, 13.0]),
        units=np.array([9.0, -9.0, 8.0]),
        pnl=np.array([9.0, 9.0, 4.0]),
        return_fraction=np.array([0.1, 1 / 11, 0.04]),
    )


def test_old_stored_result_reads_with_new_figures_at_zero() -> None:
    result = BacktestResult.from_dict(OLD_STORED_RESULT)

    metrics = result.metrics
    assert metrics.sharpe_ratio == 1.5
    assert metrics.max_drawdown_seconds == 0
    assert type(metrics.max_drawdown_seconds) is int
    assert (metrics.sortino_ratio, metrics.open_trade_pnl) == (0.0, 0.0)
    assert result.metric_definitions == METRIC_DEFINITIONS
    (trade,) = result.trades
    assert trade.exit_at == datetime(2024, 1, 2, 13, tzinfo=UTC)


def test_old_stored_result_writes_back_in_the_same_layout() -> None:
    stored = BacktestResult.from_dict(OLD_STORED_RESULT).to_dict()

    assert stored["trades"] == OLD_STORED_RESULT["trades"]
    assert stored["equity_curve"] == OLD_STORED_RESULT["equity_curve"]
    assert stored["metrics"] == {
        **OLD_STORED_RESULT["metrics"],
        **{
            name: 0
            for name in METRIC_DEFINITIONS
            if name not in OLD_STORED_RESULT["metrics"]
        },
    }


def test_result_survives_a_json_round_trip() -> None:
    result = BacktestResult(
        metrics=BacktestResult.from_dict(OLD_STORED_RESULT).metrics,
        trades=sample_trades(),
        equity_curve=EquityCurve(
            at=MONDAY_SECONDS + np.array([60, 120], dtype=np.int64),
            equity=np.array([100.0, 101.5]),
        ),
    )

    stored = json.loads(json.dumps(result.to_dict(), allow_nan=False))

    assert BacktestResult.from_dict(stored) == result
    assert stored["metric_definitions"] == dict(METRIC_DEFINITIONS)


def test_trade_dicts_match_the_records_they_describe() -> None:
    table = sample_trades()

    dicts = table.to_dicts()

    assert dicts[1] == {
        "entry_at": "2024-01-01T05:00:00+00:00",
        "exit_at": "2024-01-01T06:00:00+00:00",
        "entry_price": 11.0,
        "exit_price": 10.0,
        "units": -9.0,
        "pnl": 9.0,
        "return_fraction": 1 / 11,
    }
    for trade, data in zip(table, dicts, strict=True):
        assert data["entry_at"] == trade.entry_at.isoformat()
        assert data["exit_at"] == trade.exit_at.isoformat()


def test_trade_records_round_trip_and_a_byte_slice_is_a_trade_slice() -> None:
    table = sample_trades()

    data = table.to_bytes()

    assert len(data) == 3 * TRADE_RECORD_BYTES == 3 * 56
    assert TradeTable.from_bytes(data) == table
    assert TradeTable.from_bytes(data[TRADE_RECORD_BYTES:]) == table[1:]
    assert len(TradeTable.from_bytes(b"")) == 0
    # Little-endian records, fields in order: entry time first.
    assert int.from_bytes(data[:8], "little") == MONDAY_SECONDS


def test_trade_records_of_a_partial_trade_are_refused() -> None:
    with pytest.raises(ValueError, match="not whole trades of 56 bytes"):
        TradeTable.from_bytes(sample_trades().to_bytes()[:-1])


def test_equity_points_round_trip_as_little_endian_records() -> None:
    curve = EquityCurve(
        at=MONDAY_SECONDS + np.array([60, 120, 180], dtype=np.int64),
        equity=np.array([100.0, 99.25, 101.5]),
    )

    data = curve.to_bytes()

    assert len(data) == 3 * EQUITY_POINT_BYTES == 3 * 16
    assert EquityCurve.from_bytes(data) == curve
    assert int.from_bytes(data[:8], "little") == MONDAY_SECONDS + 60
    assert len(EquityCurve.from_bytes(b"")) == 0


def test_equity_points_of_a_partial_point_are_refused() -> None:
    curve = EquityCurve(np.array([MONDAY_SECONDS]), np.array([100.0]))

    with pytest.raises(ValueError, match="not whole points of 16 bytes"):
        EquityCurve.from_bytes(curve.to_bytes()[:-1])


def test_trade_table_reads_as_a_sequence_of_trades() -> None:
    table = sample_trades()

    assert len(table) == 3
    assert table[2] == Trade(
        entry_at=datetime(2024, 1, 2, 6, tzinfo=UTC),
        exit_at=datetime(2024, 1, 2, 7, tzinfo=UTC),
        entry_price=12.5,
        exit_price=13.0,
        units=8.0,
        pnl=4.0,
        return_fraction=0.04,
    )
    assert list(table[1:]) == [table[1], table[2]]
    assert TradeTable.of(table) == table


def test_equity_curve_reads_as_points() -> None:
    curve = EquityCurve.of(
        [
            EquityPoint(MONDAY, 100.0),
            EquityPoint(datetime(2024, 1, 3, tzinfo=UTC), 99.0),
        ]
    )

    assert curve.at.tolist() == [MONDAY_SECONDS, MONDAY_SECONDS + 2 * 86_400]
    assert curve[-1] == EquityPoint(datetime(2024, 1, 3, tzinfo=UTC), 99.0)
    assert EquityCurve.from_pairs(curve.to_pairs()) == curve


def test_every_metric_has_a_definition() -> None:
    assert set(METRIC_DEFINITIONS) == {f.name for f in fields(Metrics)}
    assert all(text.strip() for text in METRIC_DEFINITIONS.values())
