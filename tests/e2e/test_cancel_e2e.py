"""Cancelling backtests: queued ones at once, running ones on their worker."""

from __future__ import annotations

import contextlib

import grpc
import pytest
from e2e_support import STATE, long_spec, small_spec, wait_for_state

from backcast.cli.client import GatewayClient
from backcast.cli.views import is_terminal

pytestmark = pytest.mark.e2e


def _stop_if_unfinished(gateway: GatewayClient, backtest_id: int) -> None:
    # Clean-up only: the backtest may have finished on its own by now.
    if not is_terminal(gateway.get_status(backtest_id)):
        with contextlib.suppress(grpc.RpcError):
            gateway.cancel(backtest_id)


def _fill_both_slots(gateway: GatewayClient, prefix: str) -> list[int]:
    ids = [gateway.submit(long_spec(f"SYN-{prefix}{i}")).id for i in range(2)]
    for backtest_id in ids:
        wait_for_state(gateway, backtest_id, [STATE.STATE_RUNNING])
    return ids


def test_cancelling_a_queued_backtest_takes_effect_at_once(
    gateway: GatewayClient,
) -> None:
    busy = _fill_both_slots(gateway, "BUSY")
    waiting = gateway.submit(small_spec(1))
    assert waiting.state == STATE.STATE_QUEUED

    cancelled = gateway.cancel(waiting.id)

    assert cancelled.state == STATE.STATE_CANCELLED
    assert gateway.get_status(waiting.id).state == STATE.STATE_CANCELLED
    assert gateway.get_status(waiting.id).attempt == 0
    for backtest_id in busy:
        _stop_if_unfinished(gateway, backtest_id)


def test_cancelling_a_running_backtest_stops_it_and_frees_its_slot(
    gateway: GatewayClient,
) -> None:
    first, second = _fill_both_slots(gateway, "CANCEL")
    waiting = gateway.submit(small_spec(2))
    assert waiting.state == STATE.STATE_QUEUED

    response = gateway.cancel(first)

    assert response.state == STATE.STATE_CANCELLING
    cancelled = wait_for_state(gateway, first, [STATE.STATE_CANCELLED])
    assert cancelled.error.reason == "CANCELLED"
    done = wait_for_state(
        gateway, waiting.id, [STATE.STATE_SUCCEEDED], timeout_seconds=20
    )
    # The queued backtest got the freed slot: it started while the other
    # long backtest still held the second one.
    other = gateway.get_status(second)
    if is_terminal(other):
        assert other.end_time.ToDatetime() > done.start_time.ToDatetime()
    _stop_if_unfinished(gateway, second)
