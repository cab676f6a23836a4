"""Fills, cash and equity of a target-position series; the execution model.

- A decision at candle t uses data up to t's close. Strategies report a
  target of 0.0 (flat) until their indicators have warmed up.
- A change of target is a market order that fills at the open of candle
  t + 1 (or, with `fill_at_close`, at the close of t); a decision on the
  last candle never fills.
- Entries commit a fraction of equity (`position_fraction`, all of it by
  default) in whole units: units = floor(equity * fraction * (1 - 2**-52) /
  (price * (1 + commission))) at the fill price; entries start flat, so
  equity is the cash held. The 2**-52 shave keeps
  rounding from spending a cent more than the cash held. An entry that
  cannot buy one unit is skipped; the strategy's next change of target
  decides again. With `fractional`, units are not rounded down.
- Positions are long-only unless `shorts` is set: then a target below 0.0
  sells short the units an entry of the same cash would buy, a change from
  long to short closes and opens at one fill, and units are negative.
- Slippage is adverse on every fill: buys at price * (1 + bps / 1e4), sells
  at price * (1 - bps / 1e4). Commission is a fraction of the traded
  notional at those prices, charged at entry and at exit.
- Stops (`stop_loss`, `take_profit`, fractions of the entry price) watch
  every candle's range from the entry fill on: a touched level fills at the
  level, a candle that opens beyond it fills at its open, and when both
  are touched in one candle the stop-loss wins. The position then stays
  flat until the target changes again.
- Equity is cash + units * close at every candle's close. A position still
  open after the last candle is marked at the last close; it is not a
  closed trade.

The walk through the candles is one compiled pass,
`backcast.engine.kernels.fill_orders`, which also gathers the equity's
drawdown and daily closes for the metrics while the equity is at hand."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from backcast.engine import kernels
from backcast.engine.candles import Candles, FloatArray, IntArray
from backcast.engine.kernels import Int8Array
from backcast.engine.spec import Costs


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
class EquityStatistics:
    """Figures of the equity gathered by the walk through the candles.

    The drawdown as `kernels.drawdown_statistics` measures it (a fraction,
    and the longest drawdown in closes and in seconds); the UTC days holding
    candles and the equity at each day's last close, as
    `kernels.daily_closes` gives them; and the closes with units held.
    """

    max_drawdown: float
    longest_drawdown_candles: int
    longest_drawdown_seconds: int
    days: IntArray
    day_equity: FloatArray
    n_candles_held: int


@dataclass(frozen=True, eq=False)
class Simulation:
    """Equity after every candle's close, the fills, closed trades and costs.

    `fill_candles` has shape (n_fills,) and `fill_states` (n_fills, 2): cash
    and units after each fill, which hold until the next one; `fill_times`
    are the fill candles' open times.
    `trade_candles` has shape (n_trades, 2): entry and exit fill candles,
    and `trade_times` their open times;
    `trade_values` has shape (n_trades, 5): entry price, exit price, units
    (negative for a short), pnl in money and pnl as a fraction of the entry
    notional. `open_trade_pnl` is the pnl of a position still open after the
    last candle, marked at the last close (entry commission included); 0.0
    when flat. `statistics` are the equity figures `simulate` gathers on its
    way; a simulation built from stored fills has none, and the metrics then
    compute them from `equity`.
    """

    equity: FloatArray
    initial_cash: float
    fill_candles: IntArray
    fill_states: FloatArray
    fill_times: IntArray
    trade_candles: IntArray
    trade_values: FloatArray
    trade_times: IntArray
    commissions_paid: float
    open_trade_pnl: float
    statistics: EquityStatistics | None = None

    @property
    def n_trades(self) -> int:
        return int(self.trade_candles.shape[0])

    @property
    def n_candles_held(self) -> int:
        """Closes after which units are held."""
        if self.statistics is not None:
            return self.statistics.n_candles_held
        bounds = np.concatenate((self.fill_candles, [self.equity.size]))
        held = self.fill_states[:, 1] != 0.0
        return int(np.diff(bounds)[held].sum())

    @cached_property
    def cash(self) -> FloatArray:
        """Cash after each close."""
        return self._spread(self.initial_cash, self.fill_states[:, 0])

    @cached_property
    def units(self) -> FloatArray:
        """Units held after each close."""
        return self._spread(0.0, self.fill_states[:, 1])

    @cached_property
    def trades(self) -> tuple[ClosedTrade, ...]:
        """The closed trades as records, in exit order."""
        candles = self.trade_candles.tolist()
        values = self.trade_values.tolist()
        return tuple(
            ClosedTrade(entry, exit, *figures)
            for (entry, exit), figures in zip(candles, values, strict=True)
        )

    def _spread(self, start: float, after_fills: FloatArray) -> FloatArray:
        # A fill's state holds from its own candle's close to the next fill.
        bounds = np.concatenate(([0], self.fill_candles, [self.equity.size]))
        states = np.concatenate(([start], after_fills))
        return np.repeat(states, np.diff(bounds))


def simulate(
    candles: Candles,
    target: FloatArray | Int8Array,
    costs: Costs,
    initial_cash: float,
    *,
    fill_at_close: bool = False,
    fractional: bool = False,
    shorts: bool = False,
    stop_loss: float = 0.0,
    take_profit: float = 0.0,
    position_fraction: float = 1.0,
) -> Simulation:
    """Fill the changes of `target` under the execution model of this module.

    `target` holds the sides a strategy wants (int8: +1, 0, -1, as
    `Signals.target`) or any floats, of which only the sign counts (NaN is
    flat).

    The keyword options depart from the default model as the module
    docstring describes; `stop_loss` and `take_profit` are fractions of the
    entry price, 0.0 for none.
    """
    n = len(candles)
    if target.shape != (n,):
        raise ValueError(f"target has shape {target.shape}; candles have ({n},)")
    if not 0.0 <= stop_loss < 1.0:
        raise ValueError(f"stop_loss {stop_loss} must be in [0, 1)")
    if not take_profit >= 0.0:
        raise ValueError(f"take_profit {take_profit} must be at least 0")
    if not 0.0 < position_fraction <= 1.0:
        raise ValueError(f"position_fraction {position_fraction} must be in (0, 1]")

    sides = _sides(target)
    if not shorts and n > 0 and sides.min() < 0:
        raise ValueError("target holds a short position; only long is supported")
    equity, fills, trades, totals, drawdown, daily = kernels.fill_orders(
        sides,
        candles.times,
        (candles.open, candles.high, candles.low, candles.close),
        (costs.commission, costs.slippage_bps / 1e4),
        initial_cash,
        fill_at_close,
        fractional,
        (stop_loss, take_profit),
        position_fraction,
    )
    commissions, open_pnl, n_held = totals
    statistics = EquityStatistics(
        max_drawdown=drawdown[0],
        longest_drawdown_candles=drawdown[1],
        longest_drawdown_seconds=drawdown[2],
        days=daily[0],
        day_equity=daily[1],
        n_candles_held=n_held,
    )
    return Simulation(
        equity=equity,
        initial_cash=initial_cash,
        fill_candles=fills[0],
        fill_states=fills[1],
        fill_times=fills[2],
        trade_candles=trades[0],
        trade_values=trades[1],
        trade_times=trades[2],
        commissions_paid=commissions,
        open_trade_pnl=open_pnl,
        statistics=statistics,
    )


def _sides(target: FloatArray | Int8Array) -> Int8Array:
    """The sign of each target as int8, the type the fill kernel walks."""
    if target.dtype == np.int8:
        return np.ascontiguousarray(target)
    # NaN is neither above nor below 0.0, so it reads as flat.
    values = np.asarray(target, dtype=np.float64)
    return (values > 0.0).astype(np.int8) - (values < 0.0).astype(np.int8)
