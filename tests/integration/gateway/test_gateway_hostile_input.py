"""Every public RPC under arbitrary and hostile requests, driven by hypothesis.

The bar: never INTERNAL or UNKNOWN; a bad field is INVALID_ARGUMENT naming
it (in the google.rpc.BadRequest and the message); an unknown backtest is
NOT_FOUND; a request over the receive limit is RESOURCE_EXHAUSTED; and a
refused request leaves every table (jobs, results, candle_chunks and the
rest) as it was.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeAlias, TypeVar

import grpc
import psycopg
import pytest
from gateway_support import (
    TEST_PAGE_TOKEN_KEY,
    Gateway,
    as_owner,
    crossover_spec,
    sample_result,
    start_test_gateway,
    stop_test_gateway,
)
from hostile_requests import (
    INT32_MAX,
    INT32_MIN,
    INT64_MAX,
    INT64_MIN,
    LATEST_SECONDS,
    OWNER,
    Break,
    bad_request_fields,
    bad_symbols,
    check_invalid_argument,
    check_not_refused_internally,
    independent_breaks,
    single_breaks,
    table_snapshot,
    unknown_enum_numbers,
    valid_owners,
    valid_submissions,
)
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from backcast.gateway.owners import DEFAULT_OWNER
from backcast.gateway.pagination import PageTokens, backtests_query, trades_query
from backcast.jobqueue.results import stored_result
from backcast.jobqueue.store import JobStore
from backcast.rpc import translate
from backcast.rpc.server import CLIENT_OPTIONS, SERVER_OPTIONS
from backcast.v1 import backtest_service_pb2 as api
from backcast.v1 import spec_pb2

T = TypeVar("T")
Connection: TypeAlias = psycopg.AsyncConnection[tuple[object, ...]]
# Calls on raw bytes, for requests no generated stub would send.
Unary: TypeAlias = "grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]"
ClientStream: TypeAlias = "grpc.aio.StreamUnaryMultiCallable[bytes, bytes]"

# Few examples per property, so the file stays fast; no example database, so
# nothing is written into the repository.
FUZZ = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
# Properties whose examples write jobs, and so cost more each.
FUZZ_WRITES = settings(FUZZ, max_examples=20)
STRANGER = "stranger"
SERVICE = "/backcast.v1.BacktestService"
MAX_RECEIVE_BYTES = dict(SERVER_OPTIONS)["grpc.max_receive_message_length"]
ONE_HOUR = spec_pb2.CANDLE_INTERVAL_ONE_HOUR
INTERVALS = spec_pb2.CandleInterval.values()
STATES = api.Backtest.State.values()

# Request ids drawn twice with different specs would be a reuse, which is
# refused on purpose; a counter keeps every drawn id apart.
_request_ids = itertools.count()


@pytest.fixture
async def hostile(store: JobStore, database_url: str) -> AsyncIterator[Gateway]:
    """A gateway over empty tables but for one queued backtest of STRANGER."""
    await _truncate_candles(database_url)
    running = await start_test_gateway(store, database_url)
    await running.stub.SubmitBacktest(
        api.SubmitBacktestRequest(spec=crossover_spec()),
        metadata=as_owner(STRANGER),
        timeout=5,
    )
    try:
        yield running
    finally:
        await stop_test_gateway(running)
        await _truncate_candles(database_url)


async def _truncate_candles(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True
    ) as conn:
        await conn.execute("SET lock_timeout = '10s'")
        await conn.execute("TRUNCATE candle_chunks")


async def outcome(call: Awaitable[T]) -> T | grpc.aio.AioRpcError:
    """The reply of `call`, or the error it failed with."""
    try:
        return await call
    except grpc.aio.AioRpcError as error:
        return error


async def first_streamed(gateway: Gateway, rpc: str, request: Any, owner: str) -> Any:
    """The first message of a server stream (None if it ends at once)."""
    call = getattr(gateway.stub, rpc)(request, metadata=as_owner(owner), timeout=5)
    try:
        async for response in call:
            return response
    finally:
        call.cancel()
    return None


def others() -> st.SearchStrategy[str]:
    return valid_owners().filter(lambda owner: owner != STRANGER)


def unique_request_id(request: api.SubmitBacktestRequest) -> None:
    if request.request_id:
        request.request_id = f"{request.request_id[:100]}-{next(_request_ids)}"


# SubmitBacktest


@FUZZ_WRITES
@given(request=valid_submissions(), owner=others())
async def test_submission_within_every_bound_is_accepted(
    hostile: Gateway, request: api.SubmitBacktestRequest, owner: str
) -> None:
    response = await outcome(
        hostile.stub.SubmitBacktest(request, metadata=as_owner(owner), timeout=5)
    )

    assert isinstance(response, api.SubmitBacktestResponse), response
    assert response.backtest.state == api.Backtest.STATE_QUEUED
    # What was stored reads back: no value in bounds breaks the translation.
    status = await hostile.stub.GetStatus(
        api.GetStatusRequest(backtest_id=response.backtest.id),
        metadata=as_owner(owner),
        timeout=5,
    )
    assert status.backtest.spec == response.backtest.spec


@FUZZ
@given(
    request=valid_submissions(),
    request_id=st.text(st.characters(categories=["L", "N", "P", "S"]), max_size=40),
    broken=single_breaks(),
    owner=others(),
)
async def test_submission_with_one_bad_field_is_refused_naming_it_and_writes_nothing(
    hostile: Gateway,
    db_connection: Connection,
    request: api.SubmitBacktestRequest,
    request_id: str,
    broken: Break,
    owner: str,
) -> None:
    request.request_id = request_id
    unique_request_id(request)
    broken.apply(request)
    before = await table_snapshot(db_connection)

    error = await outcome(
        hostile.stub.SubmitBacktest(request, metadata=as_owner(owner), timeout=5)
    )

    assert isinstance(error, grpc.aio.AioRpcError), f"{broken} was accepted"
    check_invalid_argument(error, [broken.field], all_named=True)
    assert await table_snapshot(db_connection) == before


@FUZZ
@given(
    request=valid_submissions(),
    broken=st.lists(independent_breaks(), min_size=2, max_size=6),
)
async def test_submission_with_several_bad_fields_names_every_one(
    hostile: Gateway,
    db_connection: Connection,
    request: api.SubmitBacktestRequest,
    broken: list[Break],
) -> None:
    for each in broken:
        each.apply(request)
    before = await table_snapshot(db_connection)

    error = await outcome(hostile.stub.SubmitBacktest(request, timeout=5))

    assert isinstance(error, grpc.aio.AioRpcError), f"{broken} was accepted"
    check_invalid_argument(error, [b.field for b in broken], all_named=True)
    assert await table_snapshot(db_connection) == before


@FUZZ_WRITES
@given(request=valid_submissions(), other=valid_submissions())
async def test_request_id_reused_for_another_spec_is_refused_and_writes_nothing(
    hostile: Gateway,
    db_connection: Connection,
    request: api.SubmitBacktestRequest,
    other: api.SubmitBacktestRequest,
) -> None:
    request.request_id = f"reused-{next(_request_ids)}"
    first = await hostile.stub.SubmitBacktest(request, timeout=5)
    other.request_id = request.request_id
    other.priority = request.priority
    other.max_attempts = request.max_attempts
    before = await table_snapshot(db_connection)

    second = await outcome(hostile.stub.SubmitBacktest(other, timeout=5))

    if isinstance(second, grpc.aio.AioRpcError):
        check_invalid_argument(second, ["request_id"], all_named=True)
    else:
        # Only a spec equal once resolved (0 for a default, say) is the same.
        assert second.backtest.id == first.backtest.id
    assert await table_snapshot(db_connection) == before


@st.composite
def batches(draw: st.DrawFn) -> tuple[api.SubmitBacktestsRequest, list[str]]:
    """A SubmitBacktests call with some requests broken, and the broken fields
    as `requests[i].<field>`."""
    items = draw(st.lists(valid_submissions(), min_size=1, max_size=5))
    broken: list[str] = []
    for index, item in enumerate(items):
        unique_request_id(item)
        if draw(st.booleans()):
            each = draw(single_breaks(), label=f"requests[{index}]")
            each.apply(item)
            broken.append(f"requests[{index}].{each.field}")
    return api.SubmitBacktestsRequest(requests=items), broken


@FUZZ_WRITES
@given(batch=batches())
async def test_batch_with_bad_requests_names_each_and_writes_nothing(
    hostile: Gateway,
    db_connection: Connection,
    batch: tuple[api.SubmitBacktestsRequest, list[str]],
) -> None:
    request, broken = batch
    before = await table_snapshot(db_connection)

    response = await outcome(hostile.stub.SubmitBacktests(request, timeout=10))

    if broken:
        assert isinstance(response, grpc.aio.AioRpcError), f"{broken} accepted"
        check_invalid_argument(response, broken, all_named=True)
        assert await table_snapshot(db_connection) == before
    else:
        assert isinstance(response, api.SubmitBacktestsResponse), response
        assert len(response.backtests) == len(request.requests)


@pytest.mark.parametrize(("n_requests", "repeat"), [(0, 1), (1_001, 3), (5_000, 5)])
async def test_batch_empty_oversized_or_repeating_a_request_id_is_refused(
    hostile: Gateway, db_connection: Connection, n_requests: int, repeat: int
) -> None:
    item = api.SubmitBacktestRequest(spec=crossover_spec())
    sized = api.SubmitBacktestsRequest(requests=[item] * n_requests)
    item.request_id = f"twice-{next(_request_ids)}"
    repeating = api.SubmitBacktestsRequest(requests=[item] * (repeat + 1))
    before = await table_snapshot(db_connection)

    too_many = await outcome(hostile.stub.SubmitBacktests(sized, timeout=10))
    repeated = await outcome(hostile.stub.SubmitBacktests(repeating, timeout=10))

    assert isinstance(too_many, grpc.aio.AioRpcError)
    check_invalid_argument(too_many, ["requests"], all_named=True)
    assert isinstance(repeated, grpc.aio.AioRpcError)
    paths = [f"requests[{i}].request_id" for i in range(1, repeat + 1)]
    check_invalid_argument(repeated, paths, all_named=True)
    assert await table_snapshot(db_connection) == before


# Calls on one backtest: GetStatus, GetResult, GetEquityCurve, CancelBacktest,
# WatchBacktest.


ID_CALLS = (
    "GetStatus",
    "GetResult",
    "GetEquityCurve",
    "CancelBacktest",
    "WatchBacktest",
)
STREAMS = ("GetEquityCurve", "WatchBacktest")


async def call_on_backtest(
    gateway: Gateway, rpc: str, backtest_id: int, owner: str
) -> Any:
    request_type = getattr(api, f"{rpc}Request")
    request = request_type(backtest_id=backtest_id)
    if rpc in STREAMS:
        return await outcome(first_streamed(gateway, rpc, request, owner))
    method = getattr(gateway.stub, rpc)
    return await outcome(method(request, metadata=as_owner(owner), timeout=5))


@FUZZ
@given(
    rpc=st.sampled_from(ID_CALLS),
    backtest_id=st.integers(INT64_MIN, 0),
    owner=valid_owners(),
)
async def test_backtest_id_below_one_is_invalid_argument_naming_it(
    hostile: Gateway, db_connection: Connection, rpc: str, backtest_id: int, owner: str
) -> None:
    before = await table_snapshot(db_connection)

    error = await call_on_backtest(hostile, rpc, backtest_id, owner)

    assert isinstance(error, grpc.aio.AioRpcError)
    check_invalid_argument(error, ["backtest_id"], all_named=True)
    assert await table_snapshot(db_connection) == before


@FUZZ
@given(
    rpc=st.sampled_from(ID_CALLS),
    backtest_id=st.integers(1, INT64_MAX),
    owner=others(),
)
async def test_backtest_the_caller_does_not_own_is_not_found_and_left_alone(
    hostile: Gateway, db_connection: Connection, rpc: str, backtest_id: int, owner: str
) -> None:
    before = await table_snapshot(db_connection)

    error = await call_on_backtest(hostile, rpc, backtest_id, owner)

    assert isinstance(error, grpc.aio.AioRpcError)
    assert error.code() == grpc.StatusCode.NOT_FOUND, error
    assert str(backtest_id) in (error.details() or "")
    assert await table_snapshot(db_connection) == before


@st.composite
def page_tokens(draw: st.DrawFn, query: str) -> tuple[str, bool]:
    """A page token a client might send, and whether it is good for `query`.

    Empty, garbage, base64 of the right length with a wrong signature, or
    signed with the gateway's key for any position and query (the
    development key is public, so anyone can sign). Positions the gateway
    hands out are never below 1.
    """
    signer = PageTokens(TEST_PAGE_TOKEN_KEY)
    position = st.integers(INT64_MIN, INT64_MAX)
    kind = draw(st.sampled_from(["empty", "text", "long", "unsigned", "signed"]))
    if kind == "empty":
        return "", True
    if kind == "text":
        return draw(st.text(min_size=1, max_size=200)), False
    if kind == "long":
        return "A" * draw(st.integers(45, 1 << 16)), False
    if kind == "unsigned":
        raw = draw(st.binary(min_size=33, max_size=33))
        return base64.urlsafe_b64encode(raw).decode().rstrip("="), False
    other = trades_query(STRANGER, 1)
    signed_for = draw(st.sampled_from([query, other]))
    at = draw(position)
    return signer.encode(at, signed_for), signed_for == query and at >= 1


@FUZZ
@given(
    backtest_id=st.integers(INT64_MIN, INT64_MAX),
    page_size=st.integers(INT32_MIN, INT32_MAX),
    data=st.data(),
)
async def test_result_page_fields_are_checked_before_the_backtest_is_looked_up(
    hostile: Gateway,
    db_connection: Connection,
    backtest_id: int,
    page_size: int,
    data: st.DataObject,
) -> None:
    query = trades_query(DEFAULT_OWNER, backtest_id)
    page_token, good_token = data.draw(page_tokens(query), label="page_token")
    request = api.GetResultRequest(
        backtest_id=backtest_id, page_size=page_size, page_token=page_token
    )
    before = await table_snapshot(db_connection)

    error = await outcome(hostile.stub.GetResult(request, timeout=5))

    assert isinstance(error, grpc.aio.AioRpcError)
    broken = [
        name
        for name, bad in (
            ("backtest_id", backtest_id < 1),
            ("page_size", page_size < 0),
            ("page_token", not good_token),
        )
        if bad
    ]
    if broken:
        check_invalid_argument(error, broken, all_named=True)
    else:
        assert error.code() == grpc.StatusCode.NOT_FOUND, error
    assert await table_snapshot(db_connection) == before


# ListBacktests


@FUZZ
@given(
    # Up to 20: all of them fit in the BadRequest (see the test of very many
    # bad fields for more).
    states=st.lists(
        st.integers(INT32_MIN, INT32_MAX) | st.sampled_from(STATES), max_size=20
    ),
    page_size=st.integers(INT32_MIN, INT32_MAX),
    data=st.data(),
)
async def test_listing_names_each_unknown_state_and_bad_page_field(
    hostile: Gateway,
    db_connection: Connection,
    states: list[int],
    page_size: int,
    data: st.DataObject,
) -> None:
    known = [s for s in states if s in STATES and s != api.Backtest.STATE_UNSPECIFIED]
    filtered = [translate.state_from_proto(s, "states") for s in known]
    query = backtests_query(DEFAULT_OWNER, filtered)
    page_token, good_token = data.draw(page_tokens(query), label="page_token")
    request = api.ListBacktestsRequest(page_size=page_size, page_token=page_token)
    request.states.extend(states)
    before = await table_snapshot(db_connection)

    response = await outcome(hostile.stub.ListBacktests(request, timeout=5))

    broken = [f"states[{i}]" for i, s in enumerate(states) if s not in known]
    if page_size < 0:
        broken.append("page_size")
    if not good_token:
        broken.append("page_token")
    if broken:
        assert isinstance(response, grpc.aio.AioRpcError), response
        check_invalid_argument(response, broken, all_named=True)
    else:
        # The caller owns nothing, whatever page it asks for.
        assert isinstance(response, api.ListBacktestsResponse), response
        assert list(response.backtests) == []
    assert await table_snapshot(db_connection) == before


# The owner header, on every call that acts for an owner.


def malformed_owners() -> st.SearchStrategy[str]:
    printable = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
    return st.one_of(
        st.text(printable, max_size=80).filter(lambda s: not OWNER.fullmatch(s)),
        st.integers(65, 4_000).map(lambda n: "a" * n),
    )


@FUZZ
@given(
    rpc=st.sampled_from(ID_CALLS),
    owner=malformed_owners(),
    backtest_id=st.integers(1, INT64_MAX),
)
async def test_malformed_owner_header_is_invalid_argument_naming_it(
    hostile: Gateway, db_connection: Connection, rpc: str, owner: str, backtest_id: int
) -> None:
    before = await table_snapshot(db_connection)

    error = await call_on_backtest(hostile, rpc, backtest_id, owner)

    assert isinstance(error, grpc.aio.AioRpcError)
    check_invalid_argument(error, ["x-backcast-owner"], all_named=True)
    assert await table_snapshot(db_connection) == before


# ImportCandles


def csv_lines() -> st.SearchStrategy[str]:
    """Rows of six comma-separated fields, mostly number-like."""
    number = st.one_of(
        st.integers(-(10**22), 10**22).map(str),
        st.floats().map(repr),
        st.sampled_from(["nan", "inf", "-inf", "1e309", "", " ", "1_0", "0x1"]),
        st.sampled_from(
            ["2024-01-01T00:00:00Z", "9999-12-31T00:00:00", "0001-01-01", "1969-12-31"]
        ),
        st.text(max_size=8),
    )
    return st.lists(number, min_size=5, max_size=7).map(",".join)


def hourly_rows() -> st.SearchStrategy[str]:
    """A plausible row on the hour grid, at an hour an int64 holds."""
    hours = st.integers(-(2**40), 2**40).map(lambda h: h * 3_600)
    return hours.map(lambda t: f"{t},10,11,9,10.5,1")


@st.composite
def hourly_series(draw: st.DrawFn) -> list[str]:
    """Good candles on the day grid from any day, near 1970, 2200 or the
    ends of what an int64 or a datetime holds."""
    first_day = draw(
        st.one_of(
            st.integers(-(2**36), 2**36),
            st.integers(-10, 10),
            st.integers(LATEST_DAY - 10, LATEST_DAY + 10),
        )
    )
    n_days = draw(st.integers(1, 5))
    days = range(first_day, first_day + n_days)
    return [f"{day * 86_400},10,11,9,10.5,1" for day in days]


LATEST_DAY = LATEST_SECONDS // 86_400


HEADER = "time,open,high,low,close,volume"


def csv_files() -> st.SearchStrategy[str]:
    """Whole CSV texts: arbitrary rows under some header, or good candles
    at any time."""
    arbitrary = st.tuples(
        st.sampled_from([HEADER, "TIME,Close,x", ""]),
        st.lists(csv_lines() | hourly_rows(), min_size=1, max_size=6),
    ).map(lambda parts: "\n".join([parts[0], *parts[1]]))
    plausible = hourly_series().map(lambda rows: "\n".join([HEADER, *rows]))
    return arbitrary | plausible


@FUZZ
@given(
    text=csv_files(),
    interval=st.sampled_from(sorted(INTERVALS)) | unknown_enum_numbers(INTERVALS),
)
async def test_arbitrary_csv_is_imported_or_refused_and_never_breaks_listing(
    hostile: Gateway,
    db_connection: Connection,
    text: str,
    interval: int,
) -> None:
    data = text.encode()
    first = api.ImportCandlesRequest(instrument="FUZZ", interval=interval)
    requests = [first, api.ImportCandlesRequest(csv_chunk=data)]
    before = await table_snapshot(db_connection)

    response = await outcome(hostile.stub.ImportCandles(iter(requests), timeout=10))

    event(type(response).__name__)
    if isinstance(response, grpc.aio.AioRpcError):
        check_not_refused_internally(response)
        check_invalid_argument(response, ["interval", "file"], all_named=False)
        assert await table_snapshot(db_connection) == before
    listing = await outcome(
        hostile.stub.ListInstruments(api.ListInstrumentsRequest(), timeout=5)
    )
    assert isinstance(listing, api.ListInstrumentsResponse), listing


@FUZZ
@given(
    instrument=bad_symbols() | st.just("") | st.just("SYN-BTCUSD"),
    interval=st.sampled_from(sorted(INTERVALS)) | unknown_enum_numbers(INTERVALS),
)
async def test_import_of_a_bad_series_is_refused_naming_it(
    hostile: Gateway, db_connection: Connection, instrument: str, interval: int
) -> None:
    requests = [
        api.ImportCandlesRequest(instrument=instrument, interval=interval),
        api.ImportCandlesRequest(csv_chunk=HOURLY_CSV),
    ]
    before = await table_snapshot(db_connection)

    error = await outcome(hostile.stub.ImportCandles(iter(requests), timeout=5))

    assert isinstance(error, grpc.aio.AioRpcError)
    bad_interval = interval not in INTERVALS or interval == 0
    broken = ["instrument", "interval"] if bad_interval else ["instrument"]
    check_invalid_argument(error, broken, all_named=True)
    assert await table_snapshot(db_connection) == before


HOURLY_CSV = b"time,open,high,low,close,volume\n1704067200,10,11,9,10.5,1\n"


@FUZZ
@given(
    instrument=st.sampled_from(["", "BTCUSD"]) | bad_symbols() | st.just("ETH"),
    interval=st.sampled_from(sorted(INTERVALS)) | unknown_enum_numbers(INTERVALS),
    extra_bytes=st.integers(1, 1_000),
)
async def test_later_message_naming_another_series_or_too_big_is_refused(
    hostile: Gateway,
    db_connection: Connection,
    instrument: str,
    interval: int,
    extra_bytes: int,
) -> None:
    later = api.ImportCandlesRequest(instrument=instrument, interval=interval)
    later.csv_chunk = b"x" * ((1 << 20) + extra_bytes)
    requests = [
        api.ImportCandlesRequest(
            instrument="BTCUSD", interval=ONE_HOUR, csv_chunk=HOURLY_CSV
        ),
        later,
    ]
    before = await table_snapshot(db_connection)

    error = await outcome(hostile.stub.ImportCandles(iter(requests), timeout=10))

    assert isinstance(error, grpc.aio.AioRpcError)
    broken = ["csv_chunk"]
    if instrument not in ("", "BTCUSD"):
        broken.append("instrument")
    if interval not in (0, ONE_HOUR):
        broken.append("interval")
    check_invalid_argument(error, broken, all_named=False)
    assert await table_snapshot(db_connection) == before


async def test_empty_import_stream_is_refused_naming_the_instrument(
    hostile: Gateway,
) -> None:
    error = await outcome(hostile.stub.ImportCandles(iter([]), timeout=5))

    assert isinstance(error, grpc.aio.AioRpcError)
    check_invalid_argument(error, ["instrument"], all_named=True)


# Calls without fields, and bytes no client library would send.


async def raw_call(gateway: Gateway, rpc: str, payload: bytes) -> Any:
    method: Unary = gateway.channel.unary_unary(f"{SERVICE}/{rpc}")
    return await outcome(method(payload, timeout=5))


@FUZZ
@given(
    rpc=st.sampled_from(["ListStrategies", "ListInstruments"]),
    fields=st.lists(st.tuples(st.integers(1, (1 << 29) - 1), st.binary(max_size=64))),
)
async def test_calls_without_fields_ignore_unknown_fields_on_the_wire(
    hostile: Gateway, rpc: str, fields: list[tuple[int, bytes]]
) -> None:
    payload = b"".join(
        _varint(number << 3 | 2) + _varint(len(value)) + value
        for number, value in fields
        if not 19_000 <= number <= 19_999
    )

    response = await raw_call(hostile, rpc, payload)

    assert isinstance(response, bytes), response


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Over the size limit


async def test_request_or_metadata_over_the_receive_limit_is_resource_exhausted(
    hostile: Gateway, db_connection: Connection
) -> None:
    options = [*CLIENT_OPTIONS, ("grpc.max_send_message_length", -1)]
    before = await table_snapshot(db_connection)
    request = api.SubmitBacktestRequest(
        spec=crossover_spec(), request_id="r" * (MAX_RECEIVE_BYTES + 1)
    )
    chunk = api.ImportCandlesRequest(
        instrument="BTCUSD",
        interval=ONE_HOUR,
        csv_chunk=b"x" * (MAX_RECEIVE_BYTES + 1),
    )

    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{hostile.host.port}", options=options
    ) as channel:
        submit: Unary = channel.unary_unary(f"{SERVICE}/SubmitBacktest")
        submitted = await outcome(submit(request.SerializeToString(), timeout=30))
        upload: ClientStream = channel.stream_unary(f"{SERVICE}/ImportCandles")
        imported = await outcome(upload(iter([chunk.SerializeToString()]), timeout=30))

    headed = await outcome(
        hostile.stub.GetStatus(
            api.GetStatusRequest(backtest_id=1),
            metadata=as_owner("a" * 20_000),
            timeout=5,
        )
    )

    for error in (submitted, imported, headed):
        assert isinstance(error, grpc.aio.AioRpcError)
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
    assert await table_snapshot(db_connection) == before


# Bytes that do not parse as the request message


UNARY_CALLS = (
    "SubmitBacktest",
    "SubmitBacktests",
    "GetStatus",
    "GetResult",
    "ListBacktests",
    "CancelBacktest",
    "ListStrategies",
    "ListInstruments",
)


@FUZZ
@given(rpc=st.sampled_from(UNARY_CALLS), payload=st.binary(max_size=300))
async def test_arbitrary_request_bytes_never_fail_internally_or_write(
    hostile: Gateway, db_connection: Connection, rpc: str, payload: bytes
) -> None:
    before = await table_snapshot(db_connection)

    response = await raw_call(hostile, rpc, payload)

    if isinstance(response, grpc.aio.AioRpcError):
        check_not_refused_internally(response)
        if response.code() == grpc.StatusCode.INVALID_ARGUMENT:
            assert bad_request_fields(response), response
        assert await table_snapshot(db_connection) == before


def with_bad_utf8(message: Any, placeholder: str) -> bytes:
    """`message` serialized, with `placeholder` turned into bytes that are
    not UTF-8 (which no protobuf library would write)."""
    wire = bytes(message.SerializeToString())
    assert wire.count(placeholder.encode()) == 1
    return wire.replace(placeholder.encode(), b"\xff" * len(placeholder))


async def test_string_field_that_is_not_utf8_is_invalid_argument_naming_it(
    hostile: Gateway, db_connection: Connection
) -> None:
    spec = crossover_spec()
    spec.instrument = "PLACEHOLDER"
    batch = api.SubmitBacktestsRequest(
        requests=[
            api.SubmitBacktestRequest(spec=crossover_spec()),
            api.SubmitBacktestRequest(spec=spec),
        ]
    )
    first = api.ImportCandlesRequest(instrument="PLACEHOLDER", interval=ONE_HOUR)
    upload: ClientStream = hostile.channel.stream_unary(f"{SERVICE}/ImportCandles")
    before = await table_snapshot(db_connection)

    submitted = await raw_call(
        hostile,
        "SubmitBacktest",
        with_bad_utf8(api.SubmitBacktestRequest(spec=spec), "PLACEHOLDER"),
    )
    batched = await raw_call(
        hostile, "SubmitBacktests", with_bad_utf8(batch, "PLACEHOLDER")
    )
    imported = await outcome(
        upload(iter([with_bad_utf8(first, "PLACEHOLDER")]), timeout=5)
    )

    check_invalid_argument(submitted, ["spec.instrument"], all_named=True)
    check_invalid_argument(batched, ["requests[1].spec.instrument"], all_named=True)
    check_invalid_argument(imported, ["instrument"], all_named=True)
    assert await table_snapshot(db_connection) == before


async def test_truncated_request_is_invalid_argument_naming_the_cut_field(
    hostile: Gateway,
) -> None:
    whole = api.SubmitBacktestRequest(spec=crossover_spec()).SerializeToString()

    error = await raw_call(hostile, "SubmitBacktest", whole[:-3])

    check_invalid_argument(error, ["spec"], all_named=True)


# Regressions: one test per bug the properties above found.


async def test_symbol_followed_by_a_line_break_is_refused(
    hostile: Gateway, db_connection: Connection
) -> None:
    # The symbol pattern ended in `$`, which also matches before a final
    # "\n", so "BTCUSD\n" was queued and imported as a symbol.
    spec = crossover_spec()
    spec.instrument = "BTCUSD\n"
    requests = [
        api.ImportCandlesRequest(instrument="BTCUSD\n", interval=ONE_HOUR),
        api.ImportCandlesRequest(csv_chunk=HOURLY_CSV),
    ]
    before = await table_snapshot(db_connection)

    submitted = await outcome(
        hostile.stub.SubmitBacktest(api.SubmitBacktestRequest(spec=spec), timeout=5)
    )
    imported = await outcome(hostile.stub.ImportCandles(iter(requests), timeout=5))

    check_invalid_argument(submitted, ["spec.instrument"], all_named=True)
    check_invalid_argument(imported, ["instrument"], all_named=True)
    assert await table_snapshot(db_connection) == before


async def test_page_token_signed_for_a_position_below_one_is_refused(
    gateway: Gateway, store: JobStore
) -> None:
    # Positions handed out are at least 1; a token signed elsewhere (the
    # development key is public) with offset -1 served the last trade, as
    # if the list wrapped around.
    await gateway.stub.SubmitBacktest(
        api.SubmitBacktestRequest(spec=crossover_spec()), timeout=5
    )
    (lease,) = await store.claim("test-worker", 1, lease_seconds=30)
    await store.complete(
        lease.job_id, lease.fencing_token, stored_result(sample_result(5))
    )
    signer = PageTokens(TEST_PAGE_TOKEN_KEY)

    for position in (-1, 0):
        token = signer.encode(position, trades_query(DEFAULT_OWNER, lease.job_id))
        request = api.GetResultRequest(backtest_id=lease.job_id, page_token=token)
        error = await outcome(gateway.stub.GetResult(request, timeout=5))

        check_invalid_argument(error, ["page_token"], all_named=True)


@pytest.mark.parametrize(
    ("first_time", "shown"),
    [
        (-86_400, "1969-12-31T00:00:00Z"),
        (7_258_118_400, "2200-01-01T00:00:00Z"),
        (2**36 * 86_400, str(2**36 * 86_400)),
        (10**22, str(10**22)),
    ],
)
async def test_candles_outside_1970_to_2200_are_refused_and_listing_still_works(
    hostile: Gateway, db_connection: Connection, first_time: int, shown: str
) -> None:
    # Such times were stored, after which the import failed converting them
    # to a datetime, and every later import or listing of them failed too;
    # past an int64 the parse itself failed. All were INTERNAL.
    rows = [f"{first_time + day * 86_400},10,11,9,10.5,1" for day in range(2)]
    requests = [
        api.ImportCandlesRequest(
            instrument="OUTSIDE", interval=spec_pb2.CANDLE_INTERVAL_ONE_DAY
        ),
        api.ImportCandlesRequest(csv_chunk="\n".join([HEADER, *rows]).encode()),
    ]
    before = await table_snapshot(db_connection)

    error = await outcome(hostile.stub.ImportCandles(iter(requests), timeout=5))

    check_invalid_argument(error, ["file"], all_named=True)
    details = error.details() or ""
    assert details.startswith("file: line 2: time ")
    assert f"{shown} is not between 1970-01-01 and 2200-01-01" in details.replace(
        '"', ""
    )
    assert await table_snapshot(db_connection) == before
    listing = await hostile.stub.ListInstruments(api.ListInstrumentsRequest())
    assert list(listing.instruments) == []


@pytest.mark.parametrize("n_bad", [100, 100_000])
async def test_request_with_very_many_bad_fields_still_names_the_first(
    hostile: Gateway, db_connection: Connection, n_bad: int
) -> None:
    # Every violation went into the status trailer, and past 8 KiB of it the
    # client dropped the call: RESOURCE_EXHAUSTED "Stream removed", with no
    # field named.
    listing = api.ListBacktestsRequest(states=[99] * n_bad)
    item = api.SubmitBacktestRequest(spec=crossover_spec(), priority=1_000)
    item.spec.initial_cash = -1
    batch = api.SubmitBacktestsRequest(requests=[item] * min(n_bad, 1_000))
    before = await table_snapshot(db_connection)

    listed = await outcome(hostile.stub.ListBacktests(listing, timeout=10))
    submitted = await outcome(hostile.stub.SubmitBacktests(batch, timeout=10))

    states = [f"states[{i}]" for i in range(n_bad)]
    named = check_invalid_argument(listed, states, all_named=False)
    assert named == states[: len(named)]
    assert f"(and {n_bad - 1} more field errors)" in str(listed.details())
    fields = [
        f"requests[{i}].{field}"
        for i in range(len(batch.requests))
        for field in ("spec.initial_cash", "priority")
    ]
    named = check_invalid_argument(submitted, fields, all_named=False)
    assert named == fields[: len(named)]
    assert await table_snapshot(db_connection) == before
