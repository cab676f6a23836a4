"""Hypothesis strategies for hostile BacktestService requests, and the checks
every rejection must pass.

A hostile SubmitBacktest starts from a valid request and applies breaks: each
break spoils one field in a way the API contract refuses, and remembers the
field path a rejection has to name.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import psycopg
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import strategies as st
from psycopg import sql

from backcast.engine.spec import (
    MAX_CANDLES,
    MAX_INITIAL_CASH,
    STRATEGIES,
    ParamSpec,
    resolve_params,
)
from backcast.v1 import backtest_service_pb2 as api
from backcast.v1 import spec_pb2

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# The period a spec may name: 1970-01-01 to 2200-01-01, in epoch seconds.
EARLIEST_SECONDS, LATEST_SECONDS = 0, 7_258_118_400
INTERVAL_SECONDS = {
    spec_pb2.CANDLE_INTERVAL_ONE_MINUTE: 60,
    spec_pb2.CANDLE_INTERVAL_FIVE_MINUTES: 300,
    spec_pb2.CANDLE_INTERVAL_FIFTEEN_MINUTES: 900,
    spec_pb2.CANDLE_INTERVAL_ONE_HOUR: 3_600,
    spec_pb2.CANDLE_INTERVAL_FOUR_HOURS: 14_400,
    spec_pb2.CANDLE_INTERVAL_ONE_DAY: 86_400,
}
SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9._/-]{0,31}")
OWNER = re.compile(r"[A-Za-z0-9._@-]{1,64}")
TINY = math.ulp(0.0)
"""The smallest positive double: a step past a bound that is not 0."""

REFUSED_CODES = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
CORE_TABLES = ("jobs", "results", "candle_chunks")
TABLES_QUERY = """
SELECT table_name FROM information_schema.tables
WHERE table_schema = 'public' AND table_type = 'BASE TABLE'
  AND table_name <> 'alembic_version'
ORDER BY table_name
"""


# Requests with no bad field.


def valid_owners() -> st.SearchStrategy[str]:
    return st.from_regex(OWNER, fullmatch=True)


def valid_symbols() -> st.SearchStrategy[str]:
    return st.from_regex(SYMBOL, fullmatch=True)


@st.composite
def valid_submissions(draw: st.DrawFn) -> api.SubmitBacktestRequest:
    """A SubmitBacktestRequest that the contract accepts."""
    name = draw(st.sampled_from(sorted(STRATEGIES)))
    request = api.SubmitBacktestRequest(
        spec=spec_pb2.BacktestSpec(instrument=draw(valid_symbols())),
        priority=draw(st.integers(-100, 100)),
        max_attempts=draw(st.integers(0, 10)),
    )
    spec = request.spec
    strategy = getattr(spec.strategy, name)
    strategy.SetInParent()
    _set_params(strategy, draw(_valid_params(name)))
    draw(_valid_period(spec))
    spec.costs.commission = draw(_floats(0, 0.1, exclude_max=True))
    spec.costs.slippage_bps = draw(_floats(0, 1000, exclude_max=True))
    spec.initial_cash = draw(_floats(0, MAX_INITIAL_CASH))
    execution = spec.execution
    execution.fill = draw(st.integers(0, 2))
    execution.units = draw(st.integers(0, 2))
    execution.direction = draw(st.integers(0, 2 if _shorts(name) else 1))
    execution.position_fraction = draw(_floats(0, 1))
    execution.stop_loss = draw(_floats(0, 1, exclude_max=True))
    execution.take_profit = draw(_floats(0, 100))
    return request


@st.composite
def _valid_params(draw: st.DrawFn, name: str) -> dict[str, int | float]:
    raw = {param.name: draw(_param_values(param)) for param in STRATEGIES[name].params}
    _, violations = resolve_params(name, _as_domain(name, raw), "spec")
    # Ordered pairs (fast below slow) fail together; the defaults never do.
    return {} if violations else raw


def _param_values(param: ParamSpec) -> st.SearchStrategy[int | float]:
    if param.kind == "choice":
        return st.integers(0, len(param.choices))
    if param.kind == "int":
        return st.integers(int(param.low), int(param.high))
    return _floats(
        param.low,
        param.high,
        exclude_min=param.low_open,
        exclude_max=param.high_open,
    )


def _as_domain(name: str, raw: dict[str, int | float]) -> dict[str, Any]:
    # Choices travel as enum numbers; the domain knows them by suffix.
    params = {p.name: p for p in STRATEGIES[name].params}
    return {
        key: (params[key].choices[value - 1] if value else "")
        if params[key].kind == "choice"
        else value
        for key, value in raw.items()
    }


def _set_params(strategy: Any, raw: dict[str, int | float]) -> None:
    for key, value in raw.items():
        setattr(strategy, key, value)


@st.composite
def _valid_period(draw: st.DrawFn, spec: spec_pb2.BacktestSpec) -> None:
    interval = draw(st.sampled_from(sorted(INTERVAL_SECONDS)))
    step = INTERVAL_SECONDS[interval]
    most = min(MAX_CANDLES, (LATEST_SECONDS - EARLIEST_SECONDS) // step - 2)
    n_candles = draw(st.integers(2, most))
    # Half a step to spare, so end nanos below start nanos keep n_candles.
    length = n_candles * step + step // 2
    start = draw(st.integers(EARLIEST_SECONDS, LATEST_SECONDS - length - 1))
    spec.interval = interval
    spec.start_time.CopyFrom(_stamp(start, draw(st.integers(0, 999_999_999))))
    spec.end_time.CopyFrom(_stamp(start + length, draw(st.integers(0, 999_999_999))))


def _shorts(name: str) -> bool:
    return STRATEGIES[name].supports_short


def _floats(
    low: float,
    high: float,
    *,
    exclude_min: bool = False,
    exclude_max: bool = False,
) -> st.SearchStrategy[float]:
    return st.floats(
        low, high, exclude_min=exclude_min, exclude_max=exclude_max, allow_nan=False
    )


def _stamp(seconds: int, nanos: int = 0) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


# Breaks: one bad field each.


@dataclass(frozen=True)
class Break:
    """One field spoilt: its path, what it was set to, and how."""

    field: str
    value: str
    apply: Callable[[api.SubmitBacktestRequest], None]

    def __repr__(self) -> str:
        return f"Break({self.field!r}, {self.value})"


def _numbers_outside(
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
    zero_means_default: bool = False,
) -> st.SearchStrategy[float]:
    """Doubles outside a range: NaN, infinities, and finite ones past a bound.

    With `zero_means_default`, 0 and -0 are left out: they mean the default.
    """
    below = st.floats(max_value=low, exclude_max=not low_open, allow_nan=False)
    if zero_means_default and low == 0:
        below = st.floats(max_value=-TINY, allow_nan=False)
    above = st.floats(min_value=high, exclude_min=not high_open, allow_nan=False)
    values = st.one_of(st.just(math.nan), st.just(-math.nan), below, above)
    if zero_means_default:
        values = values.filter(lambda v: v != 0)
    return values


def _ints_outside(low: int, high: int) -> st.SearchStrategy[int]:
    """int32 values outside [low, high], never 0 (which means the default)."""
    below = st.integers(INT32_MIN, low - 1) if low > INT32_MIN else st.nothing()
    above = st.integers(high + 1, INT32_MAX) if high < INT32_MAX else st.nothing()
    return st.one_of(below, above).filter(lambda v: v != 0)


def unknown_enum_numbers(known: Sequence[int]) -> st.SearchStrategy[int]:
    """int32 numbers no value of the enum has, as raw ints on the wire."""
    low, high = min(known), max(known)
    outside = [st.integers(INT32_MIN, low - 1), st.integers(high + 1, INT32_MAX)]
    gaps = [v for v in range(low, high) if v not in known]
    return st.one_of(*outside, st.sampled_from(gaps)) if gaps else st.one_of(*outside)


def _set(path: str, value: Any) -> Callable[[api.SubmitBacktestRequest], None]:
    *parents, leaf = path.split(".")

    def apply(request: api.SubmitBacktestRequest) -> None:
        message: Any = request
        for name in parents:
            message = getattr(message, name)
        setattr(message, leaf, value)

    return apply


def _number_break(
    path: str, values: st.SearchStrategy[Any]
) -> st.SearchStrategy[Break]:
    return values.map(lambda v: Break(path, repr(v), _set(path, v)))


def bad_symbols() -> st.SearchStrategy[str]:
    """Text that is not a symbol: wrong characters, too long, or a symbol with
    a line break after it (which `$` in a pattern would let through)."""
    return st.one_of(
        st.text(max_size=40).filter(lambda s: not SYMBOL.fullmatch(s)),
        valid_symbols().map(lambda s: s + "\n"),
        st.integers(33, 1 << 20).map(lambda n: "A" * n),
    )


def _request_breaks() -> list[st.SearchStrategy[Break]]:
    control = st.characters(categories=["Cc"])
    return [
        _number_break("priority", _ints_outside(-100, 100)),
        _number_break("max_attempts", _ints_outside(1, 10)),
        _number_break(
            "request_id",
            st.one_of(
                st.text(min_size=129, max_size=4_000),
                st.tuples(st.text(max_size=20), control, st.text(max_size=20)).map(
                    "".join
                ),
            ),
        ),
    ]


def _market_breaks() -> list[st.SearchStrategy[Break]]:
    return [
        _number_break("spec.instrument", bad_symbols()),
        _number_break(
            "spec.costs.commission", _numbers_outside(0, 0.1, high_open=True)
        ),
        _number_break(
            "spec.costs.slippage_bps", _numbers_outside(0, 1000, high_open=True)
        ),
        _number_break(
            "spec.initial_cash",
            _numbers_outside(
                0, MAX_INITIAL_CASH, low_open=True, zero_means_default=True
            ),
        ),
    ]


def _execution_breaks() -> list[st.SearchStrategy[Break]]:
    path = "spec.execution"
    return [
        _number_break(f"{path}.fill", unknown_enum_numbers(spec_pb2.Fill.values())),
        _number_break(f"{path}.units", unknown_enum_numbers(spec_pb2.Units.values())),
        _number_break(
            f"{path}.direction", unknown_enum_numbers(spec_pb2.Direction.values())
        ),
        _number_break(
            f"{path}.position_fraction",
            _numbers_outside(0, 1, low_open=True, zero_means_default=True),
        ),
        _number_break(f"{path}.stop_loss", _numbers_outside(0, 1, high_open=True)),
        _number_break(f"{path}.take_profit", _numbers_outside(0, 100)),
    ]


def independent_breaks() -> st.SearchStrategy[Break]:
    """Breaks of fields that are checked whatever else is wrong."""
    return st.one_of(*_request_breaks(), *_market_breaks(), *_execution_breaks())


def _strategy_breaks() -> list[st.SearchStrategy[Break]]:
    breaks = [
        st.just(Break("spec", "unset", lambda r: r.ClearField("spec"))),
        st.just(
            Break("spec.strategy", "unset", lambda r: r.spec.ClearField("strategy"))
        ),
        st.integers(7, (1 << 29) - 1)
        .filter(lambda n: not 19_000 <= n <= 19_999)
        .map(_unknown_strategy),
        st.just(
            Break(
                "spec.execution.direction", "long_short for buy_and_hold", _short_hold
            )
        ),
    ]
    for name, info in sorted(STRATEGIES.items()):
        for param in info.params:
            breaks.append(_param_break(name, param))
        if name in ("moving_average_crossover", "macd_trend"):
            breaks.append(_unordered_periods(name))
    return breaks


def _unknown_strategy(number: int) -> Break:
    """A Strategy whose only field has a number no strategy has: what an
    older gateway sees of a strategy added after it was built."""

    def apply(request: api.SubmitBacktestRequest) -> None:
        request.spec.strategy.Clear()
        request.spec.strategy.MergeFromString(_varint(number << 3 | 2) + b"\x00")

    return Break("spec.strategy", f"unknown field {number}", apply)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _short_hold(request: api.SubmitBacktestRequest) -> None:
    request.spec.strategy.buy_and_hold.SetInParent()
    request.spec.execution.direction = spec_pb2.DIRECTION_LONG_SHORT


def _param_break(name: str, param: ParamSpec) -> st.SearchStrategy[Break]:
    path = f"spec.strategy.{name}.{param.name}"
    if param.kind == "choice":
        known = range(len(param.choices) + 1)
        values: st.SearchStrategy[Any] = unknown_enum_numbers(known)
    elif param.kind == "int":
        values = _ints_outside(int(param.low), int(param.high))
    else:
        values = _numbers_outside(
            param.low,
            param.high,
            low_open=param.low_open,
            high_open=param.high_open,
            zero_means_default=True,
        )

    def broken(value: Any) -> Break:
        def apply(request: api.SubmitBacktestRequest) -> None:
            strategy = getattr(request.spec.strategy, name)
            strategy.Clear()
            setattr(strategy, param.name, value)

        return Break(path, repr(value), apply)

    return values.map(broken)


def _unordered_periods(name: str) -> st.SearchStrategy[Break]:
    fast = next(p for p in STRATEGIES[name].params if p.name == "fast_period")

    def broken(periods: tuple[int, int]) -> Break:
        def apply(request: api.SubmitBacktestRequest) -> None:
            strategy = getattr(request.spec.strategy, name)
            strategy.Clear()
            strategy.fast_period, strategy.slow_period = periods

        return Break(f"spec.strategy.{name}.slow_period", repr(periods), apply)

    # Both periods in range on their own; the slow one not above the fast.
    pairs = st.integers(2, int(fast.high)).flatmap(
        lambda f: st.tuples(st.just(f), st.integers(2, f))
    )
    return pairs.map(broken)


def _period_breaks() -> list[st.SearchStrategy[Break]]:
    def time_break(
        field: str, value: str, apply: Callable[[api.SubmitBacktestRequest], None]
    ) -> Break:
        return Break(f"spec.{field}", value, apply)

    def unset(field: str) -> Break:
        return time_break(field, "unset", lambda r: r.spec.ClearField(field))

    def seconds(field: str, value: int) -> Break:
        return time_break(
            field, f"seconds={value}", _set(f"spec.{field}.seconds", value)
        )

    def nanos(field: str, value: int) -> Break:
        return time_break(field, f"nanos={value}", _set(f"spec.{field}.nanos", value))

    outside = st.one_of(
        st.integers(INT64_MIN, EARLIEST_SECONDS - 1),
        st.integers(LATEST_SECONDS + 1, INT64_MAX),
    )
    bad_nanos = st.one_of(
        st.integers(INT32_MIN, -1), st.integers(1_000_000_000, INT32_MAX)
    )
    return [
        st.sampled_from([unset("start_time"), unset("end_time")]),
        st.builds(seconds, st.sampled_from(["start_time", "end_time"]), outside),
        st.builds(nanos, st.sampled_from(["start_time", "end_time"]), bad_nanos),
        st.integers(0, 10 * 365 * 86_400).map(_end_before_start),
        st.integers(0, 1).map(_too_few_candles),
        st.integers(1, 1_000).map(_too_many_candles),
        _number_break("spec.interval", unknown_enum_numbers(sorted(INTERVAL_SECONDS))),
    ]


def _end_shift(label: str, shift: Callable[[int, int], int]) -> Break:
    """Move end_time to `shift(start seconds, interval seconds)`."""

    def apply(request: api.SubmitBacktestRequest) -> None:
        spec = request.spec
        step = INTERVAL_SECONDS[spec.interval]
        spec.end_time.seconds = shift(spec.start_time.seconds, step)
        spec.end_time.nanos = spec.start_time.nanos

    return Break("spec.end_time", label, apply)


def _end_before_start(back_seconds: int) -> Break:
    return _end_shift(
        f"{back_seconds} s before start", lambda start, _: start - back_seconds
    )


def _too_few_candles(n_candles: int) -> Break:
    return _end_shift(
        f"{n_candles} candles", lambda start, step: start + n_candles * step
    )


def _too_many_candles(extra: int) -> Break:
    return _end_shift(
        f"{MAX_CANDLES} + {extra} candles",
        lambda start, step: start + (MAX_CANDLES + extra) * step,
    )


def single_breaks() -> st.SearchStrategy[Break]:
    """Any one break of a SubmitBacktestRequest."""
    return st.one_of(independent_breaks(), *_strategy_breaks(), *_period_breaks())


# What a rejection must look like.


def bad_request_fields(error: grpc.aio.AioRpcError) -> list[str]:
    """The field paths of the google.rpc.BadRequest in a failed call."""
    status = rpc_status.from_call(error)
    if status is None:
        return []
    fields: list[str] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            fields += [v.field for v in bad_request.field_violations]
    return fields


def covers(named: str, broken: str) -> bool:
    """Whether a violation of `named` is about the broken field `broken`."""
    return named == broken or named.startswith((f"{broken}.", f"{broken}["))


def check_invalid_argument(
    error: object, broken: Sequence[str], *, all_named: bool
) -> list[str]:
    """Assert `error` is INVALID_ARGUMENT naming only broken fields.

    With `all_named`, every broken field must be named; otherwise one is
    enough (a missing strategy, say, hides the checks of its parameters).
    Returns the named fields.
    """
    assert isinstance(error, grpc.aio.AioRpcError), f"accepted, with {error}"
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, _describe(error)
    named = bad_request_fields(error)
    assert named, f"no BadRequest field in {_describe(error)}"
    exact = set(broken)
    strays = [
        n for n in named if n not in exact and not any(covers(n, b) for b in broken)
    ]
    assert not strays, f"named {strays}, but only {list(broken)[:20]} were broken"
    # Without `all_named`, naming no stray field already names a broken one.
    if all_named:
        missed = [b for b in broken if not any(covers(n, b) for n in named)]
        assert not missed, f"{missed} broken but not named in {named}"
    assert (error.details() or "").startswith(f"{named[0]}: "), _describe(error)
    return named


def check_not_refused_internally(error: grpc.aio.AioRpcError) -> None:
    assert error.code() not in REFUSED_CODES, _describe(error)


def _describe(error: grpc.aio.AioRpcError) -> str:
    return f"{error.code().name}: {error.details()}"


# What the database holds.


async def table_snapshot(
    conn: psycopg.AsyncConnection[tuple[object, ...]],
) -> dict[str, tuple[int, str]]:
    """Row count and a digest of the rows of every table (jobs, results,
    candle_chunks and the rest), to show that a request wrote nothing."""
    cursor = await conn.execute(TABLES_QUERY)
    tables = [str(row[0]) for row in await cursor.fetchall()]
    assert set(CORE_TABLES) <= set(tables), tables
    snapshot: dict[str, tuple[int, str]] = {}
    for table in tables:
        cursor = await conn.execute(
            sql.SQL(
                "SELECT count(*), coalesce(md5(string_agg(md5(t::text), '' "
                "ORDER BY md5(t::text))), '') FROM {} AS t"
            ).format(sql.Identifier(table))
        )
        row = await cursor.fetchone()
        assert row is not None
        snapshot[table] = (int(str(row[0])), str(row[1]))
    return snapshot
