"""view generations

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07 14:20:00.000000

Existing definitions get generation 0: the online keys they were stored under (no generation in
them), so their rows keep being read after the upgrade.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("feature_definitions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("generation", sa.BigInteger(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("feature_definitions", schema=None) as batch_op:
        batch_op.drop_column("generation")
