"""Fault 6: the network between a worker and its scheduler cut, then healed."""

from __future__ import annotations

import pytest
from worker_faults_support import (
    Fleet,
    TcpProxy,
    assert_new_holder_result_kept,
    strand_worker,
)

from backcast.cli.client import GatewayClient
from backcast.cli.platform import ServiceProcess

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("break_link", [TcpProxy.cut, TcpProxy.blackhole])
def test_cut_off_worker_late_progress_and_result_are_refused_after_heal(
    fleet: Fleet,
    gateway: GatewayClient,
    break_link: object,
) -> None:
    # `cut` closes every connection and resets new ones; `blackhole` keeps
    # them open and holds every byte until the link heals.
    proxy = fleet.proxy_to_scheduler()

    def isolate(_: ServiceProcess) -> None:
        assert callable(break_link)
        break_link(proxy)

    def restore(_: ServiceProcess) -> None:
        proxy.heal()

    jobs = strand_worker(
        fleet,
        gateway,
        isolate=isolate,
        restore=restore,
        scheduler_address=proxy.address,
    )

    assert_new_holder_result_kept(fleet, jobs)
    # The worker came back over the healed link rather than being restarted.
    assert jobs.stranded.returncode() is None
