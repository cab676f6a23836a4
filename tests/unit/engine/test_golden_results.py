"""Full backtests of a committed candle file match their recorded results.

tests/data/make_golden.py recorded the results; a failure here means the
engine's figures moved. Rerun it only when that change is intended.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from backcast.engine.local import backtest_csv
from backcast.engine.spec import STRATEGIES

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
CANDLE_FILE = DATA_DIR / "golden_candles_1h.csv"
GOLDEN = json.loads((DATA_DIR / "golden_results.json").read_text(encoding="utf-8"))
# Counts are compared exactly; every other figure within this tolerance.
COUNTS = ("n_trades", "n_candles", "max_drawdown_candles", "max_drawdown_seconds")


@pytest.mark.parametrize("golden", GOLDEN, ids=[g["name"] for g in GOLDEN])
def test_backtest_of_golden_candles_reproduces_recorded_metrics(
    golden: dict[str, Any],
) -> None:
    result = backtest_csv(CANDLE_FILE, golden["strategy"], **golden["options"])

    expected = golden["metrics"]
    actual = result.metrics.to_dict()
    assert sorted(actual) == sorted(expected)
    for name in COUNTS:
        assert actual[name] == expected[name], name
    for name, value in expected.items():
        np.testing.assert_allclose(actual[name], value, rtol=1e-9, err_msg=name)
    assert len(result.trades) == expected["n_trades"]


def test_golden_specs_cover_every_strategy() -> None:
    assert {g["strategy"] for g in GOLDEN} == set(STRATEGIES)
