"""How each metric reads in the result table."""

from __future__ import annotations

from backcast.cli.views import duration_text, metrics_table
from backcast.v1 import result_pb2


def test_drawdown_duration_reads_in_days_hours_and_minutes() -> None:
    assert duration_text(3 * 86_400 + 4 * 3_600) == "3d 4h 0m"
    assert duration_text(5_400) == "1h 30m"
    assert duration_text(59) == "0m"


def test_metrics_table_lists_every_metric() -> None:
    metrics = result_pb2.Metrics(
        max_drawdown_seconds=90_000, expectancy_return=0.0125, open_trade_pnl=12.5
    )

    table = metrics_table(metrics)

    assert "1d 1h 0m" in table
    assert "1.25%" in table
    for field in result_pb2.Metrics.DESCRIPTOR.fields:
        assert field.name.replace("_", " ") in table
