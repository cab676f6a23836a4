"""Text views of backtests, results and specs for the command-line client."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from backcast.cli.tables import number, percent, render_table
from backcast.errors import InvalidArgument
from backcast.rpc import translate
from backcast.v1 import backtest_service_pb2 as api
from backcast.v1 import result_pb2, spec_pb2

STATE_NAMES = (
    "queued",
    "running",
    "cancelling",
    "succeeded",
    "failed",
    "cancelled",
)
_TERMINAL = frozenset(
    {
        api.Backtest.STATE_SUCCEEDED,
        api.Backtest.STATE_FAILED,
        api.Backtest.STATE_CANCELLED,
    }
)

# How each metric reads: a fraction shown as a percentage, a ratio, a count or
# an amount of money.
_METRIC_FORMATS = {
    "total_return": "percent",
    "cagr": "percent",
    "annualized_volatility": "percent",
    "sharpe_ratio": "ratio",
    "max_drawdown": "percent",
    "max_drawdown_candles": "count",
    "n_trades": "count",
    "win_rate": "percent",
    "profit_factor": "ratio",
    "exposure": "percent",
    "commissions_paid": "money",
    "buy_and_hold_return": "percent",
    "final_equity": "money",
    "n_candles": "count",
    "periods_per_year": "count",
    "sortino_ratio": "ratio",
    "calmar_ratio": "ratio",
    "max_drawdown_seconds": "duration",
    "expectancy": "money",
    "expectancy_return": "percent",
    "best_trade_return": "percent",
    "worst_trade_return": "percent",
    "open_trade_pnl": "money",
}


def state_code(name: str) -> api.Backtest.State.ValueType:
    """`queued` as `STATE_QUEUED`."""
    return api.Backtest.State.Value(f"STATE_{name.upper()}")


def state_name(code: int) -> str:
    """`STATE_QUEUED` as `queued`."""
    return api.Backtest.State.Name(code).removeprefix("STATE_").lower()  # type: ignore[arg-type]


def is_terminal(backtest: api.Backtest) -> bool:
    return backtest.state in _TERMINAL


def interval_label(code: int) -> str:
    """`CANDLE_INTERVAL_ONE_HOUR` as `1h`."""
    try:
        return translate.interval_from_proto(code, "interval").value
    except InvalidArgument:
        return str(code)


def strategy_label(spec: spec_pb2.BacktestSpec) -> str:
    """The strategy and its parameters: `moving_average_crossover(10, 30, ...)`."""
    name = spec.strategy.WhichOneof("kind")
    if name is None:
        return "-"
    params = _params_of(getattr(spec.strategy, name))
    if not params:
        return name
    inside = ", ".join(f"{key}={value}" for key, value in params.items())
    return f"{name}({inside})"


def short_strategy_label(spec: spec_pb2.BacktestSpec) -> str:
    """A compact label for tables: `ma exponential 12/26`, `buy and hold`."""
    name = spec.strategy.WhichOneof("kind")
    if name == "moving_average_crossover":
        cross = spec.strategy.moving_average_crossover
        kind = _enum_suffix(spec_pb2.MovingAverageKind.Name(cross.kind))
        kind = "simple" if kind == "unspecified" else kind
        return f"ma {kind} {cross.fast_period}/{cross.slow_period}"
    return (name or "-").replace("_", " ")


def _params_of(message: Message) -> dict[str, str]:
    params = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        enum = field.enum_type
        if field.type == FieldDescriptor.TYPE_ENUM and enum is not None:
            params[field.name] = _enum_suffix(enum.values_by_number[value].name)
        else:
            params[field.name] = str(value)
    return params


def _enum_suffix(value_name: str) -> str:
    return value_name.rsplit("_", 1)[-1].lower()


def time_text(stamp: timestamp_pb2.Timestamp) -> str:
    moment = stamp.ToDatetime(tzinfo=UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def period_text(spec: spec_pb2.BacktestSpec) -> str:
    start = spec.start_time.ToDatetime(tzinfo=UTC)
    end = spec.end_time.ToDatetime(tzinfo=UTC)
    return f"{_moment(start)} to {_moment(end)} UTC"


def _moment(value: datetime) -> str:
    if value.hour == value.minute == value.second == 0:
        return value.strftime("%Y-%m-%d")
    return value.strftime("%Y-%m-%d %H:%M")


def summary_text(metrics: result_pb2.Metrics) -> str:
    return (
        f"total return {percent(metrics.total_return)}, "
        f"sharpe {metrics.sharpe_ratio:.2f}, "
        f"max drawdown {percent(metrics.max_drawdown)}, "
        f"{metrics.n_trades} trades"
    )


def backtest_line(backtest: api.Backtest) -> str:
    """One line: id, state, attempt and progress (or outcome)."""
    text = f"backtest {backtest.id}  {state_name(backtest.state)}"
    if backtest.attempt:
        text += f"  attempt {backtest.attempt}/{backtest.max_attempts}"
    if backtest.state in (api.Backtest.STATE_RUNNING, api.Backtest.STATE_CANCELLING):
        text += f"  {backtest.progress * 100:.0f}%"
    if backtest.state == api.Backtest.STATE_SUCCEEDED and backtest.HasField("summary"):
        text += f"  {summary_text(backtest.summary)}"
    if backtest.HasField("error") and backtest.error.reason:
        text += f"  {backtest.error.reason}: {backtest.error.message}"
    return text


def backtest_details(backtest: api.Backtest) -> str:
    """Every fact of a backtest, one labelled line each."""
    spec = backtest.spec
    costs = spec.costs
    rows = [
        ("state", state_name(backtest.state)),
        ("attempt", f"{backtest.attempt} of {backtest.max_attempts}"),
        ("progress", f"{backtest.progress * 100:.0f}%"),
        ("strategy", strategy_label(spec)),
        ("instrument", f"{spec.instrument}, {interval_label(spec.interval)} candles"),
        ("period", period_text(spec)),
        (
            "costs",
            f"commission {percent(costs.commission, 3)}, "
            f"slippage {costs.slippage_bps:g} bps",
        ),
        ("initial cash", number(spec.initial_cash)),
        ("priority", str(backtest.priority)),
        ("owner", backtest.owner),
        ("request id", backtest.request_id or "-"),
        ("created", time_text(backtest.create_time)),
    ]
    if backtest.HasField("start_time"):
        rows.append(("started", time_text(backtest.start_time)))
    if backtest.HasField("end_time"):
        rows.append(("ended", time_text(backtest.end_time)))
    if backtest.HasField("summary"):
        rows.append(("summary", summary_text(backtest.summary)))
    if backtest.HasField("error") and backtest.error.reason:
        rows.append(("error", f"{backtest.error.reason}: {backtest.error.message}"))

    width = max(len(label) for label, _ in rows)
    lines = [f"backtest {backtest.id}"]
    lines += [f"  {label.ljust(width)}  {value}" for label, value in rows]
    return "\n".join(lines)


def attempts_table(attempts: list[api.Attempt]) -> str:
    """One row per attempt: number, worker, outcome, start, end and error."""
    rows = [
        [
            str(attempt.number),
            attempt.worker,
            api.Attempt.Outcome.Name(attempt.outcome).removeprefix("OUTCOME_").lower(),
            time_text(attempt.start_time),
            time_text(attempt.end_time) if attempt.HasField("end_time") else "",
            attempt.error_message,
        ]
        for attempt in attempts
    ]
    headers = ["attempt", "worker", "outcome", "started (UTC)", "ended (UTC)", "error"]
    return render_table(headers, rows)


def backtests_table(backtests: list[api.Backtest]) -> str:
    rows = []
    for b in backtests:
        total_return = percent(b.summary.total_return) if b.HasField("summary") else ""
        rows.append(
            [
                str(b.id),
                state_name(b.state),
                short_strategy_label(b.spec),
                b.spec.instrument,
                interval_label(b.spec.interval),
                f"{b.progress * 100:.0f}%",
                str(b.attempt),
                total_return,
                time_text(b.create_time),
            ]
        )
    headers = [
        "id",
        "state",
        "strategy",
        "instrument",
        "interval",
        "progress",
        "attempt",
        "return",
        "created (UTC)",
    ]
    return render_table(headers, rows)


def metrics_table(metrics: result_pb2.Metrics) -> str:
    rows = []
    for field in result_pb2.Metrics.DESCRIPTOR.fields:
        value = getattr(metrics, field.name)
        rows.append([field.name.replace("_", " "), _metric_text(field.name, value)])
    return render_table(["metric", "value"], rows)


def _metric_text(name: str, value: float) -> str:
    kind = _METRIC_FORMATS.get(name, "ratio")
    if kind == "percent":
        return percent(value)
    if kind == "count":
        return f"{value:,.0f}"
    if kind == "money":
        return number(value)
    if kind == "duration":
        return duration_text(int(value))
    return f"{value:.3f}"


def duration_text(seconds: int) -> str:
    """Seconds as days, hours and minutes: `3d 4h 0m`."""
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m"


def trades_table(trades: list[result_pb2.Trade]) -> str:
    rows = [
        [
            time_text(t.entry_time),
            time_text(t.exit_time),
            f"{t.units:.6g}",
            number(t.entry_price, 4),
            number(t.exit_price, 4),
            number(t.pnl),
            percent(t.return_fraction),
        ]
        for t in trades
    ]
    headers = ["entry (UTC)", "exit (UTC)", "units", "entry", "exit", "pnl", "return"]
    return render_table(headers, rows)


def equity_text(curve: list[result_pb2.EquityPoint]) -> str:
    if not curve:
        return "equity curve: empty"
    first, last = curve[0], curve[-1]
    low = min(p.equity for p in curve)
    high = max(p.equity for p in curve)
    return (
        f"equity curve: {len(curve)} points, {number(first.equity)} at "
        f"{time_text(first.time)} to {number(last.equity)} at {time_text(last.time)} "
        f"(low {number(low)}, high {number(high)})"
    )
