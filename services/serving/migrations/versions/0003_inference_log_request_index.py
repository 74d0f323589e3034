"""inference log looked up by request id (ground truth for logged requests only)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 14:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("serving_inference_log", schema=None) as batch_op:
        batch_op.create_index(
            "ix_serving_inference_log_endpoint_request", ["endpoint", "request_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("serving_inference_log", schema=None) as batch_op:
        batch_op.drop_index("ix_serving_inference_log_endpoint_request")
