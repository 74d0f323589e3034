"""registered model grants by principal

A search by a caller who may read only some models selects that caller's grants inside the
query (Visibility); without an index on the principal, that read every grant of every model.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 11:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_registered_model_permissions_principal",
        "registered_model_permissions",
        ["principal", "level", "resource_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        "ix_registered_model_permissions_principal", table_name="registered_model_permissions"
    )
