"""Run the API gateway: `python -m backcast.gateway --help`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Mapping, Sequence

from backcast import telemetry
from backcast.config import ConfigError, redact_url
from backcast.errors import AppError
from backcast.gateway.config import LOG_LEVELS, GatewayConfig
from backcast.gateway.server import start_gateway, stop_gateway
from backcast.gateway.watch import JobEvents
from backcast.jobqueue.store import JobStore
from backcast.rpc.server import stop_event_on_signals
from backcast.telemetry import EVENT

logger = logging.getLogger("backcast.gateway")

# Longest wait of a call for a database connection. While PostgreSQL is away
# no connection comes, and the caller should hear UNAVAILABLE ("retry") well
# before a usual deadline (the command-line client's is 10 s) makes it
# DEADLINE_EXCEEDED, which says nothing about the cause.
DATABASE_WAIT_SECONDS = 2.0


_SETTINGS_WITHOUT_FLAGS = """\
settings without a flag (environment variables):
  BACKCAST_GATEWAY_PAGE_TOKEN_KEY      HMAC key of page tokens, >= 16 characters,
                                       the same on every replica (default: a
                                       public development key)
  BACKCAST_GATEWAY_POOL_SIZE           most database connections (10)
  BACKCAST_GATEWAY_WATCH_POLL_SECONDS  re-read of a watched backtest when no
                                       notification came (2)
  BACKCAST_GATEWAY_GRACE_SECONDS       time unary calls get to finish on stop (5)
  BACKCAST_MARKETDATA_URL              PostgreSQL of the stored candles (default:
                                       the job database)
"""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m backcast.gateway",
        description=(
            "Serve the public BacktestService: accept backtests as jobs in "
            "PostgreSQL and answer their status and results. Each flag "
            "overrides its environment variable."
        ),
        epilog=_SETTINGS_WITHOUT_FLAGS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--address",
        help="listen address, host:port (BACKCAST_GATEWAY_ADDRESS; "
        "default 127.0.0.1:50051; port 0 picks a free port)",
    )
    parser.add_argument(
        "--database-url",
        help="postgresql:// URL of the job store (BACKCAST_DATABASE_URL; required)",
    )
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        type=str.upper,
        help="least severe level logged (BACKCAST_LOG_LEVEL; default INFO)",
    )
    return parser.parse_args(argv)


def settings(env: Mapping[str, str], args: argparse.Namespace) -> dict[str, str]:
    """`env` with the variables that flags override replaced."""
    merged = dict(env)
    flags = {
        "BACKCAST_GATEWAY_ADDRESS": args.address,
        "BACKCAST_DATABASE_URL": args.database_url,
        "BACKCAST_LOG_LEVEL": args.log_level,
    }
    merged.update({name: value for name, value in flags.items() if value})
    return merged


async def serve(config: GatewayConfig) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully."""
    stop = stop_event_on_signals()
    store = await JobStore.open(
        config.database_url,
        max_size=config.pool_size,
        timeout_seconds=DATABASE_WAIT_SECONDS,
    )
    events = JobEvents(config.database_url)
    try:
        events.start()
        host = await start_gateway(
            store,
            events,
            address=config.address,
            page_token_key=config.page_token_key,
            watch_poll_seconds=config.watch_poll_seconds,
            marketdata_url=config.marketdata_url or config.database_url,
        )
        await stop.wait()
        logger.info("gateway stopping", extra={EVENT: "server_stopping"})
        await stop_gateway(host, events, grace_seconds=config.grace_seconds)
    finally:
        await events.close()
        await store.close()
    logger.info("gateway stopped", extra={EVENT: "server_stopped"})


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = GatewayConfig.from_env(settings(os.environ, args))
    except ConfigError as exc:
        print(f"backcast gateway: {exc}", file=sys.stderr)
        return 2

    telemetry.configure("gateway", config.log_level)
    logger.info(
        "gateway starting",
        extra={
            EVENT: "server_starting",
            "database": redact_url(config.database_url),
        },
    )
    try:
        asyncio.run(serve(config))
    except (AppError, OSError) as exc:
        # The database out of reach, or the address already taken.
        logger.error("gateway failed", exc_info=exc, extra={EVENT: "server_failed"})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
