"""experiment grants by principal

A search by a caller who may read only some experiments selects that caller's grants inside the
query (Visibility); without an index on the principal, that read every grant of every experiment.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 11:50:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_experiment_permissions_principal",
        "experiment_permissions",
        ["principal", "level", "resource_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_experiment_permissions_principal", table_name="experiment_permissions")
