"""Backtests through the gateway over gRPC, run by real worker processes."""

from __future__ import annotations

import grpc
import pytest
from e2e_support import STATE, count_jobs, small_spec, wait_until_finished
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from backcast.cli.client import GatewayClient

pytestmark = pytest.mark.e2e


def test_fifty_backtests_all_succeed_with_results(gateway: GatewayClient) -> None:
    ids = [gateway.submit(small_spec(i)).id for i in range(50)]
    assert len(set(ids)) == 50

    finished = wait_until_finished(gateway, ids, timeout_seconds=90)

    failed = [b for b in finished.values() if b.state != STATE.STATE_SUCCEEDED]
    assert not failed, [f"{b.id} {STATE.Name(b.state)} {b.error}" for b in failed]
    for backtest_id in ids:
        response = gateway.get_result(backtest_id)
        assert response.backtest_id == backtest_id
        assert response.result.metrics.n_candles == 2016
        assert response.result.equity_curve
        assert finished[backtest_id].attempt == 1


def test_invalid_spec_is_refused_naming_the_field_and_writes_nothing(
    gateway: GatewayClient, database_url: str
) -> None:
    spec = small_spec(0)
    spec.costs.commission = 0.5
    spec.end_time.CopyFrom(spec.start_time)

    with pytest.raises(grpc.RpcError) as raised:
        gateway.submit(spec)

    error = raised.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(error)
    assert status is not None
    violations = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            violations += [v.field for v in bad_request.field_violations]
    assert "spec.costs.commission" in violations
    assert "spec.end_time" in violations
    assert count_jobs(database_url) == 0
