"""Fills, cash and equity of a target-position series; the execution model.

- A decision at candle t uses data up to t's close. Strategies report a
  target of 0.0 (flat) until their indicators have warmed up.
- A change of target is a market order that fills at the open of candle
  t + 1; a decision on the last candle has no next open and never fills.
- Entries go all-in with whole units: units = floor(cash * (1 - 2**-52) /
  (price * (1 + commission))) at the fill price. The 2**-52 shave keeps
  rounding from spending a cent more than the cash held. An entry that
  cannot buy one unit is skipped; the strategy's next change of target
  decides again. Positions are long-only for now.
- Slippage is adverse on every fill: buys at open * (1 + bps / 1e4), sells
  at open * (1 - bps / 1e4). Commission is a fraction of the traded
  notional at those prices, charged at entry and at exit.
- Equity is cash + units * close at every candle's close. A position still
  open after the last candle is marked at the last close; it is not a
  closed trade.

Only candles where the target changes are visited in Python; cash and units
between fills are spread over the candles with numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from backcast.engine.candles import Candles, FloatArray
from backcast.engine.spec import Costs

# Shaved off the cash before sizing, so units * price * (1 + commission)
# cannot round to more than the cash held.
_SIZING_SHAVE = 1.0 - 2.0**-52


@dataclass(frozen=True)
class ClosedTrade:
    """A round trip by candle index: entry and exit are the fill candles."""

    entry_index: int
    exit_index: int
    entry_price: float
    exit_price: float
    units: float
    pnl: float
    return_fraction: float


@dataclass(frozen=True, eq=False)
class Simulation:
    """State after every candle's close, the closed trades and costs paid."""

    equity: FloatArray
    cash: FloatArray
    units: FloatArray
    trades: tuple[ClosedTrade, ...]
    commissions_paid: float


@dataclass
class _Book:
    """The account while walking through fills, in fill order."""

    cash: float
    units: float = 0.0
    entry_index: int = 0
    entry_price: float = 0.0
    entry_cost: float = 0.0
    commissions: float = 0.0
    fill_indices: list[int] = field(default_factory=list)
    cash_after: list[float] = field(default_factory=list)
    units_after: list[float] = field(default_factory=list)
    trades: list[ClosedTrade] = field(default_factory=list)

    def record(self, index: int) -> None:
        self.fill_indices.append(index)
        self.cash_after.append(self.cash)
        self.units_after.append(self.units)


def simulate(
    candles: Candles, target: FloatArray, costs: Costs, initial_cash: float
) -> Simulation:
    """Fill the changes of `target` under the execution model of this module."""
    n = len(candles)
    if target.shape != (n,):
        raise ValueError(f"target has shape {target.shape}; candles have ({n},)")
    if bool(np.any(target < 0)):
        raise ValueError("target holds a short position; only long is supported")

    # The last decision has no next open, so it is left out.
    wanted = target[: n - 1] > 0
    changes = np.flatnonzero(np.diff(wanted, prepend=False))
    book = _Book(cash=initial_cash)
    opens = candles.open
    for decision in changes.tolist():
        fill = decision + 1
        if wanted[decision]:
            _enter(book, fill, float(opens[fill]), costs)
        elif book.units > 0:
            _exit(book, fill, float(opens[fill]), costs)
    return _spread(book, candles, initial_cash)


def _enter(book: _Book, fill: int, open_price: float, costs: Costs) -> None:
    price = open_price * (1.0 + costs.slippage_bps / 1e4)
    units = math.floor(book.cash * _SIZING_SHAVE / (price * (1.0 + costs.commission)))
    cost, fee = _cost_and_fee(units, price, costs.commission)
    if units > 0 and cost + fee > book.cash:
        # Guard against a last rounding step; never spend more than the cash.
        units -= 1
        cost, fee = _cost_and_fee(units, price, costs.commission)
    if units < 1:
        return
    book.cash = book.cash - (cost + fee)
    book.units = float(units)
    book.entry_index, book.entry_price, book.entry_cost = fill, price, cost + fee
    book.commissions += fee
    book.record(fill)


def _exit(book: _Book, fill: int, open_price: float, costs: Costs) -> None:
    price = open_price * (1.0 - costs.slippage_bps / 1e4)
    proceeds, fee = _cost_and_fee(book.units, price, costs.commission)
    pnl = (proceeds - fee) - book.entry_cost
    notional = book.units * book.entry_price
    book.trades.append(
        ClosedTrade(
            entry_index=book.entry_index,
            exit_index=fill,
            entry_price=book.entry_price,
            exit_price=price,
            units=book.units,
            pnl=pnl,
            return_fraction=pnl / notional,
        )
    )
    book.cash = book.cash + (proceeds - fee)
    book.units = 0.0
    book.commissions += fee
    book.record(fill)


def _cost_and_fee(units: float, price: float, commission: float) -> tuple[float, float]:
    notional = units * price
    return notional, notional * commission


def _spread(book: _Book, candles: Candles, initial_cash: float) -> Simulation:
    """Cash and units at every close, from the state after each fill."""
    # A fill's state holds from its own candle's close to the next fill.
    bounds = np.array([0, *book.fill_indices, len(candles)], dtype=np.int64)
    lengths = np.diff(bounds)
    cash = np.repeat(np.array([initial_cash, *book.cash_after]), lengths)
    units = np.repeat(np.array([0.0, *book.units_after]), lengths)
    return Simulation(
        equity=cash + units * candles.close,
        cash=cash,
        units=units,
        trades=tuple(book.trades),
        commissions_paid=book.commissions,
    )
