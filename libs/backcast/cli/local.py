"""The `run` command: one backtest of a CSV file of candles, in this process."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from backcast.cli import views
from backcast.cli.client import EXIT_BAD_REQUEST
from backcast.cli.commands import complain, parse_params
from backcast.errors import BacktestFailed, FieldViolation, InvalidArgument


def cmd_run(args: argparse.Namespace) -> int:
    # The engine pulls in numpy and compiled kernels; only this command
    # needs them.
    from backcast.engine.local import backtest_csv
    from backcast.rpc.translate import metrics_to_proto

    try:
        params = parse_params(args.param)
        result = backtest_csv(
            args.data,
            args.strategy,
            params=params,
            commission=args.commission,
            slippage_bps=args.slippage_bps,
            fill=args.fill,
            units=args.units,
            position_fraction=args.position_fraction,
            direction=args.direction,
            stop_loss=args.stop_loss,
            take_profit=args.take_profit,
            initial_cash=args.initial_cash,
            interval=args.interval,
        )
    except InvalidArgument as error:
        complain(_violations_text(error.violations, args))
        return EXIT_BAD_REQUEST
    except BacktestFailed as error:
        complain(f"{args.data}: {error}")
        return EXIT_BAD_REQUEST
    except OSError as error:
        complain(f"--data: cannot read {args.data}: {error.strerror or error}")
        return EXIT_BAD_REQUEST
    except UnicodeDecodeError:
        complain(f"--data: {args.data} is not UTF-8 text")
        return EXIT_BAD_REQUEST

    metrics = result.metrics
    if args.json:
        print(json.dumps(metrics.to_dict(), indent=2))
        return 0
    closes = result.equity_curve.at
    first, last = (datetime.fromtimestamp(int(t), UTC) for t in closes[[0, -1]])
    print(
        f"{args.strategy} on {args.data}: {metrics.n_candles:,} candles closing "
        f"from {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC"
    )
    print(views.metrics_table(metrics_to_proto(metrics)))
    return 0


def _violations_text(violations: list[FieldViolation], args: argparse.Namespace) -> str:
    return "; ".join(f"{_flag(v.field, args)}: {v.description}" for v in violations)


def _flag(field: str, args: argparse.Namespace) -> str:
    """The command-line flag behind a field of `backtest_csv`'s errors."""
    if field.startswith("params."):
        return f"--param {field.removeprefix('params.')}"
    if field == "file":
        # A bad line of the file: its message starts with the line number.
        return str(args.data)
    if field == "path":
        return "--data"
    if field.startswith("--"):
        return field
    return "--" + field.replace("_", "-")
