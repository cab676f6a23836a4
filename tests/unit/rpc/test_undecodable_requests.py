"""Request bytes that do not parse: the broken field is named, or the request."""

from __future__ import annotations

import pytest

from backcast.errors import FieldViolation
from backcast.rpc.undecodable import WHOLE_REQUEST, lenient, undecodable
from backcast.v1 import backtest_service_pb2 as api
from backcast.v1 import spec_pb2


def named(message_type: type, data: bytes) -> list[str]:
    error = undecodable(message_type.DESCRIPTOR, data)  # type: ignore[attr-defined]
    return [violation.field for violation in error.violations]


def spec_with(instrument: str) -> spec_pb2.BacktestSpec:
    return spec_pb2.BacktestSpec(instrument=instrument)


def test_string_that_is_not_utf8_is_named_by_its_path_and_index() -> None:
    batch = api.SubmitBacktestsRequest(
        requests=[
            api.SubmitBacktestRequest(spec=spec_with("GOOD")),
            api.SubmitBacktestRequest(spec=spec_with("GOOD"), request_id="id"),
            api.SubmitBacktestRequest(spec=spec_with("BAD!")),
        ]
    )
    wire = batch.SerializeToString().replace(b"BAD!", b"BA\xc3(")

    assert named(api.SubmitBacktestsRequest, wire) == ["requests[2].spec.instrument"]


def test_number_cut_short_names_its_field() -> None:
    wire = api.GetStatusRequest(backtest_id=2**40).SerializeToString()

    assert named(api.GetStatusRequest, wire[:-1]) == ["backtest_id"]


def test_message_longer_than_the_bytes_left_names_its_field() -> None:
    wire = api.SubmitBacktestRequest(spec=spec_with("BTCUSD")).SerializeToString()

    assert named(api.SubmitBacktestRequest, wire[:-2]) == ["spec"]


@pytest.mark.parametrize(
    "wire",
    [b"\xff\xff\xff", b"\x4f", b"\x52\x05abc"],
    ids=["endless key", "unknown field of wire type 7", "unknown field cut short"],
)
def test_bytes_no_field_is_to_blame_for_name_the_whole_request(wire: bytes) -> None:
    assert named(api.GetStatusRequest, wire) == [WHOLE_REQUEST]


def test_unary_parse_failure_is_returned_and_a_streamed_one_raised() -> None:
    parse = api.GetStatusRequest.FromString
    good = api.GetStatusRequest(backtest_id=7).SerializeToString()

    unary = lenient(parse, streamed=False)
    streamed = lenient(parse, streamed=True)

    assert unary(good) == api.GetStatusRequest(backtest_id=7)
    returned = unary(b"\x08")
    assert returned.violations == [
        FieldViolation("backtest_id", "ends inside a number")
    ]
    with pytest.raises(type(returned)):
        streamed(b"\x08")
