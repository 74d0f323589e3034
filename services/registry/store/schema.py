"""Tables of the registry store (SQLAlchemy Core; rows never leave store/).

Models are keyed by an immutable id, so renaming a model moves no rows and no files.
`next_version` on the model row is the version counter: bumping it is a row update, which
serializes concurrent registrations of the same model on every backend.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from modelyard.services.common.auth.grants import permissions_table
from modelyard.services.common.db.types import bytewise

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

_BigId = BigInteger().with_variant(Integer(), "sqlite")

registered_models = Table(
    "registered_models",
    metadata,
    Column("model_id", String(32), primary_key=True),
    Column("name", String(256), nullable=False, unique=True),
    Column("description", Text, nullable=False),
    Column("user_id", String(256), nullable=False),
    Column("next_version", BigInteger, nullable=False),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_update_time", BigInteger, nullable=False),
)

registered_model_tags = Table(
    "registered_model_tags",
    metadata,
    Column(
        "model_id",
        String(32),
        ForeignKey("registered_models.model_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column(
        "model_id",
        String(32),
        ForeignKey("registered_models.model_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("version", BigInteger, primary_key=True),
    Column("description", Text, nullable=False),
    Column("source", String(2000), nullable=False),
    Column("run_id", String(32), nullable=False, index=True),
    Column("status", String(32), nullable=False),
    Column("status_message", Text, nullable=False),
    Column("current_stage", String(20), nullable=False),
    Column("storage_location", String(2000), nullable=False),
    Column("user_id", String(256), nullable=False),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_update_time", BigInteger, nullable=False),
    Column("run_link", Text, nullable=False, server_default=""),
    Index("ix_model_versions_status", "status"),
)

_version_fk = ForeignKeyConstraint(
    ["model_id", "version"],
    ["model_versions.model_id", "model_versions.version"],
    ondelete="CASCADE",
)

model_version_tags = Table(
    "model_version_tags",
    metadata,
    Column("model_id", String(32), primary_key=True),
    Column("version", BigInteger, primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
    _version_fk,
)

model_aliases = Table(
    "model_aliases",
    metadata,
    Column(
        "model_id",
        String(32),
        ForeignKey("registered_models.model_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("alias", String(255), primary_key=True),
    Column("version", BigInteger, nullable=False),
)

# The files of each version in registry-owned storage, with their digests.
model_version_files = Table(
    "model_version_files",
    metadata,
    Column("model_id", String(32), primary_key=True),
    Column("version", BigInteger, primary_key=True),
    Column("path", bytewise(1024), primary_key=True),
    Column("file_size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    ForeignKeyConstraint(
        ["model_id", "version"],
        ["model_versions.model_id", "model_versions.version"],
        ondelete="CASCADE",
    ),
)

# Append-only history; outlives deleted models so audits can still read it.
model_events = Table(
    "model_events",
    metadata,
    Column("event_id", _BigId, primary_key=True, autoincrement=True),
    Column("model_id", String(32), nullable=False),
    Column("model_name", String(256), nullable=False),
    Column("version", BigInteger, nullable=True),
    Column("event_type", String(32), nullable=False),
    Column("details", Text, nullable=False),
    Column("user_id", String(256), nullable=False),
    Column("event_time", BigInteger, nullable=False),
    Index("ix_model_events_name_id", "model_name", "event_id"),
    Index("ix_model_events_model_id_id", "model_id", "event_id"),
)

# Grants on registered models (keyed by model id, so they survive renames). Searches of a caller
# who may read only some models select its grants (Visibility) through the principal index.
registered_model_permissions = permissions_table(metadata, "registered_model_permissions")
Index(
    "ix_registered_model_permissions_principal",
    registered_model_permissions.c.principal,
    registered_model_permissions.c.level,
    registered_model_permissions.c.resource_id,
)
