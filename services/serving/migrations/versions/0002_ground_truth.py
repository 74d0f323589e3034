"""ground truth for logged requests

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 15:40:00
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
        "serving_ground_truth",
        sa.Column("endpoint", sa.String(length=63), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("value_json", sa.Text(), nullable=False),
        sa.Column("record_time", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("endpoint", "request_id", name=op.f("pk_serving_ground_truth")),
    )


def downgrade() -> None:
    op.drop_table("serving_ground_truth")
