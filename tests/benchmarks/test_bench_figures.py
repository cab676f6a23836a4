"""The arithmetic behind the benchmark table: quantiles, fairness, targets."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from platform_bench.figures import (  # noqa: E402
    Figure,
    at_least,
    at_most,
    jain_index,
    percentile,
)


def test_percentile_takes_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]

    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([3.0], 0.99) == 3.0
    assert math.isnan(percentile([], 0.5))


def test_jain_index_is_one_for_equal_shares_and_one_over_n_for_a_monopoly() -> None:
    assert jain_index([2.0, 2.0, 2.0, 2.0]) == pytest.approx(1.0)
    assert jain_index([5.0, 0.0, 0.0, 0.0]) == pytest.approx(0.25)
    # (1 + 3)^2 / (2 * (1 + 9)) = 0.8
    assert jain_index([1.0, 3.0]) == pytest.approx(0.8)


def test_figure_meets_its_target_by_the_median_of_its_runs() -> None:
    faster = Figure("drain", "rate", "jobs/s", runs=[90.0, 120.0, 110.0])
    faster.target = at_least(100.0)
    slower = Figure("latency", "p99", "ms", runs=[30.0, 20.0, 40.0])
    slower.target = at_most(25.0)

    assert faster.median == 110.0 and faster.met is True
    assert slower.median == 30.0 and slower.met is False
    assert Figure("x", "y", "").met is None
