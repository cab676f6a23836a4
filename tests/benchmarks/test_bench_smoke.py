"""`benchmarks/bench.py` runs a benchmark end to end on a tiny size and
leaves its figures in a JSON file: the harness works, whatever the timings."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks" / "bench.py"

pytestmark = pytest.mark.e2e


def run_bench(
    server_url: str, out: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BACKCAST_BENCH_DATABASE_URL": server_url}
    return subprocess.run(
        [sys.executable, str(BENCH), *args, "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_drain_on_a_tiny_queue_writes_its_figures(
    postgres_server_url: str, tmp_path: Path
) -> None:
    done = run_bench(
        postgres_server_url, tmp_path, "drain", "--size", "10", "--runs", "1"
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "jobs/s, release to last SUCCEEDED" in done.stdout
    (path,) = tmp_path.glob("bench-*.json")
    document = json.loads(path.read_text())
    assert document["machine"]["cpu_count"] == os.cpu_count()
    assert document["machine"]["postgres"]
    assert document["settings"]["size"] == 10
    assert document["errors"] == {}

    (figure,) = document["benchmarks"]["drain"]["figures"]
    assert figure["unit"] == "jobs/s"
    assert len(figure["runs"]) == 1 and figure["median"] > 0
    assert figure["baseline_median"] > 0
    assert figure["target"] == ">= 20,000"
    assert figure["met"] in (True, False)
    details = document["benchmarks"]["drain"]["details"]
    assert details["n_jobs"] == 10
    assert all(math.isfinite(v) for v in details["cpu_seconds_per_job"][0].values())


def test_unknown_benchmark_is_refused_before_anything_starts(tmp_path: Path) -> None:
    done = run_bench("postgresql://nowhere.invalid/x", tmp_path, "drian")

    assert done.returncode == 2
    assert "unknown benchmark 'drian'" in done.stderr
    assert not list(tmp_path.iterdir())
