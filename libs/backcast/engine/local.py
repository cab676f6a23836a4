"""Backtests of a CSV file of candles in this process, for notebooks and the CLI.

The candles go through the parser and checks of `backcast data import`, and
the backtest through `run_on_candles`, the code the compute workers run.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from os import PathLike
from pathlib import Path

import numpy as np

from backcast.engine.backtest import run_on_candles
from backcast.engine.candles import Candles, IntArray
from backcast.engine.results import BacktestResult
from backcast.engine.spec import (
    BacktestSpec,
    Costs,
    Execution,
    Interval,
    StrategySpec,
    check_execution,
    check_market,
    resolve_params,
    validate_spec,
)
from backcast.errors import FieldViolation, InvalidArgument
from backcast.marketdata.csv_import import parse_candles

# Candles from a file belong to no stored instrument; the name only has to
# pass the symbol check. Not "SYN-", so the weekend rule of
# `periods_per_year` decides between 252 and 365 days, as for imported data.
LOCAL_INSTRUMENT = "LOCAL"

_INTERVALS_BY_SECONDS = {interval.seconds: interval for interval in Interval}
_INTERVAL_NAMES = ", ".join(interval.value for interval in Interval)


def backtest_csv(
    path: str | PathLike[str],
    strategy: str,
    *,
    params: Mapping[str, int | float | str] | None = None,
    commission: float = 0.0,
    slippage_bps: float = 0.0,
    fill: str = "next_open",
    units: str = "whole",
    position_fraction: float = 1.0,
    direction: str = "long_only",
    stop_loss: float = 0.0,
    take_profit: float = 0.0,
    initial_cash: float = 10_000.0,
    interval: Interval | str | None = None,
) -> BacktestResult:
    """Backtest `strategy` on the candles of the CSV file at `path`.

    The file is read as by `backcast data import`: a header row naming time,
    open, high, low, close and volume, one candle per line, times as epoch
    seconds or ISO-8601 UTC. The options mean what the fields of a submitted
    spec mean (docs/engine.md); parameters left out take their defaults.

    Args:
        params: strategy parameters by name, e.g. `{"fast_period": 10}`.
        commission: fraction of traded notional charged on every fill.
        slippage_bps: adverse slippage on every fill, in basis points.
        stop_loss: fraction of the entry price; 0.0 for none.
        take_profit: fraction of the entry price; 0.0 for none.
        interval: the candle interval ("1h" or an `Interval`); when None,
            the shortest time step between two candles of the file.

    Returns:
        The metrics, closed trades and equity curve, as a worker stores them.

    Raises:
        InvalidArgument: an option out of range, with the API's wording and
            the argument's name as field (`params.slow_period`, `fill`).
        InvalidCandleFile: the first bad line of the file.
        BacktestFailed: the file holds too few candles for the warm-up.
        OSError: the file cannot be read.

    Example:
        >>> from backcast.engine import backtest_csv
        >>> result = backtest_csv(
        ...     "btc-1h.csv",
        ...     "moving_average_crossover",
        ...     params={"fast_period": 10, "slow_period": 30},
        ...     commission=0.001,
        ... )
        >>> result.metrics.sharpe_ratio, result.metrics.n_trades
    """
    strategy_spec = _strategy(strategy, params or {})
    costs = Costs(commission=commission, slippage_bps=slippage_bps)
    execution = Execution(
        fill=fill,
        units=units,
        position_fraction=position_fraction,
        direction=direction,
        stop_loss=stop_loss,
        take_profit=take_profit,
    )
    chosen = _interval(interval)
    # Checked before the file is read: a typo in an option should not wait
    # for a large file to parse.
    _raise_violations(
        check_market(LOCAL_INSTRUMENT, costs, initial_cash)
        + check_execution(execution, strategy)
    )

    candles, chosen = read_candle_file(Path(path), chosen)
    spec = BacktestSpec(
        strategy=strategy_spec,
        instrument=LOCAL_INSTRUMENT,
        interval=chosen,
        start_at=datetime.fromtimestamp(int(candles.times[0]), UTC),
        end_at=datetime.fromtimestamp(int(candles.times[-1]), UTC) + chosen.step,
        costs=costs,
        initial_cash=initial_cash,
        execution=execution,
    )
    _raise_violations(validate_spec(spec))
    return run_on_candles(spec, candles)


def read_candle_file(
    path: Path, interval: Interval | None = None
) -> tuple[Candles, Interval]:
    """The checked candles of the CSV file at `path`, and their interval.

    Without `interval`, it is the shortest time step between two candles.

    Raises:
        InvalidCandleFile: the first bad line.
        InvalidArgument: the interval cannot be inferred (field `interval`).
        OSError: the file cannot be read.
    """
    text = path.read_text(encoding="utf-8-sig")
    if interval is not None:
        return parse_candles(text, interval), interval

    # Every interval's grid lies on the one-minute grid, so this parse checks
    # all but the grid of the interval found next.
    candles = parse_candles(text, Interval.ONE_MINUTE)
    found = infer_interval(candles.times)
    if found is not Interval.ONE_MINUTE:
        candles = parse_candles(text, found)
    return candles, found


def infer_interval(times: IntArray) -> Interval:
    """The interval whose length is the shortest step between `times`.

    Gaps (nights, weekends) only lengthen steps, so the shortest one is the
    interval. `times` are epoch seconds in increasing order.

    Raises:
        InvalidArgument: fewer than two times, or a step of no interval.
    """
    if times.size < 2:
        raise InvalidArgument.of(
            "interval",
            f"the file holds {times.size} candle, too few to infer the interval; "
            f"pass one of {_INTERVAL_NAMES}",
        )
    step = int(np.diff(times).min())
    found = _INTERVALS_BY_SECONDS.get(step)
    if found is None:
        raise InvalidArgument.of(
            "interval",
            f"the shortest time step of the file, {step} seconds, is no "
            f"supported interval; pass one of {_INTERVAL_NAMES}",
        )
    return found


def _strategy(name: str, raw: Mapping[str, int | float | str]) -> StrategySpec:
    resolved, violations = resolve_params(name, raw, "params")
    # An unknown strategy is reported on the path itself.
    violations = [
        FieldViolation("strategy", v.description) if v.field == "params" else v
        for v in violations
    ]
    if violations:
        raise InvalidArgument(violations)
    return StrategySpec(name, resolved)


def _interval(value: Interval | str | None) -> Interval | None:
    if value is None or isinstance(value, Interval):
        return value
    try:
        return Interval(value)
    except ValueError:
        raise InvalidArgument.of(
            "interval", f'"{value}" is not one of {_INTERVAL_NAMES}'
        ) from None


def _raise_violations(violations: list[FieldViolation]) -> None:
    if violations:
        raise InvalidArgument([_argument_violation(v) for v in violations])


def _argument_violation(violation: FieldViolation) -> FieldViolation:
    # `spec.costs.commission` is the `commission` argument here; the period
    # comes from the file.
    name = violation.field.removeprefix("spec.")
    name = name.removeprefix("costs.").removeprefix("execution.")
    if name in ("start_time", "end_time"):
        name = "path"
    return FieldViolation(name, violation.description)
