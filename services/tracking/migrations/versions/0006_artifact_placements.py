"""artifact placements: a lease per artifact path while new bytes move into place

Uploads are staged, then moved into place and recorded; the lease orders these steps per path,
so a crash between them, or two uploads of one path, can no longer leave a record that does not
describe the stored bytes (services/tracking/placement.py). An empty table: nothing to copy.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 15:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "artifact_placements",
        sa.Column("run_uuid", sa.String(length=32), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("staged_key", sa.String(length=256), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("file_size", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_uuid"],
            ["runs.run_uuid"],
            name=op.f("fk_artifact_placements_run_uuid_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_uuid", "path", name=op.f("pk_artifact_placements")),
    )


def downgrade() -> None:
    op.drop_table("artifact_placements")
