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
INSTRUMENT_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9._/-]{0,31}$")
SYNTHETIC_PREFIX = "SYN-"


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


@dataclass(frozen=True)
class StrategyInfo:
    """A registered strategy: its name, a one-line summary and parameters."""

    name: str
    description: str
    params: tuple[ParamSpec, ...]


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
        ),
    )
}


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
    if not param.low <= value <= param.high:
        return f"{value} is outside [{param.low:g}, {param.high:g}]"
    return None


def _check_cross_params(
    name: str, params: Mapping[str, Any], path: str
) -> list[FieldViolation]:
    if name == "moving_average_crossover":
        fast, slow = params.get("fast_period"), params.get("slow_period")
        if fast is not None and slow is not None and fast >= slow:
            return [
                FieldViolation(
                    f"{path}.slow_period",
                    f"slow_period {slow} must be greater than fast_period {fast}",
                )
            ]
    return []


def validate_spec(spec: BacktestSpec, path: str = "spec") -> list[FieldViolation]:
    """Every problem of a spec whose strategy params are already resolved."""
    return [
        *check_market(spec.instrument, spec.costs, spec.initial_cash, path),
        *_check_period(spec, path),
    ]


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
