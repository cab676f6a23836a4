"""Compiled loops of the engine: moving averages, fills, equity statistics.

Each kernel is one pass over its arrays, compiled by numba and cached on
disk (`cache=True`), so a worker compiles a kernel once per machine and loads
it in each process; `backcast.engine.warmup` loads them all ahead of the
first backtest. The kernels take and return plain arrays and floats; the
modules that call them own the conventions and document them.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from backcast.engine.candles import FloatArray, IntArray

# Shaved off the cash before sizing, so units * price * (1 + commission)
# cannot round to more than the cash held.
SIZING_SHAVE = 1.0 - 2.0**-52


@numba.njit(cache=True)
def simple_average(values: FloatArray, period: int) -> FloatArray:
    """Mean of the last `period` values, NaN before; `period` >= 2, size >= period.

    Differences of two running sums of the values shifted by the first one,
    one `period` candles behind the other; both add in index order, so they
    equal the prefix sums of `np.cumsum` bit for bit.
    """
    n = values.size
    out = np.empty(n)
    shift = values[0]
    running = 0.0
    for t in range(period - 1):
        running += values[t] - shift
        out[t] = np.nan
    running += values[period - 1] - shift
    out[period - 1] = running / period + shift
    behind = 0.0
    for t in range(period, n):
        running += values[t] - shift
        behind += values[t - period] - shift
        out[t] = (running - behind) / period + shift
    return out


@numba.njit(cache=True)
def exponential_average(values: FloatArray, period: int) -> FloatArray:
    """Exponential average with alpha = 2 / (period + 1), NaN before `period - 1`.

    Seeded with the mean of the first window; values are shifted by the
    first one so a flat stretch averages to exactly its level.
    """
    n = values.size
    out = np.full(n, np.nan)
    shift = values[0]
    seed = 0.0
    for t in range(period):
        seed += values[t] - shift
    alpha = 2.0 / (period + 1)
    decay = 1.0 - alpha
    level = seed / period
    out[period - 1] = level + shift
    for t in range(period, n):
        level = alpha * (values[t] - shift) + decay * level
        out[t] = level + shift
    return out


@numba.njit(cache=True)
def above_target(fast: FloatArray, slow: FloatArray, noise: float) -> FloatArray:
    """1.0 where fast - slow exceeds `noise` * |slow|, else 0.0 (NaN gives 0.0)."""
    n = fast.size
    out = np.zeros(n)
    for t in range(n):
        if fast[t] - slow[t] > noise * abs(slow[t]):
            out[t] = 1.0
    return out


@numba.njit(cache=True)
def fill_orders(
    target: FloatArray,
    opens: FloatArray,
    highs: FloatArray,
    lows: FloatArray,
    closes: FloatArray,
    costs: tuple[float, float],
    initial_cash: float,
    fill_at_close: bool,
    fractional: bool,
    stops: tuple[float, float],
    position_fraction: float,
) -> tuple[FloatArray, IntArray, FloatArray, IntArray, FloatArray, float, float]:
    """Walk the candles once: orders, stops and equity at each close.

    `target` holds the side wanted after each close (its sign: +1 long, 0
    flat, -1 short). A change of side decided at close t fills at open
    t + 1, or at close t with `fill_at_close`; a decision on the last candle
    never fills. `costs` is (commission, slippage), both fractions of the
    price; `stops` is (stop-loss, take-profit) as fractions of the entry
    price, 0.0 for none. An entry commits `position_fraction` of the cash
    held (all of the equity, since entries start flat). Returns:

    - equity after each close, shape (n,);
    - the fills: candle indices, shape (k,), and cash and units after each,
      shape (k, 2), so the account at any close is the last fill's state;
    - the closed trades: entry and exit candles, shape (m, 2), and entry
      price, exit price, units (negative for a short), pnl and return on
      the entry notional, shape (m, 5);
    - the commissions paid;
    - the pnl of a position still open after the last candle, marked at the
      last close: its entry cash flow (commission included) plus its value.
    """
    n = target.size
    commission, slippage = costs
    stop_loss, take_profit = stops
    equity = np.empty(n)
    # Every fill follows a change of target or a stop after an entry, so
    # twice the changes bound the fills.
    n_changes = 0
    for t in range(n - 1):
        if _side(target[t]) != (_side(target[t - 1]) if t > 0 else 0.0):
            n_changes += 1
    capacity = 2 * n_changes + 2
    fill_candles = np.empty(capacity, dtype=np.int64)
    fill_states = np.empty((capacity, 2))
    trade_candles = np.empty((capacity, 2), dtype=np.int64)
    trade_values = np.empty((capacity, 5))
    n_fills = 0
    n_trades = 0

    # The account: cash, signed units, and the open position's entry.
    cash = initial_cash
    units = 0.0
    entry_index = 0
    entry_price = 0.0
    entry_flow = 0.0
    commissions = 0.0
    wanted_before = 0.0
    for t in range(n):
        filled = False
        decision = t if fill_at_close else t - 1
        price = closes[t] if fill_at_close else opens[t]
        wanted = _side(target[decision]) if 0 <= decision < n - 1 else wanted_before
        # Only a change of target is an order: an entry skipped for want of
        # cash, or ended by a stop, waits for the next change.
        if wanted != wanted_before:
            wanted_before = wanted
            if units != 0.0 and wanted != _side(units):
                flow, fee, paid = _close_position(units, price, commission, slippage)
                trade_candles[n_trades] = (entry_index, t)
                trade_values[n_trades] = _trade_figures(
                    entry_price, paid, units, entry_flow + flow
                )
                n_trades += 1
                cash = cash + flow
                units = 0.0
                commissions += fee
                filled = True
            if units == 0.0 and wanted != 0.0:
                bought, flow, fee, paid = _open_position(
                    cash * position_fraction,
                    wanted,
                    price,
                    commission,
                    slippage,
                    fractional,
                )
                if bought != 0.0:
                    cash = cash + flow
                    units = bought
                    entry_index = t
                    entry_price = paid
                    entry_flow = flow
                    commissions += fee
                    filled = True

        # Stops watch the candle's range from the entry on; a position
        # entered at this close has seen none of it.
        watched = units != 0.0 and not (fill_at_close and entry_index == t)
        if watched and (stop_loss > 0.0 or take_profit > 0.0):
            level = _stop_level(
                units, entry_price, opens[t], highs[t], lows[t], stop_loss, take_profit
            )
            if level > 0.0:
                flow, fee, paid = _close_position(units, level, commission, slippage)
                trade_candles[n_trades] = (entry_index, t)
                trade_values[n_trades] = _trade_figures(
                    entry_price, paid, units, entry_flow + flow
                )
                n_trades += 1
                cash = cash + flow
                units = 0.0
                commissions += fee
                filled = True

        if filled:
            fill_candles[n_fills] = t
            fill_states[n_fills, 0] = cash
            fill_states[n_fills, 1] = units
            n_fills += 1
        equity[t] = cash + units * closes[t]
    open_pnl = entry_flow + units * closes[n - 1] if units != 0.0 else 0.0
    return (
        equity,
        fill_candles[:n_fills],
        fill_states[:n_fills],
        trade_candles[:n_trades],
        trade_values[:n_trades],
        commissions,
        open_pnl,
    )


@numba.njit(cache=True)
def _open_position(
    cash: float,
    side: float,
    price: float,
    commission: float,
    slippage: float,
    fractional: bool,
) -> tuple[float, float, float, float]:
    """Signed units, cash flow, commission and fill price of an all-in entry."""
    paid = price * (1.0 + side * slippage)
    if fractional:
        size = cash * SIZING_SHAVE / (paid * (1.0 + commission))
        if size * paid + size * paid * commission > cash:
            size *= SIZING_SHAVE
    else:
        size = whole_units(cash, paid, commission)
        if size < 1.0:
            return 0.0, 0.0, 0.0, paid
    notional = size * paid
    fee = notional * commission
    # A long pays the notional, a short receives it; both pay the fee.
    if side > 0.0:
        return size, -(notional + fee), fee, paid
    return -size, notional - fee, fee, paid


@numba.njit(cache=True)
def _close_position(
    units: float, price: float, commission: float, slippage: float
) -> tuple[float, float, float]:
    """Cash flow, commission and fill price of closing `units` (signed)."""
    paid = price * (1.0 - _side(units) * slippage)
    notional = abs(units) * paid
    fee = notional * commission
    if units > 0.0:
        return notional - fee, fee, paid
    return -(notional + fee), fee, paid


@numba.njit(cache=True)
def _trade_figures(
    entry_price: float, exit_price: float, units: float, pnl: float
) -> FloatArray:
    """Entry price, exit price, units, pnl and return on the entry notional."""
    figures = np.empty(5)
    figures[0] = entry_price
    figures[1] = exit_price
    figures[2] = units
    figures[3] = pnl
    figures[4] = pnl / (abs(units) * entry_price)
    return figures


@numba.njit(cache=True)
def _stop_level(
    units: float,
    entry_price: float,
    open_price: float,
    high: float,
    low: float,
    stop_loss: float,
    take_profit: float,
) -> float:
    """Price a stop fills at in this candle, or 0.0 when none is touched.

    A stop fills at its level when the range touches it, at the open when the
    candle gaps through it; the stop-loss wins when both are touched.
    """
    side = _side(units)
    if stop_loss > 0.0:
        level = entry_price * (1.0 - side * stop_loss)
        if side * open_price <= side * level:
            return open_price
        if (low if side > 0.0 else high) * side <= side * level:
            return level
    if take_profit > 0.0:
        level = entry_price * (1.0 + side * take_profit)
        if side * open_price >= side * level:
            return open_price
        if (high if side > 0.0 else low) * side >= side * level:
            return level
    return 0.0


@numba.njit(cache=True)
def _side(position: float) -> float:
    if position > 0.0:
        return 1.0
    if position < 0.0:
        return -1.0
    return 0.0


@numba.njit(cache=True)
def whole_units(cash: float, price: float, commission: float) -> float:
    """Most whole units whose cost and commission fit in `cash`."""
    units = math.floor(cash * SIZING_SHAVE / (price * (1.0 + commission)))
    cost = units * price
    if units > 0 and cost + cost * commission > cash:
        # Guard against a last rounding step; never spend more than the cash.
        units -= 1
    return float(max(units, 0))


@numba.njit(cache=True)
def drawdown_statistics(times: IntArray, equity: FloatArray) -> tuple[float, int, int]:
    """Max drawdown and the longest drawdown in candles and in seconds.

    The max drawdown is the largest fall below the running peak as a
    fraction of it (0.0 when the first equity is not positive). A drawdown
    runs from the last close at or above the peak to each later close below
    it; its length is counted in closes and in seconds of `times` (epoch
    seconds of each candle). A drawdown still open at the end counts; each
    length is the longest on its own measure.
    """
    n = equity.size
    if n == 0:
        return 0.0, 0, 0
    # Each drawdown is measured once, when it ends: its last close below the
    # peak is its longest point and its lowest close its deepest.
    peak = equity[0]
    peak_index = 0
    low = peak
    worst = 0.0
    longest = 0
    longest_seconds = 0
    for t in range(1, n + 1):
        value = equity[t] if t < n else np.inf
        if value < peak:
            if value < low:
                low = value
            continue
        if t - 1 > peak_index:
            longest = max(longest, t - 1 - peak_index)
            longest_seconds = max(longest_seconds, times[t - 1] - times[peak_index])
            if peak > 0.0:
                worst = max(worst, 1.0 - low / peak)
        peak = value
        peak_index = t
        low = value
    drawdown = worst if equity[0] > 0.0 else 0.0
    return drawdown, longest, longest_seconds


@numba.njit(cache=True)
def daily_closes(times: IntArray, equity: FloatArray) -> tuple[IntArray, FloatArray]:
    """The UTC days holding candles and the equity at each day's last close.

    Days are numbered from the epoch (day 0 is 1970-01-01) and a candle
    belongs to the day of its open time in `times` (epoch seconds), so a
    close at midnight ends the day before. Both results have shape
    (n_days,); days without candles are left out.
    """
    n = times.size
    if n == 0:
        return np.empty(0, dtype=np.int64), np.empty(0)
    span = (times[n - 1] - times[0]) // 86_400 + 2
    capacity = min(n, span)
    days = np.empty(capacity, dtype=np.int64)
    closes = np.empty(capacity)
    k = 0
    day = times[0] // 86_400
    next_day_at = (day + 1) * 86_400
    for t in range(1, n):
        if times[t] >= next_day_at:
            days[k] = day
            closes[k] = equity[t - 1]
            k += 1
            day = times[t] // 86_400
            next_day_at = (day + 1) * 86_400
    days[k] = day
    closes[k] = equity[n - 1]
    return days[: k + 1], closes[: k + 1]
