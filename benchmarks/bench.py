"""Benchmark the platform: gateway, scheduler and workers as processes on a
real PostgreSQL, each figure the median of several runs beside a baseline
measured in the same run.

Each benchmark gets a fresh database (`backcast_bench_<hex>`) on the server
of BACKCAST_BENCH_DATABASE_URL or BACKCAST_TEST_DATABASE_URL (default: the
local server as postgres), dropped at the end. Prints a table and writes the
figures, sizes, machine and commit to one JSON file per run.

    python benchmarks/bench.py [BENCHMARK ...] [--quick] [--runs N] [--out DIR]
    python benchmarks/bench.py --markdown RUN.json

BENCHMARK is any of drain, submit, latency, fairness, history, seed (default:
all). --quick shrinks every size for a look in seconds rather than minutes.
--markdown prints the table of a stored run in Markdown, for the docs.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from platform_bench.figures import Outcome
from platform_bench.harness import BenchContext, server_url_from_env
from platform_bench.report import (
    machine_info,
    markdown_table,
    read_figures,
    text_table,
    write_json,
)

# Each is the module platform_bench.<name>, with run(ctx) -> Outcome.
BENCHMARKS = ("drain", "submit", "latency", "fairness", "history", "seed")
DEFAULT_OUT = Path(__file__).parent / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "benchmarks",
        nargs="*",
        metavar="BENCHMARK",
        help=f"any of {', '.join(BENCHMARKS)}; all when none is named",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, for a quick look"
    )
    parser.add_argument(
        "--runs", type=int, default=3, help="runs per figure (default 3)"
    )
    parser.add_argument(
        "--size",
        type=int,
        help="main size of each benchmark named (jobs, calls or samples)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--markdown",
        type=Path,
        metavar="RUN_JSON",
        help="print a stored run's table in Markdown and exit",
    )
    parser.add_argument(
        "--log-level", default="INFO", help="services' log level (default INFO)"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="profile each service with cProfile into DIR (slows them down)",
    )
    parser.add_argument(
        "--logs",
        type=Path,
        metavar="DIR",
        help="keep the services' logs in DIR (default: a temporary directory)",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.size is not None and args.size < 10:
        parser.error("--size must be at least 10")
    unknown = [name for name in args.benchmarks if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; use {', '.join(BENCHMARKS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.markdown is not None:
        print(markdown_table(read_figures(args.markdown)))
        return 0
    names = args.benchmarks or list(BENCHMARKS)
    started_at = datetime.now(UTC)
    server_url = server_url_from_env()
    machine = machine_info(server_url)

    outcomes: dict[str, Outcome] = {}
    errors: dict[str, str] = {}
    with _log_dir(args.logs) as log_dir:
        ctx = BenchContext(
            server_url=server_url,
            log_dir=log_dir,
            runs=args.runs,
            quick=args.quick,
            log_level=args.log_level.upper(),
            profile_dir=args.profile,
            size=args.size,
        )
        for name in names:
            print(f"{name}: running", file=sys.stderr, flush=True)
            began = time.monotonic()
            try:
                module = importlib.import_module(f"platform_bench.{name}")
                outcomes[name] = module.run(ctx)
            except Exception as exc:  # noqa: BLE001 - one failure must not end the run
                traceback.print_exc()
                errors[name] = f"{type(exc).__name__}: {exc}"
            took = time.monotonic() - began
            print(f"{name}: done in {took:.0f} s", file=sys.stderr, flush=True)

    figures = [figure for outcome in outcomes.values() for figure in outcome.figures]
    print(text_table(figures))
    for name, error in errors.items():
        print(f"{name}: FAILED: {error}")
    settings = {
        "benchmarks": names,
        "quick": args.quick,
        "runs": args.runs,
        "size": args.size,
    }
    path = write_json(
        args.out,
        started_at=started_at,
        settings=settings,
        machine=machine,
        outcomes=outcomes,
        errors=errors,
    )
    print(f"figures written to {path}")
    return 1 if errors else 0


@contextlib.contextmanager
def _log_dir(kept: Path | None) -> Iterator[Path]:
    if kept is not None:
        kept.mkdir(parents=True, exist_ok=True)
        yield kept
        return
    with tempfile.TemporaryDirectory(prefix="backcast-bench-") as temporary:
        yield Path(temporary)


if __name__ == "__main__":
    sys.exit(main())
