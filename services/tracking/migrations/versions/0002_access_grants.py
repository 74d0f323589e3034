"""access grants

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 14:24:24.913620
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "experiment_permissions",
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("principal", sa.String(length=256), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("resource_id", "principal", name=op.f("pk_experiment_permissions")),
    )


def downgrade() -> None:
    op.drop_table("experiment_permissions")
