"""The migrated schema: it matches the models and migrating twice is harmless."""

from __future__ import annotations

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from backcast.db import alembic_config, migrate, sqlalchemy_url
from backcast.db.models import Base


def test_models_match_the_migrated_schema(database_url: str) -> None:
    engine = create_engine(sqlalchemy_url(database_url), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection)
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()

    assert differences == []


def test_migrating_a_migrated_database_changes_nothing(database_url: str) -> None:
    migrate(database_url)

    with psycopg.connect(database_url) as conn:
        versions = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert versions == [(head,)]


def test_state_outside_the_life_cycle_is_rejected(database_url: str) -> None:
    with (
        psycopg.connect(database_url) as conn,
        pytest.raises(psycopg.errors.CheckViolation),
    ):
        conn.execute(
            "INSERT INTO jobs (owner, spec, max_attempts, state) "
            "VALUES ('alice', '{}', 1, 'paused')"
        )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u@h:5432/db", "postgresql+psycopg://u@h:5432/db"),
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        (
            "postgresql://postgres:@/postgres?host=/tmp/x",
            "postgresql+psycopg://postgres:@/postgres?host=/tmp/x",
        ),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
    ],
)
def test_sqlalchemy_url_names_the_psycopg_driver(url: str, expected: str) -> None:
    assert sqlalchemy_url(url) == expected


def test_sqlalchemy_url_refuses_other_databases() -> None:
    with pytest.raises(ValueError, match="not a postgresql"):
        sqlalchemy_url("mysql://u:secret@h/db")
