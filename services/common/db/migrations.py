"""Alembic, driven from code: each service keeps its own migration scripts and version table.

Services never share tables, so each has `services/<svc>/migrations/` and records its revision in
`alembic_version_<svc>`; they can live in one database (laptop) or in separate ones (cluster).
"""

from __future__ import annotations

import zlib
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, text

from modelyard.errors import FailedPrecondition
from modelyard.services.common.db.engine import Database
from modelyard.services.common.logging import get_logger

log = get_logger(__name__)


def _config(db: Database, service: str, script_location: Path) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.attributes["service"] = service
    return cfg


def upgrade(db: Database, service: str, script_location: Path, revision: str = "head") -> None:
    """Bring the service's tables to `revision`; concurrent callers on PostgreSQL queue up."""
    cfg = _config(db, service, script_location)
    with db.engine.begin() as conn:
        if not db.is_sqlite:
            # Two replicas starting together must not both run the same migration.
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key(service)})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def prepare(db: Database, service: str, script_location: Path, migrate: bool) -> None:
    """Migrate at start, or, where migrating is another step's job (`modelyard db upgrade`, the
    Helm chart's migrations hook Job), check that it ran: a server on tables it does not know
    fails later, on every call or with a bare SQL error at start, without saying what to run."""
    if migrate:
        upgrade(db, service, script_location)
        return
    current = current_revision(db, service)
    head = head_revision(script_location)
    if current == head:
        return
    known = {s.revision for s in _scripts(script_location).walk_revisions()}
    if current is not None and current not in known:
        # A newer release migrated (a rollback): newer schemas only add to older ones.
        log.warning(
            "the %s tables are at migration %s, newer than this server's %s; serving on them",
            service,
            current,
            head,
        )
        return
    raise FailedPrecondition(
        f"the {service} tables are at migration {current or 'none (an empty database)'}, and "
        f"this server needs {head}: run `modelyard db upgrade` against this database (in the "
        "Helm chart, the migrations Job does before every install and upgrade; see its logs), "
        "or set MODELYARD_MIGRATE_ON_START=true",
        resource_type="database schema",
        resource_name=service,
    )


def current_revision(db: Database, service: str) -> str | None:
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": version_table(service)})
        return ctx.get_current_revision()


def _scripts(script_location: Path) -> ScriptDirectory:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    return ScriptDirectory.from_config(cfg)


def head_revision(script_location: Path) -> str | None:
    return _scripts(script_location).get_current_head()


def version_table(service: str) -> str:
    return f"alembic_version_{service}"


def _lock_key(service: str) -> int:
    return zlib.crc32(f"modelyard-migrate-{service}".encode())


def run_env(target_metadata: MetaData) -> None:
    """The body of every service's migrations/env.py."""
    cfg = context.config
    connection = cfg.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=version_table(cfg.attributes["service"]),
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
