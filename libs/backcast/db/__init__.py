"""The database schema of Backcast and the way to bring a database up to it.

`migrate(url)` applies every Alembic migration shipped in this package; the
services and the tests call it before they touch the job tables.
"""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from backcast.config import redact_url

logger = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
ALEMBIC_INI = PACKAGE_DIR / "alembic.ini"
MIGRATIONS_DIR = PACKAGE_DIR / "migrations"

_LIBPQ_SCHEMES = ("postgresql://", "postgres://")


def sqlalchemy_url(url: str) -> str:
    """The `postgresql+psycopg://` form of a libpq URL, for SQLAlchemy.

    A URL that already names a driver (`postgresql+asyncpg://`) is returned
    unchanged; anything that is not a PostgreSQL URL raises ValueError.
    """
    for scheme in _LIBPQ_SCHEMES:
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    if url.startswith("postgresql+"):
        return url
    raise ValueError(f'"{redact_url(url)}" is not a postgresql:// URL')


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config that finds the migrations through the package path.

    It works from an installed wheel and from any working directory. `url`
    (a libpq URL) becomes `sqlalchemy.url` when given.
    """
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser treats "%" as interpolation; URL escapes contain it.
        config.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    return config


def migrate(url: str) -> None:
    """Apply every pending migration to the database at `url` (libpq form).

    Safe to run from several processes at once: the migration environment
    serialises them on an advisory lock, and a migrated database is left as
    it is.
    """
    # psycopg parses the URL itself, so every form libpq accepts (unix
    # sockets as `?host=/path`, service files) works here too.
    engine = create_engine(
        "postgresql+psycopg://",
        creator=lambda: psycopg.connect(url),
        poolclass=NullPool,
    )
    config = alembic_config()
    try:
        with engine.connect() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()
    logger.info(
        "database migrated",
        extra={"event": "database_migrated", "database": redact_url(url)},
    )


__all__ = ["alembic_config", "migrate", "sqlalchemy_url"]
