"""What a backtest produces: metrics, closed trades and the equity curve.

Trades and equity points stay numpy columns (`TradeTable`, `EquityCurve`):
a backtest with thousands of trades would otherwise spend most of its time
building records. Both read as sequences of `Trade` and `EquityPoint`,
made on demand. The store keeps metrics as JSON and trades and equity as
fixed-size binary records (`to_bytes`/`from_bytes`); the services translate
a result to `backcast.v1.BacktestResult`. Times are whole UTC seconds,
money in the quote currency, returns as fractions.

The full equity curve is not kept: `AccountFills` holds the account after
every fill, and `full_equity_curve` rebuilds equity at every close from it
and the candles, exactly as the simulation computed it.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, overload

import numpy as np

from backcast.engine.candles import Candles, FloatArray, IntArray

# How each figure of `Metrics` is computed, in words; results carry these so
# a reader needs no other document. docs/metrics.md explains them at length.
METRIC_DEFINITIONS: Mapping[str, str] = MappingProxyType(
    {
        "total_return": "final equity / initial cash - 1",
        "cagr": (
            "(final equity / initial cash) ** (1 / years) - 1, years = (last "
            "candle's close - first candle's open) / 365.25 days"
        ),
        "annualized_volatility": (
            "sample standard deviation (n - 1) of daily returns * "
            "sqrt(periods_per_year); 0 when the candles cover fewer than 2 UTC "
            "days"
        ),
        "sharpe_ratio": (
            "mean of daily returns / their sample standard deviation * "
            "sqrt(periods_per_year), risk-free rate 0; daily returns are of the "
            "equity at each UTC day's last close, the first over the initial "
            "cash; 0 below 2 days or without variation"
        ),
        "sortino_ratio": (
            "mean of daily returns / sqrt(mean of min(daily return, 0) ** 2) * "
            "sqrt(periods_per_year); 0 below 2 days or without a losing day"
        ),
        "calmar_ratio": "cagr / max_drawdown; 0 without a drawdown",
        "max_drawdown": (
            "largest fall of equity below its running peak (from the first "
            "close), as a fraction of the peak"
        ),
        "max_drawdown_candles": (
            "most closes from a peak to a later close still below it; a "
            "drawdown open at the end counts"
        ),
        "max_drawdown_seconds": (
            "longest time from a peak's close to a later close still below it; "
            "a drawdown open at the end counts"
        ),
        "n_trades": "closed trades; a position open at the end is not counted",
        "win_rate": "closed trades with pnl > 0 / closed trades; 0 without trades",
        "profit_factor": (
            "sum of positive pnl / -(sum of negative pnl) of closed trades, in "
            "money; 0 without a losing trade"
        ),
        "expectancy": "mean pnl of closed trades, quote currency; 0 without trades",
        "expectancy_return": (
            "mean return_fraction (pnl / entry notional) of closed trades; 0 "
            "without trades"
        ),
        "best_trade_return": "largest return_fraction of a closed trade; 0 without",
        "worst_trade_return": "smallest return_fraction of a closed trade; 0 without",
        "open_trade_pnl": (
            "entry cash flow (commission included) + units * last close of a "
            "position still open at the end; 0 when flat"
        ),
        "exposure": "closes with a position held / candles",
        "commissions_paid": "sum of commissions of every fill, quote currency",
        "buy_and_hold_return": (
            "last close / open of the candle after the first decision - 1, "
            "without costs"
        ),
        "final_equity": "cash + units * close at the last candle",
        "n_candles": "candles in the backtested period",
        "periods_per_year": (
            "365 for round-the-clock markets (synthetic SYN-* instruments, or "
            "candles on both a Saturday and a Sunday UTC), else 252"
        ),
    }
)


@dataclass(frozen=True)
class Metrics:
    """Headline figures, named as in `backcast.v1.Metrics`.

    `METRIC_DEFINITIONS` says how each is computed.
    """

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
    sortino_ratio: float
    calmar_ratio: float
    max_drawdown_seconds: int
    expectancy: float
    expectancy_return: float
    best_trade_return: float
    worst_trade_return: float
    open_trade_pnl: float

    def to_dict(self) -> dict[str, Any]:
        # Every figure is a plain number; `asdict` would deep-copy each one,
        # which costs more than the rest of storing a small result.
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Metrics:
        """Metrics from `to_dict` form; a figure missing from it reads as 0.

        Results stored before a figure existed lack it.
        """
        return cls(
            **{
                f.name: data.get(f.name, 0 if f.type == "int" else 0.0)
                for f in fields(cls)
            }
        )


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


# Keys of a trade in `to_dict` form, in column order.
_TRADE_KEYS = (
    "entry_at",
    "exit_at",
    "entry_price",
    "exit_price",
    "units",
    "pnl",
    "return_fraction",
)


# The byte layout of `TradeTable.to_bytes`: one little-endian record per
# trade, its fields in `_TRADE_KEYS` order, so a page of trades is one
# contiguous slice of the stored bytes.
TRADE_RECORD_DTYPE = np.dtype(
    [("entry_at", "<i8"), ("exit_at", "<i8")]
    + [(name, "<f8") for name in _TRADE_KEYS[2:]]
)
TRADE_RECORD_BYTES = TRADE_RECORD_DTYPE.itemsize


@dataclass(frozen=True, eq=False)
class TradeTable(Sequence[Trade]):
    """Closed trades in exit order as columns of shape (n_trades,).

    `entry_at` and `exit_at` are the open times of the fill candles in epoch
    seconds. Indexing gives a `Trade`; slicing gives a `TradeTable`.
    """

    entry_at: IntArray
    exit_at: IntArray
    entry_price: FloatArray
    exit_price: FloatArray
    units: FloatArray
    pnl: FloatArray
    return_fraction: FloatArray

    @classmethod
    def of(cls, trades: Iterable[Trade]) -> TradeTable:
        rows = [
            (
                _seconds(t.entry_at),
                _seconds(t.exit_at),
                t.entry_price,
                t.exit_price,
                t.units,
                t.pnl,
                t.return_fraction,
            )
            for t in trades
        ]
        return cls._of_columns(list(zip(*rows, strict=True)) or [()] * 7)

    @classmethod
    def from_dicts(cls, trades: Sequence[Mapping[str, Any]]) -> TradeTable:
        """Trades from their `to_dicts` form."""
        columns: list[Sequence[Any]] = [[t[key] for t in trades] for key in _TRADE_KEYS]
        columns[0] = _parse_times(columns[0])
        columns[1] = _parse_times(columns[1])
        return cls._of_columns(columns)

    @classmethod
    def _of_columns(cls, columns: Sequence[Sequence[Any]]) -> TradeTable:
        entries, exits, *values = columns
        return cls(
            np.asarray(entries, dtype=np.int64),
            np.asarray(exits, dtype=np.int64),
            *(np.asarray(v, dtype=np.float64) for v in values),
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> TradeTable:
        """Trades from `to_bytes` form, or ValueError if `data` is not one."""
        if len(data) % TRADE_RECORD_BYTES:
            raise ValueError(
                f"{len(data)} bytes are not whole trades of {TRADE_RECORD_BYTES} bytes"
            )
        records = np.frombuffer(data, TRADE_RECORD_DTYPE)
        # astype copies into native order, so the columns own their memory.
        return cls(
            records["entry_at"].astype(np.int64),
            records["exit_at"].astype(np.int64),
            *(records[name].astype(np.float64) for name in _TRADE_KEYS[2:]),
        )

    def to_bytes(self) -> bytes:
        """One 56-byte record per trade (`TRADE_RECORD_DTYPE`): entry and
        exit times as int64 epoch seconds, then the five values as float64."""
        records = np.empty(len(self), TRADE_RECORD_DTYPE)
        for name in _TRADE_KEYS:
            records[name] = getattr(self, name)
        return records.tobytes()

    def to_dicts(self) -> list[dict[str, Any]]:
        """One dict per trade; times as ISO 8601 strings with a +00:00 offset."""
        columns = (
            _iso_times(self.entry_at),
            _iso_times(self.exit_at),
            *(column.tolist() for column in self._values()),
        )
        rows = zip(*columns, strict=True)
        return [dict(zip(_TRADE_KEYS, row, strict=True)) for row in rows]

    def _values(self) -> tuple[FloatArray, ...]:
        return (
            self.entry_price,
            self.exit_price,
            self.units,
            self.pnl,
            self.return_fraction,
        )

    def __len__(self) -> int:
        return int(self.pnl.shape[0])

    @overload
    def __getitem__(self, index: int) -> Trade: ...
    @overload
    def __getitem__(self, index: slice) -> TradeTable: ...
    def __getitem__(self, index: int | slice) -> Trade | TradeTable:
        if isinstance(index, slice):
            return TradeTable(
                self.entry_at[index],
                self.exit_at[index],
                *(column[index] for column in self._values()),
            )
        return Trade(
            _utc(int(self.entry_at[index])),
            _utc(int(self.exit_at[index])),
            *(float(column[index]) for column in self._values()),
        )

    def __iter__(self) -> Iterator[Trade]:
        entries = map(_utc, self.entry_at.tolist())
        exits = map(_utc, self.exit_at.tolist())
        values = (column.tolist() for column in self._values())
        for row in zip(entries, exits, *values, strict=True):
            yield Trade(*row)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TradeTable):
            return NotImplemented
        return all(
            np.array_equal(getattr(self, name), getattr(other, name))
            for name in _TRADE_KEYS
        )

    __hash__ = None  # type: ignore[assignment]


# The byte layout of `EquityCurve.to_bytes`: per point, the close time in
# epoch seconds and the equity, little-endian.
EQUITY_POINT_DTYPE = np.dtype([("at", "<i8"), ("equity", "<f8")])
EQUITY_POINT_BYTES = EQUITY_POINT_DTYPE.itemsize


@dataclass(frozen=True)
class EquityPoint:
    at: datetime
    equity: float


@dataclass(frozen=True, eq=False)
class EquityCurve(Sequence[EquityPoint]):
    """Equity at candle closes: `at` in epoch seconds, both of shape (n,)."""

    at: IntArray
    equity: FloatArray

    @classmethod
    def of(cls, points: Iterable[EquityPoint]) -> EquityCurve:
        pairs = [(_seconds(p.at), p.equity) for p in points]
        return cls(
            np.asarray([at for at, _ in pairs], dtype=np.int64),
            np.asarray([equity for _, equity in pairs], dtype=np.float64),
        )

    @classmethod
    def from_pairs(cls, pairs: Sequence[Sequence[Any]]) -> EquityCurve:
        """A curve from its `to_pairs` form."""
        return cls(
            np.asarray(_parse_times([at for at, _ in pairs]), dtype=np.int64),
            np.asarray([equity for _, equity in pairs], dtype=np.float64),
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> EquityCurve:
        """A curve from `to_bytes` form, or ValueError if `data` is not one."""
        if len(data) % EQUITY_POINT_BYTES:
            raise ValueError(
                f"{len(data)} bytes are not whole points of {EQUITY_POINT_BYTES} bytes"
            )
        points = np.frombuffer(data, EQUITY_POINT_DTYPE)
        # astype copies into native order, so the columns own their memory.
        return cls(points["at"].astype(np.int64), points["equity"].astype(np.float64))

    def to_bytes(self) -> bytes:
        """One 16-byte record per point (`EQUITY_POINT_DTYPE`)."""
        points = np.empty(len(self), EQUITY_POINT_DTYPE)
        points["at"] = self.at
        points["equity"] = self.equity
        return points.tobytes()

    def to_pairs(self) -> list[list[Any]]:
        """[ISO 8601 time, equity] per point."""
        return [
            [at, value]
            for at, value in zip(_iso_times(self.at), self.equity.tolist(), strict=True)
        ]

    def __len__(self) -> int:
        return int(self.equity.shape[0])

    @overload
    def __getitem__(self, index: int) -> EquityPoint: ...
    @overload
    def __getitem__(self, index: slice) -> EquityCurve: ...
    def __getitem__(self, index: int | slice) -> EquityPoint | EquityCurve:
        if isinstance(index, slice):
            return EquityCurve(self.at[index], self.equity[index])
        return EquityPoint(_utc(int(self.at[index])), float(self.equity[index]))

    def __iter__(self) -> Iterator[EquityPoint]:
        times = map(_utc, self.at.tolist())
        for at, value in zip(times, self.equity.tolist(), strict=True):
            yield EquityPoint(at, value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EquityCurve):
            return NotImplemented
        return np.array_equal(self.at, other.at) and np.array_equal(
            self.equity, other.equity
        )

    __hash__ = None  # type: ignore[assignment]


# The byte layout of `AccountFills.to_bytes`: every time, then every cash
# amount, then every unit count, little-endian, 24 bytes per fill.
_FILL_TIME_DTYPE = np.dtype("<i8")
_FILL_VALUE_DTYPE = np.dtype("<f8")
_FILL_BYTES = _FILL_TIME_DTYPE.itemsize + 2 * _FILL_VALUE_DTYPE.itemsize


@dataclass(frozen=True, eq=False)
class AccountFills:
    """The account after every fill, which holds until the next fill.

    Columns of shape (n_fills,): `at`, the open time of each fill's candle
    in epoch seconds, strictly ascending (the fills of one candle are one
    entry, the state after the last of them); `cash` in the quote currency;
    `units` held, negative for a short. Before the first fill the account
    holds the initial cash and no units.
    """

    at: IntArray
    cash: FloatArray
    units: FloatArray

    @classmethod
    def from_bytes(cls, data: bytes) -> AccountFills:
        """Fills from `to_bytes` form, or ValueError if `data` is not one."""
        if len(data) % _FILL_BYTES:
            raise ValueError(
                f"{len(data)} bytes are not whole fills of {_FILL_BYTES} bytes"
            )
        n = len(data) // _FILL_BYTES
        at = np.frombuffer(data, _FILL_TIME_DTYPE, n)
        values = np.frombuffer(data, _FILL_VALUE_DTYPE, 2 * n, offset=8 * n)
        # astype copies into native order, so the columns own their memory.
        return cls(
            at.astype(np.int64),
            values[:n].astype(np.float64),
            values[n:].astype(np.float64),
        )

    def to_bytes(self) -> bytes:
        """Every time, then every cash amount, then every unit count, as
        little-endian int64 and float64: 24 bytes per fill."""
        return b"".join(
            (
                self.at.astype(_FILL_TIME_DTYPE).tobytes(),
                self.cash.astype(_FILL_VALUE_DTYPE).tobytes(),
                self.units.astype(_FILL_VALUE_DTYPE).tobytes(),
            )
        )

    @classmethod
    def from_text(cls, text: str) -> AccountFills:
        """Fills from `to_text` form."""
        return cls.from_bytes(base64.b64decode(text, validate=True))

    def to_text(self) -> str:
        """`to_bytes` as base64, for the JSON form of a result."""
        return base64.b64encode(self.to_bytes()).decode("ascii")

    def __len__(self) -> int:
        return int(self.at.shape[0])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AccountFills):
            return NotImplemented
        return (
            np.array_equal(self.at, other.at)
            and np.array_equal(self.cash, other.cash)
            and np.array_equal(self.units, other.units)
        )

    __hash__ = None  # type: ignore[assignment]


def full_equity_curve(
    fills: AccountFills,
    candles: Candles,
    initial_cash: float,
    interval_seconds: int,
) -> EquityCurve:
    """Equity at the close of every candle, stamped with its close time.

    Each close is valued as the simulation values it, cash + units * close
    with the state of the last fill on or before that candle, so with the
    candles a backtest ran on the result equals its equity bit for bit.

    Raises:
        ValueError: a fill's candle is not among `candles`, so they are not
            the candles the fills came from.
    """
    times = candles.times
    found = np.searchsorted(times, fills.at)
    inside = found < times.size
    if not (inside.all() and np.array_equal(times[found], fills.at)):
        raise ValueError("a fill's candle is missing from the candles")

    # The number of fills on or before each candle picks its state; index 0
    # is the account before the first fill.
    state = np.searchsorted(fills.at, times, side="right")
    cash = np.concatenate(([initial_cash], fills.cash))[state]
    units = np.concatenate(([0.0], fills.units))[state]
    return EquityCurve(at=times + interval_seconds, equity=cash + units * candles.close)


@dataclass(frozen=True)
class BacktestResult:
    """Metrics, closed trades in time order, and the downsampled equity curve.

    `account_fills` and `data_version` (what the candles were, see
    `backcast.marketdata.VersionedCandles`) let the full equity curve be
    rebuilt later; both are None for results made before they were kept,
    and `data_version` also for candles that have no version (a local file).
    """

    metrics: Metrics
    trades: TradeTable
    equity_curve: EquityCurve
    metric_definitions: Mapping[str, str] = field(
        default_factory=lambda: METRIC_DEFINITIONS
    )
    account_fills: AccountFills | None = None
    data_version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        fills = self.account_fills
        return {
            "metrics": self.metrics.to_dict(),
            "trades": self.trades.to_dicts(),
            "equity_curve": self.equity_curve.to_pairs(),
            "metric_definitions": dict(self.metric_definitions),
            "account_fills": None if fills is None else fills.to_text(),
            "data_version": self.data_version,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BacktestResult:
        """A result from `to_dict` form, also as stored before newer fields.

        The store keeps no definitions; a result without them gets the
        current `METRIC_DEFINITIONS`.
        """
        fills = data.get("account_fills")
        return cls(
            metrics=Metrics.from_dict(data["metrics"]),
            trades=TradeTable.from_dicts(data["trades"]),
            equity_curve=EquityCurve.from_pairs(data["equity_curve"]),
            metric_definitions=data.get("metric_definitions") or METRIC_DEFINITIONS,
            account_fills=None if fills is None else AccountFills.from_text(fills),
            data_version=data.get("data_version"),
        )


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _seconds(at: datetime) -> int:
    # A time without an offset is UTC, as everywhere in the engine.
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return int(at.timestamp())


def _iso_times(seconds: IntArray) -> list[str]:
    # The same text as datetime.isoformat() of an aware UTC time with whole
    # seconds, made for the whole column at once.
    stamps = np.datetime_as_string(seconds.astype("datetime64[s]"), unit="s")
    return [f"{stamp}+00:00" for stamp in stamps.tolist()]


def _parse_times(texts: Sequence[str]) -> list[int]:
    return [_seconds(datetime.fromisoformat(text)) for text in texts]
