"""Run a compute worker: `python -m backcast.compute --help`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

from backcast import telemetry
from backcast.compute.config import WorkerConfig
from backcast.compute.worker import Worker
from backcast.config import ConfigError, with_flags
from backcast.telemetry import EVENT, WORKER

logger = logging.getLogger("backcast.compute")

# flag -> environment variable it overrides
FLAGS = {
    "scheduler": "BACKCAST_WORKER_SCHEDULER",
    "slots": "BACKCAST_WORKER_SLOTS",
    "prefetch": "BACKCAST_WORKER_PREFETCH",
    "worker_id": "BACKCAST_WORKER_ID",
    "address": "BACKCAST_WORKER_ADDRESS",
    "log_level": "BACKCAST_LOG_LEVEL",
    "attempt_timeout_seconds": "BACKCAST_WORKER_ATTEMPT_TIMEOUT_SECONDS",
    "slot_memory_mb": "BACKCAST_WORKER_SLOT_MEMORY_MB",
}

# Exit code after a second signal cut the drain short.
EXIT_INTERRUPTED = 1


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m backcast.compute",
        description="Run leased backtests in slot processes. The first SIGTERM "
        "or SIGINT drains (running backtests finish, then exit 0); a second one "
        "stops at once. Each flag overrides the environment variable named in "
        "its help.",
    )
    parser.add_argument(
        "--scheduler",
        help="scheduler address host:port (BACKCAST_WORKER_SCHEDULER, 127.0.0.1:50052)",
    )
    parser.add_argument(
        "--slots",
        help="backtests run at once (BACKCAST_WORKER_SLOTS, cores minus one)",
    )
    parser.add_argument(
        "--prefetch",
        help="attempts held waiting for a slot (BACKCAST_WORKER_PREFETCH, none)",
    )
    parser.add_argument(
        "--worker-id", help="unique worker name (BACKCAST_WORKER_ID, hostname-pid)"
    )
    parser.add_argument(
        "--address",
        help="health listen address (BACKCAST_WORKER_ADDRESS, 127.0.0.1:0)",
    )
    parser.add_argument("--log-level", help="log level (BACKCAST_LOG_LEVEL, INFO)")
    parser.add_argument(
        "--attempt-timeout-seconds",
        help="longest run of one attempt before its slot is killed "
        "(BACKCAST_WORKER_ATTEMPT_TIMEOUT_SECONDS, 3600)",
    )
    parser.add_argument(
        "--slot-memory-mb",
        help="address-space limit of each slot process in MiB, 0 for none "
        "(BACKCAST_WORKER_SLOT_MEMORY_MB, 0)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    env = with_flags(os.environ, FLAGS, args)
    try:
        config = WorkerConfig.from_env(env)
    except ConfigError as exc:
        print(f"backcast.compute: {exc}", file=sys.stderr)
        return 2

    telemetry.configure("compute", config.log_level)
    return asyncio.run(serve(config))


async def serve(config: WorkerConfig) -> int:
    """Run until drained after a signal; returns the exit code."""
    worker = Worker(config)
    forced = asyncio.Event()

    def on_signal() -> None:
        if worker.drain_requested.is_set():
            forced.set()
        else:
            worker.drain()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)

    await worker.start()
    try:
        await worker.drain_requested.wait()
        drained = asyncio.create_task(worker.wait_drained())
        interrupted = asyncio.create_task(forced.wait())
        await asyncio.wait({drained, interrupted}, return_when=asyncio.FIRST_COMPLETED)
        drained.cancel()
        interrupted.cancel()
    finally:
        await worker.stop()

    if forced.is_set():
        logger.warning(
            "worker stopped before its attempts finished",
            extra={EVENT: "worker_interrupted", WORKER: config.worker_id},
        )
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
