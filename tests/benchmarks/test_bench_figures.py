"""The arithmetic behind the benchmark table: quantiles, fairness, targets."""

from __future__ import annotations

import json
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
from platform_bench.report import markdown_table, read_figures, table_rows  # noqa: E402


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


def test_figure_read_back_from_its_json_form_prints_the_same_row() -> None:
    figure = Figure(
        "drain",
        "jobs/s, release to last SUCCEEDED",
        "jobs/s",
        runs=[250.0, 255.5, math.nan],
        baseline_runs=[1_600.0],
        baseline="raw SKIP LOCKED loop",
        target=at_least(20_000.0),
        note="20,000 jobs",
    )
    latency = Figure("latency", "p99", "ms", runs=[6.5], target=at_most(25.0))

    read = [Figure.from_dict(f.to_dict()) for f in (figure, latency)]

    assert table_rows(read) == table_rows([figure, latency])
    assert read[0].target == figure.target
    assert read[1].target == latency.target


def test_markdown_table_of_a_stored_run_has_a_row_per_figure(tmp_path: Path) -> None:
    figure = Figure("seed", "wall time", "s", runs=[173.0], target=at_most(300.0))
    run = {"benchmarks": {"seed": {"figures": [figure.to_dict()], "details": {}}}}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(run))

    table = markdown_table(read_figures(path)).splitlines()

    assert table[0] == "| benchmark | figure | median | baseline | target | met? |"
    assert table[2] == "| seed | wall time | 173 s | - | <= 300 | yes |"
