"""Fault 2: a worker frozen (SIGSTOP) past its leases, then resumed."""

from __future__ import annotations

import signal

import pytest
from worker_faults_support import (
    Fleet,
    assert_new_holder_result_kept,
    strand_worker,
)

from backcast.cli.client import GatewayClient
from backcast.cli.platform import ServiceProcess

pytestmark = pytest.mark.e2e


def _freeze(worker: ServiceProcess) -> None:
    # Only the worker process: its slot processes run on, so a result comes
    # out while the worker cannot pass it on, as after a long GC pause or a
    # suspended VM.
    worker.signal(signal.SIGSTOP)


def _thaw(worker: ServiceProcess) -> None:
    worker.signal(signal.SIGCONT)


def test_frozen_worker_late_progress_and_result_are_refused_after_resume(
    fleet: Fleet, gateway: GatewayClient
) -> None:
    jobs = strand_worker(fleet, gateway, isolate=_freeze, restore=_thaw)

    assert_new_holder_result_kept(fleet, jobs)
    assert jobs.stranded.returncode() is None, "the resumed worker should live on"
