"""pending cleanups

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 15:40:00.000000

A deleted view's rows that could not be dropped (its online store or artifact store was down),
kept to be dropped later rather than only logged.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "feature_pending_cleanups",
        sa.Column("online_name", sa.String(length=300), nullable=False),
        sa.Column("store", sa.String(length=16), nullable=False),
        sa.Column("since", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("online_name", "store", name=op.f("pk_feature_pending_cleanups")),
    )


def downgrade() -> None:
    op.drop_table("feature_pending_cleanups")
