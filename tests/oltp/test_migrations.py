import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from workbench.oltp.db import downgrade, make_engine, migrate
from workbench.oltp.models import Base

TABLES = {"organisations", "connections", "batches", "job_runs", "events", "config_versions",
          "rule_evaluations", "rule_states", "alerts", "notifications", "inbox_messages", "action_requests",
          "alembic_version"}


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
