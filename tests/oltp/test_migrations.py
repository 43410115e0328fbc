import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from workbench.oltp.db import downgrade, make_engine, migrate
from workbench.oltp.models import Base

TABLES = {"organisations", "connections", "batches", "job_runs", "events", "config_versions",
          "rule_evaluations", "rule_states", "alerts", "notifications", "inbox_messages", "action_requests",
          "platform_writes", "users", "memberships", "api_tokens", "audit_events", "usage_records",
          "job_locks", "event_cursors", "backfills",
          "alembic_version"}
PREVIOUS_RELEASE = "0004"  # the schema of the last release before the connectors and the control plane


def _check(url: str) -> None:
    engine = make_engine(url)
    migrate(engine)
    migrate(engine)  # idempotent
    assert TABLES <= set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations differ: {diff}"
    downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate(engine)
    assert TABLES <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_migrations_on_sqlite(tmp_path):
    _check(f"sqlite:///{tmp_path / 'w.db'}")


@pytest.mark.postgres
def test_migrations_on_postgres(pg_url):
    _check(pg_url)


def _upgrade_from_previous_release(url: str) -> None:
    """A database at the previous release's schema, with rows in it, upgrades to head keeping them."""
    engine = make_engine(url)
    migrate(engine, PREVIOUS_RELEASE)
    assert "users" not in inspect(engine).get_table_names()
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO organisations (id, name, currency, timezone, created_at) "
                          "VALUES ('acme', 'Acme', 'USD', 'UTC', CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO config_versions (org_id, kind, name, version, body, author, comment, "
                          "created_at) VALUES ('acme', 'metric', 'fee', 1, '{\"formula\": \"spend * 1.1\"}', "
                          "'ana', '', CURRENT_TIMESTAMP)"))
    migrate(engine)
    assert TABLES <= set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id, plan FROM organisations")).all() == [("acme", "standard")]
        assert conn.execute(text("SELECT name, version FROM config_versions")).all() == [("fee", 1)]
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations differ: {diff}"
    engine.dispose()


def test_upgrade_from_the_previous_release_on_sqlite(tmp_path):
    _upgrade_from_previous_release(f"sqlite:///{tmp_path / 'w.db'}")


@pytest.mark.postgres
def test_upgrade_from_the_previous_release_on_postgres(pg_url):
    _upgrade_from_previous_release(pg_url)
