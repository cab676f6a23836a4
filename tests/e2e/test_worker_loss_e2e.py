"""A worker that dies mid-attempt loses no job: another one runs it again."""

from __future__ import annotations

import contextlib
import signal

import pytest
from e2e_support import (
    STATE,
    lease_holder,
    long_spec,
    wait_for,
    wait_for_state,
)

from backcast.cli.client import GatewayClient
from backcast.cli.platform import Platform

pytestmark = pytest.mark.e2e


def test_job_of_a_killed_worker_runs_again_and_succeeds(
    running_platform: Platform, gateway: GatewayClient, database_url: str
) -> None:
    backtest = gateway.submit(long_spec("SYN-KILL"), max_attempts=3)
    holder = wait_for(
        lambda: lease_holder(database_url, backtest.id),
        timeout_seconds=30,
        what="the backtest to be leased",
    )
    worker_a = next(w for w in running_platform.workers if w.name == holder)
    # Let the attempt get under way before the worker vanishes, but not for
    # long: the whole backtest takes about a second here, and it must still
    # be running when the worker dies.
    with contextlib.suppress(AssertionError):
        wait_for(
            lambda: gateway.get_status(backtest.id).progress > 0,
            timeout_seconds=0.4,
            what="progress of the first attempt",
        )

    # The worker and its slot processes die at once, as with a lost machine.
    worker_a.kill_group()
    assert worker_a.returncode() == -signal.SIGKILL

    finished = wait_for_state(
        gateway,
        backtest.id,
        [STATE.STATE_SUCCEEDED, STATE.STATE_FAILED, STATE.STATE_CANCELLED],
        timeout_seconds=60,
    )
    assert finished.state == STATE.STATE_SUCCEEDED, finished.error
    assert finished.attempt == 2
    assert gateway.get_result(backtest.id).result.metrics.n_candles > 0

    running_platform.restart(worker_a)
