"""Tables of the feature store: definitions with their history, and materialization runs."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table, Text

from modelyard.services.common.auth.grants import permissions_table

metadata = MetaData(
    naming_convention={"ix": "ix_%(table_name)s_%(column_0_N_name)s", "pk": "pk_%(table_name)s"}
)

_BigId = BigInteger().with_variant(Integer(), "sqlite")

definitions = Table(
    "feature_definitions",
    metadata,
    Column("kind", String(32), primary_key=True),
    Column("name", String(256), primary_key=True),
    Column("version", BigInteger, nullable=False),
    # The definition as its protobuf JSON.
    Column("spec", Text, nullable=False),
    Column("user_id", String(256), nullable=False),
    Column("update_time", BigInteger, nullable=False),
    # A feature view's online rows are keyed by it (online.base.online_name): the version it was
    # (re)created at, so a view created again under a deleted one's name never reads its rows.
    # Rows stored before it existed have 0, their keys' old layout.
    Column("generation", BigInteger, nullable=False, server_default="0"),
)

# Every version ever applied (deleted ones included), for audits and GetDefinition(version=).
definition_history = Table(
    "feature_definition_history",
    metadata,
    Column("kind", String(32), primary_key=True),
    Column("name", String(256), primary_key=True),
    Column("version", BigInteger, primary_key=True),
    Column("spec", Text, nullable=False),
    Column("action", String(16), nullable=False),
    Column("user_id", String(256), nullable=False),
    Column("update_time", BigInteger, nullable=False),
)

materializations = Table(
    "feature_materializations",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("feature_view", String(256), nullable=False),
    Column("start_time", BigInteger, nullable=False),
    Column("end_time", BigInteger, nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("run_time", BigInteger, nullable=False),
    Index("ix_feature_materializations_view_end", "feature_view", "end_time"),
)

# Rows of deleted views that could not be dropped when they were deleted (their store was
# down): dropped at startup and after later applies, then removed. `online_name`: the deleted
# view's (online.base.online_name); `store`: "online" (its online rows) or "offline" (its
# pushed rows).
pending_cleanups = Table(
    "feature_pending_cleanups",
    metadata,
    Column("online_name", String(300), primary_key=True),
    Column("store", String(16), primary_key=True),
    Column("since", BigInteger, nullable=False),
)

# Grants on "feature_view:<name>" and "feature_service:<name>".
feature_permissions = permissions_table(metadata, "feature_permissions")
