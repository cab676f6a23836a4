"""What a backtest runs: the spec, its costs, and the registry of strategies.

These are the domain types behind `backcast.v1.BacktestSpec`; the store keeps
them as JSON (`to_dict`/`from_dict`) and the engine reads nothing else.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from backcast.errors import FieldViolation

MAX_CANDLES = 5_000_000
MAX_INITIAL_CASH = 1e12
DEFAULT_INITIAL_CASH = 10_000.0
# \Z, not $: `$` also matches before a final line break, which would let
# "BTCUSD\n" through as a symbol.
INSTRUMENT_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9._/-]{0,31}\Z")
SYNTHETIC_PREFIX = "SYN-"
# Candles and backtests lie in [EARLIEST_AT, LATEST_AT): room for any market
# data, and every time in it is a valid datetime and PostgreSQL timestamp.
EARLIEST_AT = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_AT = datetime(2200, 1, 1, tzinfo=UTC)


class Interval(Enum):
    """Candle interval; the value is its short name."""

    ONE_MINUTE = "1m"
    FIVE_MINUTES = "5m"
    FIFTEEN_MINUTES = "15m"
    ONE_HOUR = "1h"
    FOUR_HOURS = "4h"
    ONE_DAY = "1d"

    @property
    def seconds(self) -> int:
        return _INTERVAL_SECONDS[self]

    @property
    def step(self) -> timedelta:
        return timedelta(seconds=self.seconds)


_INTERVAL_SECONDS = {
    Interval.ONE_MINUTE: 60,
    Interval.FIVE_MINUTES: 300,
    Interval.FIFTEEN_MINUTES: 900,
    Interval.ONE_HOUR: 3600,
    Interval.FOUR_HOURS: 14_400,
    Interval.ONE_DAY: 86_400,
}


@dataclass(frozen=True)
class ParamSpec:
    """One strategy parameter: its type, default and allowed values.

    `kind` is "int", "float" or "choice"; numbers lie in [low, high], choices
    in `choices`. A value of 0 (or "") on the wire means the default.
    """

    name: str
    kind: str
    default: int | float | str
    description: str
    low: float = 0.0
    high: float = 0.0
    choices: tuple[str, ...] = ()
    # An open bound excludes its value: (0, 50) rather than [0, 50].
    low_open: bool = False
    high_open: bool = False


@dataclass(frozen=True)
class StrategyInfo:
    """A registered strategy: its name, a one-line summary and parameters.

    `supports_short` tells whether it has a short rule, the mirror of its
    long one, for the long_short direction.
    """

    name: str
    description: str
    params: tuple[ParamSpec, ...]
    supports_short: bool = True


STRATEGIES: dict[str, StrategyInfo] = {
    info.name: info
    for info in (
        StrategyInfo(
            "moving_average_crossover",
            "long while the fast moving average is above the slow one",
            (
                ParamSpec("fast_period", "int", 10, "fast average, candles", 1, 9999),
                ParamSpec("slow_period", "int", 30, "slow average, candles", 2, 10000),
                ParamSpec(
                    "kind",
                    "choice",
                    "simple",
                    "how the averages weight their window",
                    choices=("simple", "exponential"),
                ),
            ),
        ),
        StrategyInfo(
            "buy_and_hold",
            "buy at the first candle and hold to the end (the benchmark)",
            (),
            supports_short=False,
        ),
        StrategyInfo(
            "rsi_mean_reversion",
            "long below the oversold RSI until it rises above overbought",
            (
                ParamSpec("period", "int", 14, "RSI length, candles", 2, 1000),
                ParamSpec(
                    "oversold",
                    "float",
                    30.0,
                    "RSI below which to enter long",
                    0,
                    50,
                    low_open=True,
                    high_open=True,
                ),
                ParamSpec(
                    "overbought",
                    "float",
                    70.0,
                    "RSI above which to exit (or enter short)",
                    50,
                    100,
                    low_open=True,
                    high_open=True,
                ),
            ),
        ),
        StrategyInfo(
            "bollinger_breakout",
            "long on a close above the upper band until one below the middle",
            (
                ParamSpec("period", "int", 20, "middle band window, candles", 2, 10000),
                ParamSpec(
                    "width",
                    "float",
                    2.0,
                    "band width, standard deviations",
                    0,
                    10,
                    low_open=True,
                ),
            ),
        ),
        StrategyInfo(
            "macd_trend",
            "long while the MACD line is above its signal line",
            (
                ParamSpec("fast_period", "int", 12, "fast average, candles", 1, 999),
                ParamSpec("slow_period", "int", 26, "slow average, candles", 2, 1000),
                ParamSpec(
                    "signal_period", "int", 9, "signal average, candles", 1, 1000
                ),
            ),
        ),
        StrategyInfo(
            "donchian_breakout",
            "long on a close above the entry channel until one below the exit channel",
            (
                ParamSpec(
                    "entry_period", "int", 20, "entry channel, candles", 2, 10000
                ),
                ParamSpec("exit_period", "int", 10, "exit channel, candles", 2, 10000),
            ),
        ),
    )
}

FILLS = ("next_open", "close")
UNITS = ("whole", "fractional")
DIRECTIONS = ("long_only", "long_short")
MAX_TAKE_PROFIT = 100.0


@dataclass(frozen=True)
class Execution:
    """How orders fill and positions are sized; see `backcast.engine.simulation`.

    `fill` is one of FILLS, `units` of UNITS, `direction` of DIRECTIONS.
    `position_fraction` is the fraction of equity an entry commits;
    `stop_loss` and `take_profit` are fractions of the entry price, 0.0 for
    none.
    """

    fill: str = "next_open"
    units: str = "whole"
    position_fraction: float = 1.0
    direction: str = "long_only"
    stop_loss: float = 0.0
    take_profit: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "fill": self.fill,
            "units": self.units,
            "position_fraction": self.position_fraction,
            "direction": self.direction,
            "stop_loss": self.stop_loss,
            "take_profit": self.take_profit,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Execution:
        default = cls()
        return cls(
            fill=str(data.get("fill", default.fill)),
            units=str(data.get("units", default.units)),
            position_fraction=float(
                data.get("position_fraction", default.position_fraction)
            ),
            direction=str(data.get("direction", default.direction)),
            stop_loss=float(data.get("stop_loss", default.stop_loss)),
            take_profit=float(data.get("take_profit", default.take_profit)),
        )


@dataclass(frozen=True)
class StrategySpec:
    """A registered strategy name and its parameters, defaults filled in."""

    name: str
    params: Mapping[str, int | float | str] = field(default_factory=dict)


@dataclass(frozen=True)
class Costs:
    """Commission as a fraction of notional; slippage in basis points."""

    commission: float = 0.0
    slippage_bps: float = 0.0


@dataclass(frozen=True)
class BacktestSpec:
    """One strategy over one instrument's candles in [start_at, end_at)."""

    strategy: StrategySpec
    instrument: str
    interval: Interval
    start_at: datetime
    end_at: datetime
    costs: Costs = Costs()
    initial_cash: float = DEFAULT_INITIAL_CASH
    execution: Execution = Execution()

    @property
    def n_candles(self) -> int:
        return (
            int((self.end_at - self.start_at).total_seconds()) // self.interval.seconds
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": {
                "name": self.strategy.name,
                "params": dict(self.strategy.params),
            },
            "instrument": self.instrument,
            "interval": self.interval.value,
            "start_at": self.start_at.isoformat(),
            "end_at": self.end_at.isoformat(),
            "costs": {
                "commission": self.costs.commission,
                "slippage_bps": self.costs.slippage_bps,
            },
            "initial_cash": self.initial_cash,
            "execution": self.execution.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BacktestSpec:
        strategy = data["strategy"]
        costs = data.get("costs", {})
        return cls(
            strategy=StrategySpec(strategy["name"], dict(strategy.get("params", {}))),
            instrument=data["instrument"],
            interval=Interval(data["interval"]),
            start_at=datetime.fromisoformat(data["start_at"]),
            end_at=datetime.fromisoformat(data["end_at"]),
            costs=Costs(
                commission=float(costs.get("commission", 0.0)),
                slippage_bps=float(costs.get("slippage_bps", 0.0)),
            ),
            initial_cash=float(data.get("initial_cash", DEFAULT_INITIAL_CASH)),
            # Specs stored before execution options existed ran the defaults.
            execution=Execution.from_dict(data.get("execution", {})),
        )


def resolve_params(
    name: str, raw: Mapping[str, Any], path: str
) -> tuple[dict[str, int | float | str], list[FieldViolation]]:
    """Fill defaults into `raw` and check every parameter of strategy `name`.

    `path` prefixes the field names of violations (e.g.
    `spec.strategy.moving_average_crossover`). Unknown names are violations.
    """
    info = STRATEGIES.get(name)
    if info is None:
        known = ", ".join(sorted(STRATEGIES))
        return {}, [
            FieldViolation(path, f'strategy "{name}" not found; use one of {known}')
        ]

    violations = [
        FieldViolation(f"{path}.{key}", f'unknown parameter "{key}" of {name}')
        for key in raw
        if key not in {p.name for p in info.params}
    ]
    params: dict[str, int | float | str] = {}
    for param in info.params:
        value = raw.get(param.name)
        if value in (None, 0, 0.0, ""):
            value = param.default
        problem = _check_param(param, value)
        if problem:
            violations.append(FieldViolation(f"{path}.{param.name}", problem))
        else:
            params[param.name] = value

    violations += _check_cross_params(name, params, path)
    return params, violations


def _check_param(param: ParamSpec, value: Any) -> str | None:
    if param.kind == "choice":
        if value not in param.choices:
            return f'"{value}" is not one of {", ".join(param.choices)}'
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{value!r} is not a number"
    if not math.isfinite(value):
        return f"{value} is not a finite number"
    if param.kind == "int" and value != int(value):
        return f"{value} is not a whole number"
    too_low = value <= param.low if param.low_open else value < param.low
    too_high = value >= param.high if param.high_open else value > param.high
    if too_low or too_high:
        return f"{value} is outside {_range_text(param)}"
    return None


def _range_text(param: ParamSpec) -> str:
    opening = "(" if param.low_open else "["
    closing = ")" if param.high_open else "]"
    return f"{opening}{param.low:g}, {param.high:g}{closing}"


# Pairs of parameters where the first must be below the second.
_ORDERED_PARAMS = {
    "moving_average_crossover": ("fast_period", "slow_period"),
    "macd_trend": ("fast_period", "slow_period"),
    "rsi_mean_reversion": ("oversold", "overbought"),
}


def _check_cross_params(
    name: str, params: Mapping[str, Any], path: str
) -> list[FieldViolation]:
    if name not in _ORDERED_PARAMS:
        return []
    lower, upper = _ORDERED_PARAMS[name]
    low, high = params.get(lower), params.get(upper)
    if low is not None and high is not None and low >= high:
        return [
            FieldViolation(
                f"{path}.{upper}",
                f"{upper} {high} must be greater than {lower} {low}",
            )
        ]
    return []


def validate_spec(spec: BacktestSpec, path: str = "spec") -> list[FieldViolation]:
    """Every problem of a spec whose strategy params are already resolved."""
    return [
        *check_market(spec.instrument, spec.costs, spec.initial_cash, path),
        *_check_period(spec, path),
        *check_execution(spec.execution, spec.strategy.name, f"{path}.execution"),
    ]


def check_execution(
    execution: Execution, strategy: str, path: str = "spec.execution"
) -> list[FieldViolation]:
    """Problems of the execution options of a backtest of `strategy`."""
    violations = [
        FieldViolation(f"{path}.{name}", f'"{value}" is not one of {", ".join(ok)}')
        for name, value, ok in (
            ("fill", execution.fill, FILLS),
            ("units", execution.units, UNITS),
            ("direction", execution.direction, DIRECTIONS),
        )
        if value not in ok
    ]
    info = STRATEGIES.get(strategy)
    if execution.direction == "long_short" and info and not info.supports_short:
        violations.append(
            FieldViolation(
                f"{path}.direction",
                f"{strategy} has no short rule; use long_only",
            )
        )

    fraction = execution.position_fraction
    if not (math.isfinite(fraction) and 0 < fraction <= 1):
        violations.append(
            FieldViolation(f"{path}.position_fraction", f"{fraction} is outside (0, 1]")
        )
    stop_loss = execution.stop_loss
    if not (math.isfinite(stop_loss) and 0 <= stop_loss < 1):
        violations.append(
            FieldViolation(f"{path}.stop_loss", f"{stop_loss} is outside [0, 1)")
        )
    take_profit = execution.take_profit
    if not (math.isfinite(take_profit) and 0 <= take_profit <= MAX_TAKE_PROFIT):
        violations.append(
            FieldViolation(
                f"{path}.take_profit",
                f"{take_profit} is outside [0, {MAX_TAKE_PROFIT:g}]",
            )
        )
    return violations


def check_market(
    instrument: str, costs: Costs, initial_cash: float, path: str = "spec"
) -> list[FieldViolation]:
    """Problems of the instrument, costs and cash, which need no other field."""
    violations: list[FieldViolation] = []
    if not INSTRUMENT_PATTERN.match(instrument):
        violations.append(
            FieldViolation(
                f"{path}.instrument",
                f'"{instrument[:40]}" is not a symbol: 1 to 32 characters of '
                "A-Z, 0-9, '.', '-', '_' or '/', starting with a letter or digit",
            )
        )
    violations += _check_costs(costs, f"{path}.costs")
    if not (math.isfinite(initial_cash) and 0 < initial_cash <= MAX_INITIAL_CASH):
        violations.append(
            FieldViolation(
                f"{path}.initial_cash",
                f"{initial_cash} is outside (0, {MAX_INITIAL_CASH:g}]",
            )
        )
    return violations


def _check_period(spec: BacktestSpec, path: str) -> list[FieldViolation]:
    if spec.start_at.tzinfo is None or spec.end_at.tzinfo is None:
        return [FieldViolation(f"{path}.start_time", "times must be in UTC")]
    if spec.end_at <= spec.start_at:
        return [
            FieldViolation(
                f"{path}.end_time",
                f"end_time {spec.end_at.isoformat()} is not after start_time "
                f"{spec.start_at.isoformat()}",
            )
        ]
    if spec.n_candles < 2:
        return [
            FieldViolation(
                f"{path}.end_time",
                f"the period holds {spec.n_candles} {spec.interval.value} candles; "
                "a backtest needs at least 2",
            )
        ]
    if spec.n_candles > MAX_CANDLES:
        return [
            FieldViolation(
                f"{path}.end_time",
                f"the period holds {spec.n_candles} {spec.interval.value} candles; "
                f"at most {MAX_CANDLES} are allowed",
            )
        ]
    return []


def _check_costs(costs: Costs, path: str) -> list[FieldViolation]:
    violations = []
    if not (math.isfinite(costs.commission) and 0 <= costs.commission < 0.1):
        violations.append(
            FieldViolation(
                f"{path}.commission", f"{costs.commission} is outside [0, 0.1)"
            )
        )
    if not (math.isfinite(costs.slippage_bps) and 0 <= costs.slippage_bps < 1000):
        violations.append(
            FieldViolation(
                f"{path}.slippage_bps", f"{costs.slippage_bps} is outside [0, 1000)"
            )
        )
    return violations


def utc(value: datetime) -> datetime:
    """`value` as an aware UTC datetime (naive values are taken as UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
