"""Write the golden results that tests/unit/engine/test_golden_results.py checks.

Rerun only when a change of results is intended (a fix of the execution model
or of a metric's formula), and say in the commit which figures moved and why:

    .venv/bin/python tests/data/make_golden.py

It backtests the committed `golden_candles_1h.csv` with every spec of
`GOLDEN_SPECS` and writes `golden_results.json`. The candle file was written
once with `--write-candles` (2,000 hourly candles of the synthetic SYN-BTCUSD
from 2024-01-01, six significant digits) and is kept as committed: the test
must not depend on the synthetic generator staying the same.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backcast.engine.local import backtest_csv
from backcast.engine.spec import Interval

DATA_DIR = Path(__file__).resolve().parent
CANDLE_FILE = DATA_DIR / "golden_candles_1h.csv"
RESULT_FILE = DATA_DIR / "golden_results.json"

# Each spec: a name, the strategy and the keyword options of `backtest_csv`.
GOLDEN_SPECS: list[dict[str, Any]] = [
    {
        "name": "crossover_simple_with_costs",
        "strategy": "moving_average_crossover",
        "options": {
            "params": {"fast_period": 10, "slow_period": 30, "kind": "simple"},
            "commission": 0.001,
            "slippage_bps": 2.0,
        },
    },
    {
        "name": "crossover_exponential_close_fractional",
        "strategy": "moving_average_crossover",
        "options": {
            "params": {"fast_period": 12, "slow_period": 48, "kind": "exponential"},
            "commission": 0.002,
            "fill": "close",
            "units": "fractional",
        },
    },
    {
        "name": "rsi_mean_reversion",
        "strategy": "rsi_mean_reversion",
        "options": {
            "params": {"period": 14, "oversold": 30.0, "overbought": 70.0},
            "commission": 0.0005,
        },
    },
    {
        "name": "bollinger_breakout_half_position",
        "strategy": "bollinger_breakout",
        "options": {
            "params": {"period": 20, "width": 2.0},
            "commission": 0.001,
            "position_fraction": 0.5,
        },
    },
    {
        "name": "macd_trend_long_short",
        "strategy": "macd_trend",
        "options": {
            "params": {"fast_period": 12, "slow_period": 26, "signal_period": 9},
            "commission": 0.001,
            "direction": "long_short",
        },
    },
    {
        "name": "donchian_long_short_with_stops",
        "strategy": "donchian_breakout",
        "options": {
            "params": {"entry_period": 20, "exit_period": 10},
            "commission": 0.001,
            "slippage_bps": 1.0,
            "direction": "long_short",
            "stop_loss": 0.03,
            "take_profit": 0.06,
        },
    },
    {
        "name": "buy_and_hold",
        "strategy": "buy_and_hold",
        "options": {"commission": 0.001, "initial_cash": 25_000.0},
    },
]


def write_candles(path: Path) -> None:
    """2,000 hourly SYN-BTCUSD candles from 2024-01-01 as CSV."""
    from backcast.marketdata.synthetic import synthetic_candles

    start = datetime(2024, 1, 1, tzinfo=UTC)
    end = datetime.fromtimestamp(start.timestamp() + 2_000 * 3_600, UTC)
    candles = synthetic_candles("SYN-BTCUSD", Interval.ONE_HOUR, start, end)
    # Rounding is monotonic, so rounded candles keep low <= open, close <= high.
    lines = ["time,open,high,low,close,volume"]
    for i in range(len(candles)):
        stamp = datetime.fromtimestamp(int(candles.times[i]), UTC)
        values = (
            candles.open[i],
            candles.high[i],
            candles.low[i],
            candles.close[i],
            candles.volume[i],
        )
        fields = ",".join(f"{float(v):.6g}" for v in values)
        lines.append(f"{stamp.strftime('%Y-%m-%dT%H:%M:%SZ')},{fields}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def golden_results() -> list[dict[str, Any]]:
    """Every golden spec with the metrics of its backtest of the candle file."""
    golden = []
    for spec in GOLDEN_SPECS:
        result = backtest_csv(CANDLE_FILE, spec["strategy"], **spec["options"])
        golden.append({**spec, "metrics": result.metrics.to_dict()})
    return golden


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--write-candles",
        action="store_true",
        help=f"also rewrite {CANDLE_FILE.name} from the synthetic generator",
    )
    args = parser.parse_args()
    if args.write_candles:
        write_candles(CANDLE_FILE)
    text = json.dumps(golden_results(), indent=2)
    RESULT_FILE.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {RESULT_FILE.name} with {len(GOLDEN_SPECS)} results")


if __name__ == "__main__":
    main()
