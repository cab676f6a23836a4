"""The migrated schema: it matches the models and migrating twice is harmless."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from psycopg.types.json import Jsonb
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from backcast.db import alembic_config, migrate, sqlalchemy_url
from backcast.db.models import Base
from backcast.engine.results import EquityCurve, TradeTable


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


_OLD_TRADES = [
    {
        "entry_at": "2024-01-01T00:00:00+00:00",
        "exit_at": "2024-01-01T05:00:00+00:00",
        "entry_price": 10.0,
        "exit_price": 11.5,
        "units": -3.0,
        "pnl": -4.5,
        "return_fraction": -0.15,
    },
    {
        "entry_at": "2024-01-02T00:00:00+00:00",
        "exit_at": "2024-01-03T00:00:00+00:00",
        "entry_price": 12.0,
        "exit_price": 13.0,
        "units": 2.0,
        "pnl": 2.0,
        "return_fraction": 1 / 12,
    },
]


def _migrate_to(url: str, revision: str, *, down: bool = False) -> None:
    engine = create_engine(sqlalchemy_url(url), poolclass=NullPool)
    config = alembic_config()
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            step = command.downgrade if down else command.upgrade
            step(config, revision)
    finally:
        engine.dispose()


def _succeeded_job(conn: psycopg.Connection[tuple[Any, ...]]) -> int:
    inserted = conn.execute(
        "INSERT INTO jobs (owner, spec, priority, max_attempts, state) "
        "VALUES ('alice', '{}', 0, 1, 'succeeded') RETURNING id"
    ).fetchone()
    assert inserted is not None
    return int(inserted[0])


def test_trades_stored_as_json_become_records_and_back(database_url: str) -> None:
    _migrate_to(database_url, "0005", down=True)
    with psycopg.connect(database_url, autocommit=True) as conn:
        job_id = _succeeded_job(conn)
        conn.execute(
            "INSERT INTO results (job_id, metrics, trades, equity_curve) "
            "VALUES (%s, '{}', %s, '[]')",
            (job_id, Jsonb(_OLD_TRADES)),
        )

    _migrate_to(database_url, "head")

    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT trade_records FROM results WHERE job_id = %s", (job_id,)
        ).fetchone()
    assert row is not None
    assert TradeTable.from_bytes(row[0]) == TradeTable.from_dicts(_OLD_TRADES)

    _migrate_to(database_url, "0005", down=True)
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT trades FROM results WHERE job_id = %s", (job_id,)
        ).fetchone()
    _migrate_to(database_url, "head")
    assert row == (_OLD_TRADES,)


_OLD_CURVE = [
    ["2024-01-01T01:00:00+00:00", 10_000.0],
    ["2024-01-31T00:00:00+00:00", 10_512.25],
]


def test_equity_curves_stored_as_json_become_points_and_back(
    database_url: str,
) -> None:
    _migrate_to(database_url, "0006", down=True)
    with psycopg.connect(database_url, autocommit=True) as conn:
        job_id = _succeeded_job(conn)
        conn.execute(
            "INSERT INTO results (job_id, metrics, trade_records, equity_curve) "
            "VALUES (%s, '{}', '', %s)",
            (job_id, Jsonb(_OLD_CURVE)),
        )

    _migrate_to(database_url, "head")

    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT equity_points FROM results WHERE job_id = %s", (job_id,)
        ).fetchone()
    assert row is not None
    assert EquityCurve.from_bytes(row[0]) == EquityCurve.from_pairs(_OLD_CURVE)

    _migrate_to(database_url, "0006", down=True)
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT equity_curve FROM results WHERE job_id = %s", (job_id,)
        ).fetchone()
    _migrate_to(database_url, "head")
    assert row == (_OLD_CURVE,)
