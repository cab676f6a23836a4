"""Translation between `backcast.v1` messages and the domain types.

Servicers and clients call these at the edge so that the queue and the
engine never see a protobuf message.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from google.protobuf import timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor

from backcast.engine.results import (
    METRIC_DEFINITIONS,
    AccountFills,
    BacktestResult,
    EquityCurve,
    Metrics,
    Trade,
    TradeTable,
)
from backcast.engine.spec import (
    DEFAULT_INITIAL_CASH,
    STRATEGIES,
    BacktestSpec,
    Costs,
    Execution,
    Interval,
    ParamSpec,
    StrategyInfo,
    StrategySpec,
    check_execution,
    check_market,
    resolve_params,
    validate_spec,
)
from backcast.errors import FieldViolation, InvalidArgument
from backcast.jobqueue.jobs import Attempt, AttemptOutcome, Job, JobState
from backcast.v1 import backtest_service_pb2 as api
from backcast.v1 import result_pb2, spec_pb2

if TYPE_CHECKING:
    from google.protobuf.internal.containers import RepeatedCompositeFieldContainer

    # Only for the annotation: translating coverage needs no database driver.
    from backcast.marketdata.storage import Coverage

_INTERVALS = {
    spec_pb2.CANDLE_INTERVAL_ONE_MINUTE: Interval.ONE_MINUTE,
    spec_pb2.CANDLE_INTERVAL_FIVE_MINUTES: Interval.FIVE_MINUTES,
    spec_pb2.CANDLE_INTERVAL_FIFTEEN_MINUTES: Interval.FIFTEEN_MINUTES,
    spec_pb2.CANDLE_INTERVAL_ONE_HOUR: Interval.ONE_HOUR,
    spec_pb2.CANDLE_INTERVAL_FOUR_HOURS: Interval.FOUR_HOURS,
    spec_pb2.CANDLE_INTERVAL_ONE_DAY: Interval.ONE_DAY,
}
_INTERVAL_CODES = {interval: code for code, interval in _INTERVALS.items()}

_STATES = {
    JobState.QUEUED: api.Backtest.STATE_QUEUED,
    JobState.RUNNING: api.Backtest.STATE_RUNNING,
    JobState.CANCELLING: api.Backtest.STATE_CANCELLING,
    JobState.SUCCEEDED: api.Backtest.STATE_SUCCEEDED,
    JobState.FAILED: api.Backtest.STATE_FAILED,
    JobState.CANCELLED: api.Backtest.STATE_CANCELLED,
}
_STATE_CODES = {code: state for state, code in _STATES.items()}

# Timestamps outside these years are rejected before datetime conversion.
_MIN_SECONDS = int(datetime(1970, 1, 1, tzinfo=UTC).timestamp())
_MAX_SECONDS = int(datetime(2200, 1, 1, tzinfo=UTC).timestamp())


def spec_from_proto(message: spec_pb2.BacktestSpec, path: str = "spec") -> BacktestSpec:
    """The validated domain spec of `message`.

    Raises:
        InvalidArgument: naming every bad field, with `path` as prefix.
    """
    violations: list[FieldViolation] = []
    strategy = _strategy_from_proto(message, path, violations)

    interval = None
    try:
        interval = interval_from_proto(message.interval, f"{path}.interval")
    except InvalidArgument as exc:
        violations += exc.violations
    start_at = _time_from_proto(message, "start_time", path, violations)
    end_at = _time_from_proto(message, "end_time", path, violations)
    costs = Costs(message.costs.commission, message.costs.slippage_bps)
    cash = message.initial_cash or DEFAULT_INITIAL_CASH
    execution = _execution_from_proto(message.execution)
    if strategy is None or interval is None or start_at is None or end_at is None:
        violations += check_market(message.instrument, costs, cash, path)
        name = strategy.name if strategy else ""
        violations += check_execution(execution, name, f"{path}.execution")
        raise InvalidArgument(violations)

    spec = BacktestSpec(
        strategy=strategy,
        instrument=message.instrument,
        interval=interval,
        start_at=start_at,
        end_at=end_at,
        costs=costs,
        initial_cash=cash,
        execution=execution,
    )
    violations += validate_spec(spec, path)
    if violations:
        raise InvalidArgument(violations)
    return spec


def interval_from_proto(code: int, path: str) -> Interval:
    """The domain interval of a CandleInterval code.

    Raises:
        InvalidArgument: naming `path` when the code is unspecified or unknown.
    """
    interval = _INTERVALS.get(cast("spec_pb2.CandleInterval.ValueType", code))
    if interval is None:
        names = ", ".join(spec_pb2.CandleInterval.Name(c) for c in _INTERVALS)
        raise InvalidArgument.of(path, f"{code} is not one of {names}")
    return interval


def interval_to_proto(interval: Interval) -> spec_pb2.CandleInterval.ValueType:
    return _INTERVAL_CODES[interval]


def coverage_to_proto(coverage: Coverage) -> api.InstrumentCoverage:
    return api.InstrumentCoverage(
        instrument=coverage.instrument,
        interval=_INTERVAL_CODES[coverage.interval],
        first_time=_timestamp(coverage.first_at),
        last_time=_timestamp(coverage.last_at),
        n_candles=coverage.n_candles,
    )


def _strategy_from_proto(
    message: spec_pb2.BacktestSpec, path: str, violations: list[FieldViolation]
) -> StrategySpec | None:
    name = message.strategy.WhichOneof("kind")
    if name is None:
        violations.append(
            FieldViolation(
                f"{path}.strategy",
                f"no strategy set; set one of {', '.join(STRATEGIES)}",
            )
        )
        return None
    raw = _fields_of(getattr(message.strategy, name))
    params, problems = resolve_params(name, raw, f"{path}.strategy.{name}")
    violations += problems
    return StrategySpec(name, params)


def _execution_from_proto(message: spec_pb2.Execution) -> Execution:
    # Enums arrive as their lowercase suffix ("next_open"), and 0 or
    # UNSPECIFIED as "" or 0.0: both mean the default.
    fields = _fields_of(message)
    default = Execution()
    return Execution(
        fill=fields["fill"] or default.fill,
        units=fields["units"] or default.units,
        position_fraction=fields["position_fraction"] or default.position_fraction,
        direction=fields["direction"] or default.direction,
        stop_loss=fields["stop_loss"],
        take_profit=fields["take_profit"],
    )


def _fields_of(message: Any) -> dict[str, Any]:
    """Field values by name; enums as their lowercase suffix ("simple")."""
    values: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.type == FieldDescriptor.TYPE_ENUM:
            enum = field.enum_type
            if value == 0:
                value = ""
            elif value in enum.values_by_number:
                prefix = _enum_prefix(enum.name)
                value = enum.values_by_number[value].name.removeprefix(prefix).lower()
            else:
                value = str(value)
        values[field.name] = value
    return values


@functools.cache
def _enum_prefix(enum_name: str) -> str:
    snake = "".join(f"_{c}" if c.isupper() else c for c in enum_name).lstrip("_")
    return snake.upper() + "_"


def _time_from_proto(
    message: Any, name: str, path: str, violations: list[FieldViolation]
) -> datetime | None:
    if not message.HasField(name):
        violations.append(FieldViolation(f"{path}.{name}", "required"))
        return None
    stamp: timestamp_pb2.Timestamp = getattr(message, name)
    if not _MIN_SECONDS <= stamp.seconds <= _MAX_SECONDS or not (
        0 <= stamp.nanos < 1_000_000_000
    ):
        violations.append(
            FieldViolation(f"{path}.{name}", "must lie between 1970 and 2200")
        )
        return None
    return stamp.ToDatetime(tzinfo=UTC)


def spec_to_proto(spec: BacktestSpec) -> spec_pb2.BacktestSpec:
    message = spec_pb2.BacktestSpec(
        instrument=spec.instrument,
        interval=_INTERVAL_CODES[spec.interval],
        start_time=_timestamp(spec.start_at),
        end_time=_timestamp(spec.end_at),
        costs=spec_pb2.Costs(
            commission=spec.costs.commission, slippage_bps=spec.costs.slippage_bps
        ),
        initial_cash=spec.initial_cash,
    )
    strategy = getattr(message.strategy, spec.strategy.name)
    strategy.SetInParent()
    _set_fields(strategy, spec.strategy.params)
    _set_fields(message.execution, spec.execution.to_dict())
    return message


def _set_fields(message: Any, values: Mapping[str, Any]) -> None:
    """Set the fields named in `values`; enums from their lowercase suffix."""
    for field in message.DESCRIPTOR.fields:
        value = values.get(field.name)
        if value is None:
            continue
        if field.type == FieldDescriptor.TYPE_ENUM:
            prefix = _enum_prefix(field.enum_type.name)
            value = field.enum_type.values_by_name[prefix + str(value).upper()].number
        setattr(message, field.name, value)


_PARAMETER_KINDS = {
    "int": api.ParameterDescription.KIND_INTEGER,
    "float": api.ParameterDescription.KIND_NUMBER,
    "choice": api.ParameterDescription.KIND_CHOICE,
}


def strategies_to_proto() -> api.ListStrategiesResponse:
    """Every registered strategy with its parameters, in registry order."""
    return api.ListStrategiesResponse(
        strategies=[_strategy_to_proto(info) for info in STRATEGIES.values()]
    )


def _strategy_to_proto(info: StrategyInfo) -> api.StrategyDescription:
    return api.StrategyDescription(
        name=info.name,
        description=info.description,
        parameters=[_parameter_to_proto(param) for param in info.params],
        supports_short=info.supports_short,
    )


def _parameter_to_proto(param: ParamSpec) -> api.ParameterDescription:
    message = api.ParameterDescription(
        name=param.name,
        kind=_PARAMETER_KINDS[param.kind],
        description=param.description,
    )
    if param.kind == "choice":
        message.default_choice = str(param.default)
        message.choices.extend(param.choices)
        return message
    message.default_number = float(param.default)
    # The wire's bounds are inclusive: an open bound becomes the nearest
    # value inside it (the next integer, or the next double).
    message.minimum = _inner_bound(param, param.low, param.low_open, math.inf)
    message.maximum = _inner_bound(param, param.high, param.high_open, -math.inf)
    return message


def _inner_bound(param: ParamSpec, bound: float, is_open: bool, inward: float) -> float:
    if not is_open:
        return float(bound)
    if param.kind == "int":
        return float(bound + (1 if inward > 0 else -1))
    return math.nextafter(bound, inward)


def _timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def state_to_proto(state: JobState) -> api.Backtest.State.ValueType:
    return _STATES[state]


def state_from_proto(code: int, path: str) -> JobState:
    state = _STATE_CODES.get(code)  # type: ignore[call-overload]
    if state is None:
        names = ", ".join(api.Backtest.State.Name(c) for c in _STATE_CODES)
        raise InvalidArgument.of(path, f"{code} is not one of {names}")
    return state


def job_to_proto(job: Job) -> api.Backtest:
    message = api.Backtest(
        id=job.id,
        owner=job.owner,
        spec=spec_to_proto(BacktestSpec.from_dict(job.spec)),
        priority=job.priority,
        state=_STATES[job.state],
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        progress=job.progress,
        request_id=job.request_id or "",
        create_time=_timestamp(job.created_at),
        update_time=_timestamp(job.updated_at),
    )
    if job.started_at is not None:
        message.start_time.CopyFrom(_timestamp(job.started_at))
    if job.finished_at is not None:
        message.end_time.CopyFrom(_timestamp(job.finished_at))
    if job.error_reason is not None:
        message.error.reason = job.error_reason
        message.error.message = job.error_message or ""
    if job.summary is not None:
        message.summary.CopyFrom(metrics_to_proto(Metrics.from_dict(job.summary)))
    return message


_OUTCOMES: dict[AttemptOutcome, api.Attempt.Outcome.ValueType] = {
    AttemptOutcome.RUNNING: api.Attempt.OUTCOME_RUNNING,
    AttemptOutcome.SUCCEEDED: api.Attempt.OUTCOME_SUCCEEDED,
    AttemptOutcome.FAILED: api.Attempt.OUTCOME_FAILED,
    AttemptOutcome.CANCELLED: api.Attempt.OUTCOME_CANCELLED,
    AttemptOutcome.EXPIRED: api.Attempt.OUTCOME_EXPIRED,
}


def attempt_to_proto(attempt: Attempt) -> api.Attempt:
    message = api.Attempt(
        number=attempt.number,
        worker=attempt.worker,
        outcome=_OUTCOMES[attempt.outcome],
        error_message=attempt.error_message or "",
        start_time=_timestamp(attempt.started_at),
    )
    if attempt.finished_at is not None:
        message.end_time.CopyFrom(_timestamp(attempt.finished_at))
    return message


def metrics_to_proto(metrics: Metrics) -> result_pb2.Metrics:
    values: dict[str, Any] = {k: _finite(v) for k, v in metrics.to_dict().items()}
    return result_pb2.Metrics(**values)


def _finite(value: float | int) -> float | int:
    # NaN and infinities do not survive JSON; the engine should not produce
    # them, but a metric with no defined value reads better as 0 than NaN.
    if isinstance(value, float) and not math.isfinite(value):
        return 0.0
    return value


def result_to_proto(
    result: BacktestResult,
    *,
    columns: bool = False,
    into: result_pb2.BacktestResult | None = None,
) -> result_pb2.BacktestResult:
    """`result` as a message; its trades and equity curve as
    `trade_columns` and `equity_columns` when asked (a worker's report),
    else as `trades` and `equity_curve` (what clients read).

    With `into`, an empty message (a field of a request being built), the
    result is written there and `into` returned: copying a year's result
    into its request afterwards costs a third of encoding it.
    """
    message = result_pb2.BacktestResult() if into is None else into
    message.metrics.CopyFrom(metrics_to_proto(result.metrics))
    message.metric_definitions.update(result.metric_definitions)
    curve = result.equity_curve
    if columns:
        _set_trade_columns(message.trade_columns, result.trades)
        message.equity_columns.times.extend(curve.at.tolist())
        message.equity_columns.equity.extend(curve.equity.tolist())
    else:
        _add_trades(message.trades, result.trades)
        add_point = message.equity_curve.add
        for at, equity in zip(curve.at.tolist(), curve.equity.tolist(), strict=True):
            add_point(equity=equity).time.seconds = at

    fills = result.account_fills
    if fills is not None:
        # Packed repeated fields take whole lists: 24 bytes a fill on the wire.
        message.account_fills.SetInParent()
        message.account_fills.candle_times.extend(fills.at.tolist())
        message.account_fills.cash.extend(fills.cash.tolist())
        message.account_fills.units.extend(fills.units.tolist())
    message.data_version = result.data_version or ""
    return message


def _add_trades(
    added: RepeatedCompositeFieldContainer[result_pb2.Trade], trades: TradeTable
) -> None:
    # Straight from the columns, adding to the repeated field in place: no
    # Trade, datetime or nested Timestamp built per row, which makes a
    # result of many trades several times faster to encode.
    add_trade = added.add
    rows = zip(
        trades.entry_at.tolist(),
        trades.exit_at.tolist(),
        trades.entry_price.tolist(),
        trades.exit_price.tolist(),
        trades.units.tolist(),
        trades.pnl.tolist(),
        trades.return_fraction.tolist(),
        strict=True,
    )
    for entry_at, exit_at, entry_price, exit_price, units, pnl, fraction in rows:
        trade = add_trade(
            entry_price=entry_price,
            exit_price=exit_price,
            units=units,
            pnl=pnl,
            return_fraction=fraction,
        )
        trade.entry_time.seconds = entry_at
        trade.exit_time.seconds = exit_at


def _set_trade_columns(columns: result_pb2.TradeColumns, trades: TradeTable) -> None:
    # Packed repeated fields take whole lists: 56 bytes a trade on the wire.
    columns.SetInParent()
    columns.entry_times.extend(trades.entry_at.tolist())
    columns.exit_times.extend(trades.exit_at.tolist())
    columns.entry_prices.extend(trades.entry_price.tolist())
    columns.exit_prices.extend(trades.exit_price.tolist())
    columns.units.extend(trades.units.tolist())
    columns.pnls.extend(trades.pnl.tolist())
    columns.return_fractions.extend(trades.return_fraction.tolist())


_TRADE_VALUES = ("entry_price", "exit_price", "units", "pnl", "return_fraction")
# Field names read once: walking a descriptor costs more than the small
# result it describes.
_METRIC_FIELDS = tuple(field.name for field in result_pb2.Metrics.DESCRIPTOR.fields)
_TRADE_COLUMNS = tuple(result_pb2.TradeColumns.DESCRIPTOR.fields_by_name)


def trade_to_proto(trade: Trade) -> result_pb2.Trade:
    return result_pb2.Trade(
        entry_time=_timestamp(trade.entry_at),
        exit_time=_timestamp(trade.exit_at),
        entry_price=trade.entry_price,
        exit_price=trade.exit_price,
        units=trade.units,
        pnl=trade.pnl,
        return_fraction=trade.return_fraction,
    )


def result_from_proto(message: result_pb2.BacktestResult) -> BacktestResult:
    """The domain result of `message`; times keep their whole seconds.

    A message without metric definitions gets the current ones; trades and
    the equity curve come from `trade_columns` and `equity_columns` when
    set, else from `trades` and `equity_curve`.

    Raises:
        InvalidArgument: the trade, equity or fill columns differ in length,
            or fill times do not ascend.
    """
    sent = message.metrics
    metrics = Metrics(**{name: getattr(sent, name) for name in _METRIC_FIELDS})
    definitions = dict(message.metric_definitions) or METRIC_DEFINITIONS
    return BacktestResult(
        metrics,
        _trades_from_proto(message),
        _equity_from_proto(message),
        definitions,
        account_fills=_account_fills_from_proto(message),
        data_version=message.data_version or None,
    )


def _trades_from_proto(message: result_pb2.BacktestResult) -> TradeTable:
    if message.HasField("trade_columns"):
        return _trades_from_columns(message.trade_columns)
    trades = message.trades
    return TradeTable(
        np.array([t.entry_time.seconds for t in trades], dtype=np.int64),
        np.array([t.exit_time.seconds for t in trades], dtype=np.int64),
        *(
            np.array([getattr(t, name) for t in trades], dtype=np.float64)
            for name in _TRADE_VALUES
        ),
    )


def _equity_from_proto(message: result_pb2.BacktestResult) -> EquityCurve:
    if message.HasField("equity_columns"):
        return _equity_from_columns(message.equity_columns)
    points = message.equity_curve
    return EquityCurve(
        np.array([p.time.seconds for p in points], dtype=np.int64),
        np.array([p.equity for p in points], dtype=np.float64),
    )


def _trades_from_columns(columns: result_pb2.TradeColumns) -> TradeTable:
    """The trades of `columns`.

    Raises:
        InvalidArgument: the columns differ in length.
    """
    lengths = {name: len(getattr(columns, name)) for name in _TRADE_COLUMNS}
    if len(set(lengths.values())) > 1:
        counts = ", ".join(f"{n} {name}" for name, n in lengths.items())
        raise InvalidArgument.of(
            "result.trade_columns", f"{counts}; every trade needs one of each"
        )
    return TradeTable(
        np.array(columns.entry_times, dtype=np.int64),
        np.array(columns.exit_times, dtype=np.int64),
        np.array(columns.entry_prices, dtype=np.float64),
        np.array(columns.exit_prices, dtype=np.float64),
        np.array(columns.units, dtype=np.float64),
        np.array(columns.pnls, dtype=np.float64),
        np.array(columns.return_fractions, dtype=np.float64),
    )


def _equity_from_columns(columns: result_pb2.EquityColumns) -> EquityCurve:
    """The curve of `columns`.

    Raises:
        InvalidArgument: the columns differ in length.
    """
    curve = EquityCurve(
        np.array(columns.times, dtype=np.int64),
        np.array(columns.equity, dtype=np.float64),
    )
    if len(curve.at) != len(curve.equity):
        raise InvalidArgument.of(
            "result.equity_columns",
            f"{len(curve.at)} times and {len(curve.equity)} equity values; "
            "every point needs one of each",
        )
    return curve


def _account_fills_from_proto(
    message: result_pb2.BacktestResult,
) -> AccountFills | None:
    """The fills of `message`, None if it has none (an older worker's).

    Raises:
        InvalidArgument: the columns differ in length or times do not ascend.
    """
    if not message.HasField("account_fills"):
        return None
    sent = message.account_fills
    fills = AccountFills(
        np.array(sent.candle_times, dtype=np.int64),
        np.array(sent.cash, dtype=np.float64),
        np.array(sent.units, dtype=np.float64),
    )
    path = "result.account_fills"
    if not len(fills.at) == len(fills.cash) == len(fills.units):
        raise InvalidArgument.of(
            path,
            f"{len(fills.at)} candle_times, {len(fills.cash)} cash and "
            f"{len(fills.units)} units; every fill needs one of each",
        )
    if np.any(np.diff(fills.at) <= 0):
        raise InvalidArgument.of(path, "candle_times must ascend strictly")
    return fills
