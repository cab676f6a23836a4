"""What a backtest produces: metrics, closed trades and the equity curve.

Plain dataclasses that the store keeps as JSON and the services translate to
`backcast.v1.BacktestResult`. Times are UTC datetimes, money in the quote
currency, returns as fractions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Metrics:
    """Headline figures; the meaning of each is in `protos/.../result.proto`."""

    total_return: float
    cagr: float
    annualized_volatility: float
    sharpe_ratio: float
    max_drawdown: float
    max_drawdown_candles: int
    n_trades: int
    win_rate: float
    profit_factor: float
    exposure: float
    commissions_paid: float
    buy_and_hold_return: float
    final_equity: float
    n_candles: int
    periods_per_year: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Metrics:
        return cls(**{f.name: data[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class Trade:
    """One closed round trip; `units` is negative for a short."""

    entry_at: datetime
    exit_at: datetime
    entry_price: float
    exit_price: float
    units: float
    pnl: float
    return_fraction: float

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["entry_at"] = self.entry_at.isoformat()
        data["exit_at"] = self.exit_at.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Trade:
        return cls(
            entry_at=datetime.fromisoformat(data["entry_at"]),
            exit_at=datetime.fromisoformat(data["exit_at"]),
            entry_price=data["entry_price"],
            exit_price=data["exit_price"],
            units=data["units"],
            pnl=data["pnl"],
            return_fraction=data["return_fraction"],
        )


@dataclass(frozen=True)
class EquityPoint:
    at: datetime
    equity: float


@dataclass(frozen=True)
class BacktestResult:
    """Metrics, closed trades in time order, and the downsampled equity curve."""

    metrics: Metrics
    trades: tuple[Trade, ...]
    equity_curve: tuple[EquityPoint, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": self.metrics.to_dict(),
            "trades": [t.to_dict() for t in self.trades],
            "equity_curve": [[p.at.isoformat(), p.equity] for p in self.equity_curve],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BacktestResult:
        return cls(
            metrics=Metrics.from_dict(data["metrics"]),
            trades=tuple(Trade.from_dict(t) for t in data["trades"]),
            equity_curve=tuple(
                EquityPoint(datetime.fromisoformat(at), equity)
                for at, equity in data["equity_curve"]
            ),
        )
