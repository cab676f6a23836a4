"""Reading typed settings from `BACKCAST_*` environment variables.

Each service's `config.py` builds one frozen dataclass with these readers;
nothing else reads the environment. A bad value stops start-up with a
message naming the variable and what it accepts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping


class ConfigError(ValueError):
    """A setting is missing or out of range."""


def read_str(env: Mapping[str, str], name: str, default: str) -> str:
    return env.get(name, default).strip() or default


def read_int(
    env: Mapping[str, str], name: str, default: int, low: int, high: int
) -> int:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is outside [{low}, {high}]")
    return value


def read_float(
    env: Mapping[str, str], name: str, default: float, low: float, high: float
) -> float:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is outside [{low}, {high}]")
    return value


def database_url(env: Mapping[str, str] | None = None) -> str | None:
    """The PostgreSQL URL from `BACKCAST_DATABASE_URL` or `DATABASE_URL`."""
    env = os.environ if env is None else env
    return env.get("BACKCAST_DATABASE_URL") or env.get("DATABASE_URL") or None


def marketdata_url(env: Mapping[str, str] | None = None) -> str | None:
    """The PostgreSQL URL of the candles: `BACKCAST_MARKETDATA_URL`, else the
    job database's."""
    env = os.environ if env is None else env
    return env.get("BACKCAST_MARKETDATA_URL") or database_url(env)


def require_database_url(env: Mapping[str, str] | None = None) -> str:
    url = database_url(env)
    if url is None:
        raise ConfigError(
            "BACKCAST_DATABASE_URL is not set; give a postgresql:// URL "
            "(or run `backcast up`, which starts an embedded PostgreSQL)"
        )
    return url


def redact_url(url: str) -> str:
    """The URL with any password replaced, for logs."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"


def with_flags(
    env: Mapping[str, str], flags: Mapping[str, str], values: object
) -> dict[str, str]:
    """`env` with each command-line flag given in `values` (an argparse
    namespace) set on its variable; `flags` maps attribute to variable."""
    merged = dict(env)
    for attribute, variable in flags.items():
        value = getattr(values, attribute)
        if value is not None:
            merged[variable] = str(value)
    return merged
