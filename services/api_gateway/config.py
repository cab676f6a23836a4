"""Gateway settings, read once from `BACKCAST_*` environment variables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from backcast.config import (
    ConfigError,
    read_float,
    read_int,
    read_str,
    require_database_url,
)

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# LIMITATION: every replica must sign and check page tokens with the same
# key, so the default cannot be random per process; it is public, which lets
# anyone forge tokens (only seeking within their own listing, as every page
# re-checks the owner). Set BACKCAST_GATEWAY_PAGE_TOKEN_KEY in production;
# rotation needs a key list (sign with the newest, accept any).
DEV_PAGE_TOKEN_KEY = "backcast-development-page-token-key"
MIN_PAGE_TOKEN_KEY_CHARS = 16


@dataclass(frozen=True)
class GatewayConfig:
    """Everything the gateway process needs; secrets stay out of `repr`."""

    # BACKCAST_GATEWAY_ADDRESS: listen address, host:port; 127.0.0.1:50051.
    address: str
    # BACKCAST_DATABASE_URL (or DATABASE_URL): postgresql:// URL; required.
    database_url: str = field(repr=False)
    # BACKCAST_MARKETDATA_URL: postgresql:// URL of the stored candles that
    # ImportCandles and ListInstruments use; None means database_url.
    marketdata_url: str | None = field(default=None, repr=False)
    # BACKCAST_LOG_LEVEL: one of LOG_LEVELS; INFO.
    log_level: str = "INFO"
    # BACKCAST_GATEWAY_PAGE_TOKEN_KEY: HMAC key of page tokens, at least 16
    # characters, equal on every replica; DEV_PAGE_TOKEN_KEY.
    page_token_key: bytes = field(default=DEV_PAGE_TOKEN_KEY.encode(), repr=False)
    # BACKCAST_GATEWAY_POOL_SIZE: most database connections, 1..100; 10.
    pool_size: int = 10
    # BACKCAST_GATEWAY_WATCH_POLL_SECONDS: how often an open WatchBacktest
    # re-reads its job when no notification came, seconds; 2.
    watch_poll_seconds: float = 2.0
    # BACKCAST_GATEWAY_GRACE_SECONDS: how long unary calls may finish after a
    # stop signal, seconds; 5.
    grace_seconds: float = 5.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> GatewayConfig:
        """The settings in `env`.

        Raises:
            ConfigError: naming the variable that is missing or out of range.
        """
        return cls(
            address=read_str(env, "BACKCAST_GATEWAY_ADDRESS", "127.0.0.1:50051"),
            database_url=require_database_url(env),
            marketdata_url=read_str(env, "BACKCAST_MARKETDATA_URL", "") or None,
            log_level=_read_log_level(env),
            page_token_key=_read_page_token_key(env),
            pool_size=read_int(env, "BACKCAST_GATEWAY_POOL_SIZE", 10, 1, 100),
            watch_poll_seconds=read_float(
                env, "BACKCAST_GATEWAY_WATCH_POLL_SECONDS", 2.0, 0.1, 60.0
            ),
            grace_seconds=read_float(
                env, "BACKCAST_GATEWAY_GRACE_SECONDS", 5.0, 0.0, 300.0
            ),
        )


def _read_log_level(env: Mapping[str, str]) -> str:
    level = read_str(env, "BACKCAST_LOG_LEVEL", "INFO").upper()
    if level not in LOG_LEVELS:
        raise ConfigError(
            f"BACKCAST_LOG_LEVEL={level!r} is not one of {', '.join(LOG_LEVELS)}"
        )
    return level


def _read_page_token_key(env: Mapping[str, str]) -> bytes:
    key = read_str(env, "BACKCAST_GATEWAY_PAGE_TOKEN_KEY", DEV_PAGE_TOKEN_KEY)
    if len(key) < MIN_PAGE_TOKEN_KEY_CHARS:
        raise ConfigError(
            "BACKCAST_GATEWAY_PAGE_TOKEN_KEY is too short; give at least "
            f"{MIN_PAGE_TOKEN_KEY_CHARS} characters"
        )
    return key.encode()
