"""Backtest results between the engine's form and the results table's."""

from __future__ import annotations

from backcast.engine.results import (
    BacktestResult,
    EquityCurve,
    Metrics,
    TradeTable,
)
from backcast.jobqueue.jobs import ResultPage, StoredResult


def stored_result(result: BacktestResult) -> StoredResult:
    """`result` as `JobStore.complete` stores it."""
    fills = result.account_fills
    return StoredResult(
        metrics=result.metrics.to_dict(),
        trade_records=result.trades.to_bytes(),
        equity_points=result.equity_curve.to_bytes(),
        account_fills=None if fills is None else fills.to_bytes(),
        data_version=result.data_version,
    )


def result_of_page(page: ResultPage) -> BacktestResult:
    """The stored result of `page`, holding the page's trades only.

    The account fills are left out: `GetEquityCurve` reads them on its own.
    """
    return BacktestResult(
        metrics=Metrics.from_dict(page.metrics),
        trades=TradeTable.from_bytes(page.trade_records),
        equity_curve=EquityCurve.from_bytes(page.equity_points),
    )
