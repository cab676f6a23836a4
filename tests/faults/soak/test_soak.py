"""A short soak: hundreds of backtests while workers and the scheduler are
killed, frozen and restarted at random; the database shows every job ended
exactly once, with each attempt on record.

`make soak` runs the same code (benchmarks/soak.py) with thousands of jobs.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.e2e

SOAK_PATH = Path(__file__).resolve().parents[3] / "benchmarks" / "soak.py"
# Its first three faults are one of each kind, so every kind happens at
# least once however fast this machine is.
SEED = 3


def load_soak() -> ModuleType:
    spec = importlib.util.spec_from_file_location("backcast_soak", SOAK_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Dataclasses look their module up in sys.modules while being defined.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


soak = load_soak()


def test_no_job_is_lost_or_finished_twice_while_services_die_at_random(
    postgres_server_url: str, tmp_path: Path
) -> None:
    options = soak.SoakOptions(
        n_jobs=400,
        n_workers=2,
        slots_per_worker=1,
        seed=SEED,
        fault_every_seconds=1.5,
        timeout_seconds=45.0,
        log_dir=tmp_path / "logs",
    )

    report = soak.run_soak(options, postgres_server_url)

    figures = "\n".join([*report.details(), report.summary()])
    print(figures)
    audit = report.audit
    assert not report.timed_out, figures
    assert (audit.lost, audit.duplicated, audit.stuck) == (0, 0, 0), figures
    assert audit.miscounted == 0, figures
    assert audit.states == {"succeeded": options.n_jobs}, figures
    kinds = {fault.kind for fault in report.faults}
    assert kinds == {soak.KILL_WORKER, soak.KILL_SCHEDULER, soak.FREEZE_WORKER}
