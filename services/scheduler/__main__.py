"""Run a scheduler: `python -m backcast.scheduler --help`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from backcast import telemetry
from backcast.config import ConfigError, with_flags
from backcast.errors import DatabaseUnavailable
from backcast.jobqueue.store import JobStore
from backcast.rpc.server import stop_event_on_signals
from backcast.scheduler.config import SchedulerConfig
from backcast.scheduler.server import Scheduler
from backcast.telemetry import EVENT

logger = logging.getLogger("backcast.scheduler")

# flag -> environment variable it overrides
FLAGS = {
    "database_url": "BACKCAST_DATABASE_URL",
    "address": "BACKCAST_SCHEDULER_ADDRESS",
    "lease_seconds": "BACKCAST_SCHEDULER_LEASE_SECONDS",
    "heartbeat_seconds": "BACKCAST_SCHEDULER_HEARTBEAT_SECONDS",
    "poll_seconds": "BACKCAST_SCHEDULER_POLL_SECONDS",
    "scheduler_id": "BACKCAST_SCHEDULER_ID",
    "log_level": "BACKCAST_LOG_LEVEL",
    "history_days": "BACKCAST_SCHEDULER_HISTORY_DAYS",
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m backcast.scheduler",
        description="Lease queued backtests to compute workers. Each flag "
        "overrides the environment variable named in its help.",
    )
    parser.add_argument("--database-url", help="PostgreSQL URL (BACKCAST_DATABASE_URL)")
    parser.add_argument(
        "--address",
        help="listen address host:port (BACKCAST_SCHEDULER_ADDRESS, 127.0.0.1:50052)",
    )
    parser.add_argument(
        "--lease-seconds",
        help="lease lifetime without renewal (BACKCAST_SCHEDULER_LEASE_SECONDS, 10)",
    )
    parser.add_argument(
        "--heartbeat-seconds",
        help="worker heartbeat interval (BACKCAST_SCHEDULER_HEARTBEAT_SECONDS, 2)",
    )
    parser.add_argument(
        "--poll-seconds",
        help="safety-net poll for queued jobs (BACKCAST_SCHEDULER_POLL_SECONDS, 1)",
    )
    parser.add_argument(
        "--scheduler-id",
        help="name in logs and welcomes (BACKCAST_SCHEDULER_ID, hostname-pid)",
    )
    parser.add_argument("--log-level", help="log level (BACKCAST_LOG_LEVEL, INFO)")
    parser.add_argument(
        "--history-days",
        help="days finished jobs are kept, 0 for ever "
        "(BACKCAST_SCHEDULER_HISTORY_DAYS, 30)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    env = with_flags(os.environ, FLAGS, args)
    try:
        config = SchedulerConfig.from_env(env)
    except ConfigError as exc:
        print(f"backcast.scheduler: {exc}", file=sys.stderr)
        return 2

    telemetry.configure("scheduler", config.log_level)
    try:
        asyncio.run(serve(config))
    except DatabaseUnavailable:
        logger.error("database unreachable at start", extra={EVENT: "start_failed"})
        return 1
    return 0


async def serve(config: SchedulerConfig) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully."""
    stop = stop_event_on_signals()
    store = await JobStore.open(config.database_url)
    try:
        scheduler = await Scheduler.start(config, store)
        await stop.wait()
        await scheduler.stop()
    finally:
        await store.close()


if __name__ == "__main__":
    sys.exit(main())
