"""token parents: the token that minted a token for its own principal

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 23:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("auth_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parent_token_id", sa.String(length=32), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_auth_tokens_parent_token_id"), ["parent_token_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("auth_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auth_tokens_parent_token_id"))
        batch_op.drop_column("parent_token_id")
