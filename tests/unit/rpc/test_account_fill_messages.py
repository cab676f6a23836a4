"""Account fills and the data version through `backcast.v1` messages and back."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from test_result_messages import sample_result

from backcast.engine.results import AccountFills, BacktestResult
from backcast.errors import InvalidArgument
from backcast.rpc.translate import result_from_proto, result_to_proto

MONDAY_SECONDS = 1_704_067_200


def result_with_fills() -> BacktestResult:
    fills = AccountFills(
        at=MONDAY_SECONDS + np.array([60, 7_200, 9_000], dtype=np.int64),
        cash=np.array([1.0, 100.0 / 3, 218.5]),
        units=np.array([9.0, -8.0, 0.0]),
    )
    return replace(sample_result(), account_fills=fills, data_version="import:17")


def test_fills_and_data_version_survive_a_proto_round_trip() -> None:
    result = result_with_fills()

    message = result_to_proto(result)

    assert list(message.account_fills.candle_times) == result.account_fills.at.tolist()
    assert message.data_version == "import:17"
    assert result_from_proto(message) == result


def test_a_result_without_fills_stays_without() -> None:
    message = result_to_proto(sample_result())

    back = result_from_proto(message)

    assert not message.HasField("account_fills")
    assert (back.account_fills, back.data_version) == (None, None)


def test_no_fills_at_all_differ_from_fills_not_sent() -> None:
    empty = AccountFills(np.empty(0, np.int64), np.empty(0), np.empty(0))
    result = replace(sample_result(), account_fills=empty, data_version="synthetic:1")

    back = result_from_proto(result_to_proto(result))

    assert back.account_fills == empty


def test_fill_columns_of_different_lengths_are_refused() -> None:
    message = result_to_proto(result_with_fills())
    message.account_fills.units.append(1.0)

    with pytest.raises(InvalidArgument, match="every fill needs one of each"):
        result_from_proto(message)


def test_fill_times_out_of_order_are_refused() -> None:
    message = result_to_proto(result_with_fills())
    message.account_fills.candle_times[2] = MONDAY_SECONDS

    with pytest.raises(InvalidArgument, match="ascend strictly"):
        result_from_proto(message)


def test_fills_survive_the_json_form_of_a_result() -> None:
    result = result_with_fills()

    stored = result.to_dict()

    assert isinstance(stored["account_fills"], str)
    assert BacktestResult.from_dict(stored) == result
