"""initial serving schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23 14:40:34.848822
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
        "serving_endpoint_permissions",
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("principal", sa.String(length=256), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "resource_id", "principal", name=op.f("pk_serving_endpoint_permissions")
        ),
    )
    op.create_table(
        "serving_endpoints",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("user_id", sa.String(length=256), nullable=False),
        sa.Column("creation_time", sa.BigInteger(), nullable=False),
        sa.Column("last_update_time", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_serving_endpoints")),
    )
    op.create_table(
        "serving_inference_log",
        sa.Column(
            "record_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("endpoint", sa.String(length=63), nullable=False),
        sa.Column("served_model", sa.String(length=200), nullable=False),
        sa.Column("model_version", sa.BigInteger(), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("request_time", sa.BigInteger(), nullable=False),
        sa.Column("latency_ms", sa.Double(), nullable=False),
        sa.Column("inputs_json", sa.Text(), nullable=False),
        sa.Column("outputs_json", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("record_id", name=op.f("pk_serving_inference_log")),
    )
    with op.batch_alter_table("serving_inference_log", schema=None) as batch_op:
        batch_op.create_index(
            "ix_serving_inference_log_endpoint_record", ["endpoint", "record_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("serving_inference_log", schema=None) as batch_op:
        batch_op.drop_index("ix_serving_inference_log_endpoint_record")

    op.drop_table("serving_inference_log")
    op.drop_table("serving_endpoints")
    op.drop_table("serving_endpoint_permissions")
