"""Compiled loops of the engine: moving averages, fills, equity statistics.

Each kernel is one pass over its arrays, compiled by numba and cached on
disk (`cache=True`), so a worker compiles a kernel once per machine and loads
it in each process; `backcast.engine.warmup` loads them all ahead of the
first backtest. The kernels take and return plain arrays and floats; the
modules that call them own the conventions and document them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import numba
import numpy as np
import numpy.typing as npt
from llvmlite import ir  # type: ignore[import-untyped]  # ships no type hints
from numba.core import types
from numba.extending import intrinsic

from backcast.engine.candles import FloatArray, IntArray

Int8Array = npt.NDArray[np.int8]

# Shaved off the cash before sizing, so units * price * (1 + commission)
# cannot round to more than the cash held.
SIZING_SHAVE = 1.0 - 2.0**-52
_DAY_SECONDS = 86_400
# Candles ahead of the marking that the fill walk fetches opens for: the
# distance that hides a read from memory, about 40 ns, at about 1 ns a candle.
_PREFETCH_AHEAD = 64


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
def above_target(fast: FloatArray, slow: FloatArray, noise: float) -> Int8Array:
    """1 where fast - slow exceeds `noise` * |slow|, else 0 (NaN gives 0)."""
    n = fast.size
    out = np.zeros(n, dtype=np.int8)
    for t in range(n):
        out[t] = fast[t] - slow[t] > noise * abs(slow[t])
    return out


@numba.njit(cache=True)
def fill_orders(
    sides: Int8Array,
    times: IntArray,
    candles: tuple[FloatArray, FloatArray, FloatArray, FloatArray],
    costs: tuple[float, float],
    initial_cash: float,
    fill_at_close: bool,
    fractional: bool,
    stops: tuple[float, float],
    position_fraction: float,
) -> tuple[
    FloatArray,
    tuple[IntArray, FloatArray, IntArray],
    tuple[IntArray, FloatArray, IntArray],
    tuple[float, float, int],
    tuple[float, int, int],
    tuple[IntArray, FloatArray],
]:
    """Walk the candles once: orders, stops, equity and its statistics.

    `sides` holds the side wanted after each close: +1 long, 0 flat, -1
    short. A change of side decided at close t fills at open t + 1, or at
    close t with `fill_at_close`; a decision on the last candle never fills.
    `candles` are the (open, high, low, close) prices and `times` the open
    times in epoch seconds. `costs` is (commission, slippage), both
    fractions of the price; `stops` is (stop-loss, take-profit) as fractions
    of the entry price, 0.0 for none. An entry commits `position_fraction`
    of the cash held (all of the equity, since entries start flat). Returns:

    - equity after each close, shape (n,);
    - the fills: candle indices, shape (k,), cash and units after each,
      shape (k, 2), so the account at any close is the last fill's state,
      and the fill candles' open times, shape (k,);
    - the closed trades: entry and exit candles, shape (m, 2), entry
      price, exit price, units (negative for a short), pnl and return on
      the entry notional, shape (m, 5), and the entry and exit candles'
      open times, shape (m, 2);
    - the commissions paid; the pnl of a position still open after the last
      candle, marked at the last close (its entry cash flow, commission
      included, plus its value); the number of closes with units held;
    - the equity's drawdown, as `drawdown_statistics` gives it;
    - the UTC days and the equity at their last closes, as `daily_closes`
      gives them.
    """
    opens, highs, lows, closes = candles
    n = sides.size
    commission, slippage = costs
    stop_loss, take_profit = stops
    watch_stops = stop_loss > 0.0 or take_profit > 0.0
    # The decision that fills at candle t is the one at t - lag.
    lag = 0 if fill_at_close else 1
    equity = np.empty(n)
    # A fill follows a change of side or stops an entry, and a trade closes
    # an entry, which follows a change: twice the changes bound both.
    # Counting them is a vector pass over a byte per candle; buffers grown
    # inside the walk would cost more, as every candle then pays the
    # bookkeeping of arrays that may move.
    capacity = 2 * _count_changes(sides) + 2
    # The times are taken at each fill, while the walk is there: gathered
    # afterwards, each is a read from memory of its own.
    fills = (
        np.empty(capacity, dtype=np.int64),
        np.empty((capacity, 2)),
        np.empty(capacity, dtype=np.int64),
    )
    trades = (
        np.empty((capacity, 2), dtype=np.int64),
        np.empty((capacity, 5)),
        np.empty((capacity, 2), dtype=np.int64),
    )
    days, day_equity = _day_buffers(times)
    n_fills = 0
    n_trades = 0
    n_held = 0
    n_days = 0
    next_day = _day_end(times, 0)

    # The account: cash, signed units, and the open position's entry.
    cash = initial_cash
    units = 0.0
    entry_index = 0
    entry_time = 0
    entry_price = 0.0
    entry_flow = 0.0
    commissions = 0.0
    side_before = 0
    # The drawdown walk of `drawdown_statistics`: the running peak, its
    # index, the lowest close since, the worst fall and the longest
    # drawdowns so far. The first close always sets the peak.
    peak = -np.inf
    peak_index = 0
    low = 0.0
    worst = 0.0
    longest = 0
    longest_seconds = 0
    t = 0
    while t < n:
        filled = False
        decision = t - lag
        side = sides[decision] if 0 <= decision < n - 1 else side_before
        # Only a change of side is an order: an entry skipped for want of
        # cash, or ended by a stop, waits for the next change.
        if side != side_before:
            side_before = side
            wanted = float(side)
            price = closes[t] if fill_at_close else opens[t]
            if units != 0.0 and wanted != _side(units):
                flow, fee, paid = _close_position(units, price, commission, slippage)
                _record_trade(
                    trades,
                    n_trades,
                    (entry_index, t),
                    (entry_time, times[t]),
                    (entry_price, paid),
                    units,
                    entry_flow + flow,
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
                    entry_time = times[t]
                    entry_price = paid
                    entry_flow = flow
                    commissions += fee
                    filled = True

        # Stops watch the candle's range from the entry on; a position
        # entered at this close has seen none of it.
        watched = units != 0.0 and watch_stops
        if watched and not (fill_at_close and entry_index == t):
            level = _stop_level(
                units, entry_price, opens[t], highs[t], lows[t], stop_loss, take_profit
            )
            if level > 0.0:
                flow, fee, paid = _close_position(units, level, commission, slippage)
                _record_trade(
                    trades,
                    n_trades,
                    (entry_index, t),
                    (entry_time, times[t]),
                    (entry_price, paid),
                    units,
                    entry_flow + flow,
                )
                n_trades += 1
                cash = cash + flow
                units = 0.0
                commissions += fee
                filled = True
                watched = False

        if filled:
            _record_fill(fills, n_fills, t, times[t], cash, units)
            n_fills += 1

        # The account holds still until the next change of side, so the
        # candles up to it are only marked; with stops watched over a
        # position, each candle may fill and is walked on its own.
        end = t + 1
        if not watched:
            decision = t + 1 - lag
            while decision < n - 1 and sides[decision] == side_before:
                decision += 1
            end = decision + lag if decision < n - 1 else n
        if units != 0.0:
            n_held += end - t

        for u in range(t, end):
            # The next order reads its open far ahead of the last one; fetched
            # along the way, it does not stall the walk on memory.
            _prefetch(opens, u + _PREFETCH_AHEAD)
            _prefetch(times, u + _PREFETCH_AHEAD)
            value = cash + units * closes[u]
            equity[u] = value
            if value < peak:
                low = min(low, value)
            else:
                # A drawdown is measured once, when it ends: its last close
                # below the peak is its longest point, its lowest its deepest.
                if u - 1 > peak_index:
                    longest = max(longest, u - 1 - peak_index)
                    lasted = times[u - 1] - times[peak_index]
                    longest_seconds = max(longest_seconds, lasted)
                    if peak > 0.0:
                        worst = max(worst, 1.0 - low / peak)
                peak = value
                peak_index = u
                low = value
            if u == next_day:
                days[n_days] = times[u - 1] // _DAY_SECONDS
                day_equity[n_days] = equity[u - 1]
                n_days += 1
                next_day = _day_end(times, u)
        t = end

    if n == 0:
        return (
            equity,
            (fills[0][:0], fills[1][:0], fills[2][:0]),
            (trades[0][:0], trades[1][:0], trades[2][:0]),
            (0.0, 0.0, 0),
            (0.0, 0, 0),
            (days[:0], day_equity[:0]),
        )
    days[n_days] = times[n - 1] // _DAY_SECONDS
    day_equity[n_days] = equity[n - 1]
    # A drawdown still open at the end counts.
    if n - 1 > peak_index:
        longest = max(longest, n - 1 - peak_index)
        longest_seconds = max(longest_seconds, times[n - 1] - times[peak_index])
        if peak > 0.0:
            worst = max(worst, 1.0 - low / peak)
    drawdown = worst if equity[0] > 0.0 else 0.0
    open_pnl = entry_flow + units * closes[n - 1] if units != 0.0 else 0.0
    return (
        equity,
        (fills[0][:n_fills], fills[1][:n_fills], fills[2][:n_fills]),
        (trades[0][:n_trades], trades[1][:n_trades], trades[2][:n_trades]),
        (commissions, open_pnl, n_held),
        (drawdown, longest, longest_seconds),
        (days[: n_days + 1], day_equity[: n_days + 1]),
    )


@numba.njit(cache=True)
def _count_changes(sides: Int8Array) -> int:
    if sides.size == 0:
        return 0
    n_changes = int(sides[0] != 0)
    for t in range(1, sides.size):
        n_changes += sides[t] != sides[t - 1]
    return n_changes


@numba.njit(cache=True)
def _record_fill(
    fills: tuple[IntArray, FloatArray, IntArray],
    k: int,
    t: int,
    time: int,
    cash: float,
    units: float,
) -> None:
    """Write fill `k`: its candle, the cash and units after it, its time."""
    candles, states, times = fills
    candles[k] = t
    times[k] = time
    states[k, 0] = cash
    states[k, 1] = units


@numba.njit(cache=True)
def _record_trade(
    trades: tuple[IntArray, FloatArray, IntArray],
    k: int,
    fill_candles: tuple[int, int],
    fill_times: tuple[int, int],
    prices: tuple[float, float],
    units: float,
    pnl: float,
) -> None:
    """Write closed trade `k`, as `fill_orders` lays the trades out."""
    candles, values, times = trades
    entry_price, exit_price = prices
    candles[k, 0], candles[k, 1] = fill_candles
    times[k, 0], times[k, 1] = fill_times
    values[k, 0] = entry_price
    values[k, 1] = exit_price
    values[k, 2] = units
    values[k, 3] = pnl
    values[k, 4] = pnl / (abs(units) * entry_price)


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


@numba.njit(cache=True)
def _day_end(times: IntArray, t: int) -> int:
    """Index of the first candle on a later UTC day than candle `t`, else n."""
    if t >= times.size:
        return times.size
    next_day_at = (times[t] // _DAY_SECONDS + 1) * _DAY_SECONDS
    return t + int(np.searchsorted(times[t:], next_day_at))


@numba.njit(cache=True)
def _day_buffers(times: IntArray) -> tuple[IntArray, FloatArray]:
    """Room for the UTC days of `times`: one per candle at most."""
    n = times.size
    capacity = min(n, (times[-1] - times[0]) // _DAY_SECONDS + 2) if n else 0
    return np.empty(capacity, dtype=np.int64), np.empty(capacity)


@intrinsic
def _prefetch_intrinsic(typingctx: Any, values: Any, index: Any) -> Any:
    signature = types.void(values, index)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        array = context.make_array(sig.args[0])(context, builder, args[0])
        address = builder.bitcast(builder.gep(array.data, [args[1]]), _BYTE_POINTER)
        hint = builder.module.declare_intrinsic(
            "llvm.prefetch", [_BYTE_POINTER], _PREFETCH_TYPE
        )
        # Arguments: a read (0), kept in every cache level (3), of data (1).
        builder.call(hint, [address, _INT32(0), _INT32(3), _INT32(1)])
        return context.get_dummy_value()

    return signature, codegen


_INT32 = ir.IntType(32)
_BYTE_POINTER = ir.IntType(8).as_pointer()
_PREFETCH_TYPE = ir.FunctionType(ir.VoidType(), [_BYTE_POINTER, _INT32, _INT32, _INT32])

# Hint the CPU to fetch `values[index]` into its caches; nothing else happens.
# The fill walk reads an open only at an order, dozens of candles after the
# last one it read; the hardware does not fetch such sparse reads ahead, and
# on a million candles their misses cost more than the marking itself (2.5
# of 5.5 ms before this hint). A prefetch never faults, so an index past the
# end is harmless. numba hands the intrinsic its typing context; compiled
# code calls it with the array and the index.
_prefetch = cast(Callable[[FloatArray, int], None], _prefetch_intrinsic)
