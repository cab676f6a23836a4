"""Alembic environment: runs the Backcast migrations on one connection."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.pool import NullPool

from backcast.db import sqlalchemy_url
from backcast.db.models import Base

# Any fixed number works; it only has to differ from other advisory locks
# taken on the same database.
MIGRATION_LOCK_KEY = 0x6261636B63617374  # "backcast"

target_metadata = Base.metadata


def run_on(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        # Several services may start at once and each migrate; the lock makes
        # the later ones wait, then find the schema current.
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
        )
        context.run_migrations()


def configured_url() -> str:
    url = context.config.get_main_option("sqlalchemy.url")
    if url:
        return url
    env_url = os.environ.get("BACKCAST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if not env_url:
        raise RuntimeError(
            "no database to migrate; set sqlalchemy.url or BACKCAST_DATABASE_URL"
        )
    return sqlalchemy_url(env_url)


def run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return

    engine = create_engine(configured_url(), poolclass=NullPool)
    try:
        with engine.connect() as own_connection:
            run_on(own_connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported")
run_online()
