"""A short soak: a steady stream of backtests while workers and the scheduler
are killed, frozen and restarted at random; the database shows every job ended
exactly once, with each attempt on record.

`make soak` runs the same code (benchmarks/soak.py) with thousands of jobs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from soak_support import soak

pytestmark = pytest.mark.e2e


def test_no_job_is_lost_or_finished_twice_while_services_die_at_random(
    postgres_server_url: str, tmp_path: Path
) -> None:
    options = soak.SoakOptions(
        n_jobs=120,
        n_workers=2,
        slots_per_worker=1,
        seed=1,
        # Jobs keep coming for 15 s, time for a few faults and recoveries
        # even when service restarts are slow.
        submit_rate=8.0,
        fault_every_seconds=0.8,
        timeout_seconds=35.0,
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
    assert report.crashes == [], figures
    # Faults come in rounds of one of each kind.
    assert len(report.faults) >= 3, figures
