"""Every service's migrations produce exactly its table definitions, on SQLite and PostgreSQL."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from modelyard import Client
from modelyard.errors import FailedPrecondition
from modelyard.services.apps import SERVICES, migrate_all
from modelyard.services.common.db import Database
from modelyard.services.common.db.migrations import current_revision, head_revision, version_table
from modelyard.services.common.settings import Settings
from tests.conftest import running_server


@pytest.mark.parametrize("service", list(SERVICES))
def test_migrations_match_models(database_url: str, service: str) -> None:
    app = importlib.import_module(SERVICES[service])
    db = Database(database_url)
    try:
        app.migrate(db)
        app.migrate(db)  # idempotent
        assert current_revision(db, service) == head_revision(app.MIGRATIONS)
        schema = importlib.import_module(SERVICES[service].rsplit(".", 1)[0] + ".store.schema")
        with db.engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn,
                opts={
                    "version_table": version_table(service),
                    "compare_type": True,
                    "include_object": _built_on(conn.dialect.name),
                },
            )
            diff = compare_metadata(ctx, schema.metadata)
        assert diff == [], f"{service}: tables differ from migrations: {diff}"
    finally:
        db.dispose()


def _built_on(dialect: str) -> Callable[..., bool]:
    """Alembic's comparison leaves out an index the schema builds on other dialects only
    (`Index.ddl_if(dialect=...)`); alembic itself does not read that condition."""

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        condition = getattr(obj, "_ddl_if", None) if type_ == "index" and not reflected else None
        return condition is None or condition.dialect in (None, dialect)

    return include


# Columns that range queries treat as paths ('dir/' to 'dir0'), which hold only byte by byte.
_PATH_COLUMNS = {
    "tracking": [("artifacts", "path"), ("artifact_placements", "path")],
    "registry": [("model_version_files", "path")],
}


@pytest.mark.postgres
@pytest.mark.parametrize("service", list(_PATH_COLUMNS))
def test_path_columns_compare_bytewise_on_postgresql(postgres_url: str, service: str) -> None:
    """Alembic's comparison does not see a column's collation: checked here, as migrated."""
    app = importlib.import_module(SERVICES[service])
    db = Database(postgres_url)
    try:
        app.migrate(db)
        with db.engine.connect() as conn:
            for table, column in _PATH_COLUMNS[service]:
                collation = conn.exec_driver_sql(
                    "SELECT collation_name FROM information_schema.columns WHERE "
                    f"table_schema = current_schema() AND table_name = '{table}' "
                    f"AND column_name = '{column}'"
                ).scalar_one()
                assert collation == "C", f"{table}.{column}"
    finally:
        db.dispose()


def _not_migrating(database_url: str, tmp_path: Path) -> Settings:
    """A server as the chart runs it: the migrations Job migrates, the services do not."""
    return Settings(
        home=tmp_path / "home",
        port=0,
        grace_period=0,
        backend_store_uri=database_url,
        migrate_on_start=False,
    )


def test_a_server_that_does_not_migrate_says_what_to_run_on_an_unmigrated_database(
    database_url: str, tmp_path: Path
) -> None:
    """In the Helm chart the migrations hook Job migrates and the services do not
    (MODELYARD_MIGRATE_ON_START=false). Started on tables the Job has not migrated (it was
    skipped, `--no-hooks`, or applied alongside by a GitOps tool), a service stopped at start
    with a bare SQL error (relation "experiments" does not exist) or served on old tables."""
    settings = _not_migrating(database_url, tmp_path)
    for service in SERVICES:
        with (
            pytest.raises(FailedPrecondition, match=r"modelyard db upgrade") as refused,
            running_server(settings, (service,)),
        ):
            pass
        assert f"the {service} tables are at migration none" in refused.value.message
    migrate_all(settings)  # `modelyard db upgrade`, as the Job runs it
    with running_server(settings, tuple(SERVICES)) as server, Client(server.address) as client:
        assert client.create_experiment("migrated")


def test_a_server_rolled_back_serves_on_tables_a_newer_release_migrated(
    database_url: str, tmp_path: Path
) -> None:
    """`helm rollback` after an upgrade that migrated: newer tables only add to older ones."""
    settings = _not_migrating(database_url, tmp_path)
    migrate_all(settings)
    db = Database(database_url)
    try:
        with db.engine.begin() as conn:
            conn.execute(text(f"UPDATE {version_table('tracking')} SET version_num = '9999'"))
    finally:
        db.dispose()
    with running_server(settings, ("tracking",)) as server, Client(server.address) as client:
        assert client.create_experiment("after-rollback")
