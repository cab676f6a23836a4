"""The full equity curve of a backtest run by a real worker, streamed back
through the gateway, equals the engine's equity at every close."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from e2e_support import STATE, small_spec, wait_until_finished

from backcast.cli.client import GatewayClient
from backcast.engine import backtest
from backcast.engine.simulation import Simulation
from backcast.rpc.translate import spec_from_proto

pytestmark = pytest.mark.e2e


def test_full_curve_of_a_worker_backtest_equals_the_engine_equity(
    gateway: GatewayClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = small_spec(3)
    backtest_id = gateway.submit(spec).id
    finished = wait_until_finished(gateway, [backtest_id], timeout_seconds=60)
    assert finished[backtest_id].state == STATE.STATE_SUCCEEDED
    made: list[Simulation] = []
    original = backtest.simulate

    def recording(*args: Any, **kwargs: Any) -> Simulation:
        made.append(original(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(backtest, "simulate", recording)
    backtest.run_backtest(spec_from_proto(spec))

    points = list(gateway.equity_curve(backtest_id))

    equity = np.array([point.equity for point in points])
    np.testing.assert_array_equal(equity, made[0].equity)
    assert points[0].time.seconds == spec.start_time.seconds + 300
    summary = gateway.get_status(backtest_id).summary
    assert points[-1].equity == summary.final_equity
