"""Translation between `backcast.v1` messages and the domain types.

Servicers and clients call these at the edge so that the queue and the
engine never see a protobuf message.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from google.protobuf import timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor

from backcast.engine.results import BacktestResult, EquityPoint, Metrics, Trade
from backcast.engine.spec import (
    DEFAULT_INITIAL_CASH,
    BacktestSpec,
    Costs,
    Interval,
    StrategySpec,
    check_market,
    resolve_params,
    validate_spec,
)
from backcast.errors import FieldViolation, InvalidArgument
from backcast.jobqueue.jobs import Job, JobState
from backcast.v1 import backtest_service_pb2 as api
from backcast.v1 import result_pb2, spec_pb2

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

    interval = _INTERVALS.get(message.interval)
    if interval is None:
        names = ", ".join(spec_pb2.CandleInterval.Name(c) for c in _INTERVALS)
        violations.append(
            FieldViolation(
                f"{path}.interval", f"{message.interval} is not one of {names}"
            )
        )
    start_at = _time_from_proto(message, "start_time", path, violations)
    end_at = _time_from_proto(message, "end_time", path, violations)
    costs = Costs(message.costs.commission, message.costs.slippage_bps)
    cash = message.initial_cash or DEFAULT_INITIAL_CASH
    if strategy is None or interval is None or start_at is None or end_at is None:
        violations += check_market(message.instrument, costs, cash, path)
        raise InvalidArgument(violations)

    spec = BacktestSpec(
        strategy=strategy,
        instrument=message.instrument,
        interval=interval,
        start_at=start_at,
        end_at=end_at,
        costs=costs,
        initial_cash=cash,
    )
    violations += validate_spec(spec, path)
    if violations:
        raise InvalidArgument(violations)
    return spec


def _strategy_from_proto(
    message: spec_pb2.BacktestSpec, path: str, violations: list[FieldViolation]
) -> StrategySpec | None:
    name = message.strategy.WhichOneof("kind")
    if name is None:
        violations.append(
            FieldViolation(
                f"{path}.strategy",
                "no strategy set; set one of moving_average_crossover, buy_and_hold",
            )
        )
        return None
    raw = _fields_of(getattr(message.strategy, name))
    params, problems = resolve_params(name, raw, f"{path}.strategy.{name}")
    violations += problems
    return StrategySpec(name, params)


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
    for field in strategy.DESCRIPTOR.fields:
        value = spec.strategy.params.get(field.name)
        if value is None:
            continue
        if field.type == FieldDescriptor.TYPE_ENUM:
            prefix = _enum_prefix(field.enum_type.name)
            value = field.enum_type.values_by_name[prefix + str(value).upper()].number
        setattr(strategy, field.name, value)
    return message


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


def metrics_to_proto(metrics: Metrics) -> result_pb2.Metrics:
    values = {k: _finite(v) for k, v in metrics.to_dict().items()}
    return result_pb2.Metrics(**values)


def _finite(value: float | int) -> float | int:
    # NaN and infinities do not survive JSON; the engine should not produce
    # them, but a metric with no defined value reads better as 0 than NaN.
    if isinstance(value, float) and not math.isfinite(value):
        return 0.0
    return value


def result_to_proto(result: BacktestResult) -> result_pb2.BacktestResult:
    return result_pb2.BacktestResult(
        metrics=metrics_to_proto(result.metrics),
        trades=[trade_to_proto(t) for t in result.trades],
        equity_curve=[
            result_pb2.EquityPoint(time=_timestamp(p.at), equity=p.equity)
            for p in result.equity_curve
        ],
    )


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
    metrics = Metrics(
        **{
            field.name: getattr(message.metrics, field.name)
            for field in result_pb2.Metrics.DESCRIPTOR.fields
        }
    )
    trades = tuple(
        Trade(
            entry_at=t.entry_time.ToDatetime(tzinfo=UTC),
            exit_at=t.exit_time.ToDatetime(tzinfo=UTC),
            entry_price=t.entry_price,
            exit_price=t.exit_price,
            units=t.units,
            pnl=t.pnl,
            return_fraction=t.return_fraction,
        )
        for t in message.trades
    )
    curve = tuple(
        EquityPoint(p.time.ToDatetime(tzinfo=UTC), p.equity)
        for p in message.equity_curve
    )
    return BacktestResult(metrics, trades, curve)
