"""initial auth schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23 14:24:24.819880
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "auth_audit_events",
        sa.Column(
            "event_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_time", sa.BigInteger(), nullable=False),
        sa.Column("principal", sa.String(length=256), nullable=False),
        sa.Column("service", sa.String(length=200), nullable=False),
        sa.Column("method", sa.String(length=200), nullable=False),
        sa.Column("resource", sa.String(length=600), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_auth_audit_events")),
    )
    with op.batch_alter_table("auth_audit_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_auth_audit_events_principal_event", ["principal", "event_id"], unique=False
        )

    op.create_table(
        "auth_principals",
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("roles", sa.String(length=1000), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("create_time", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_auth_principals")),
    )
    op.create_table(
        "auth_tokens",
        sa.Column("token_id", sa.String(length=32), nullable=False),
        sa.Column("principal", sa.String(length=256), nullable=False),
        sa.Column("description", sa.String(length=1000), nullable=False),
        sa.Column("create_time", sa.BigInteger(), nullable=False),
        sa.Column("expire_time", sa.BigInteger(), nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["principal"],
            ["auth_principals.name"],
            name=op.f("fk_auth_tokens_principal_auth_principals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_id", name=op.f("pk_auth_tokens")),
    )
    with op.batch_alter_table("auth_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_auth_tokens_principal"), ["principal"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("auth_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auth_tokens_principal"))

    op.drop_table("auth_tokens")
    op.drop_table("auth_principals")
    with op.batch_alter_table("auth_audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_auth_audit_events_principal_event")

    op.drop_table("auth_audit_events")
