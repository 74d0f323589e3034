"""Tables of the auth store."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

_BigId = BigInteger().with_variant(Integer(), "sqlite")

principals = Table(
    "auth_principals",
    metadata,
    Column("name", String(256), primary_key=True),
    Column("kind", String(16), nullable=False),
    # Space-separated role names.
    Column("roles", String(1000), nullable=False),
    Column("disabled", Boolean, nullable=False),
    Column("create_time", BigInteger, nullable=False),
)

tokens = Table(
    "auth_tokens",
    metadata,
    Column("token_id", String(32), primary_key=True),
    Column(
        "principal",
        String(256),
        ForeignKey("auth_principals.name", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("description", String(1000), nullable=False),
    Column("create_time", BigInteger, nullable=False),
    Column("expire_time", BigInteger, nullable=False),
    Column("revoked", Boolean, nullable=False),
    # The token that minted this one for its own principal: revoking it revokes this one.
    Column("parent_token_id", String(32), nullable=True, index=True),
)

audit_events = Table(
    "auth_audit_events",
    metadata,
    Column("event_id", _BigId, primary_key=True, autoincrement=True),
    Column("event_time", BigInteger, nullable=False),
    Column("principal", String(256), nullable=False),
    Column("service", String(200), nullable=False),
    Column("method", String(200), nullable=False),
    Column("resource", String(600), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("request_id", String(128), nullable=False),
    Index("ix_auth_audit_events_principal_event", "principal", "event_id"),
)
