"""The backtest engine: candles in, metrics, trades and equity curve out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backcast.engine.backtest import run_backtest
    from backcast.engine.local import backtest_csv

__all__ = ["backtest_csv", "run_backtest"]


def __getattr__(name: str) -> Any:
    # The gateway imports only the spec types; loading numpy and the engine
    # on first use keeps its start-up light.
    if name == "run_backtest":
        from backcast.engine.backtest import run_backtest

        return run_backtest
    if name == "backtest_csv":
        from backcast.engine.local import backtest_csv

        return backtest_csv
    raise AttributeError(name)
