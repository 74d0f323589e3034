"""latest metrics carry their run's experiment; indexes in search order

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 16:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("latest_metrics", schema=None) as batch_op:
        batch_op.add_column(sa.Column("experiment_id", _BigId, nullable=True))
    op.execute(
        "UPDATE latest_metrics SET experiment_id = "
        "(SELECT runs.experiment_id FROM runs WHERE runs.run_uuid = latest_metrics.run_uuid)"
    )
    with op.batch_alter_table("latest_metrics", schema=None) as batch_op:
        batch_op.alter_column("experiment_id", existing_type=_BigId, nullable=False)
        batch_op.drop_index("ix_latest_metrics_key_value")
    latest = sa.table(
        "latest_metrics",
        sa.column("experiment_id"),
        sa.column("key"),
        sa.column("is_nan"),
        sa.column("value"),
        sa.column("run_uuid"),
    )
    op.create_index(
        "ix_latest_metrics_order_asc",
        "latest_metrics",
        ["experiment_id", "key", "is_nan", "value", "run_uuid"],
        unique=False,
    )
    op.create_index(
        "ix_latest_metrics_order_desc",
        "latest_metrics",
        [
            latest.c.experiment_id,
            latest.c.key,
            latest.c.is_nan.desc(),
            latest.c.value.desc(),
            latest.c.run_uuid,
        ],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_latest_metrics_order_desc", table_name="latest_metrics")
    op.drop_index("ix_latest_metrics_order_asc", table_name="latest_metrics")
    with op.batch_alter_table("latest_metrics", schema=None) as batch_op:
        batch_op.create_index("ix_latest_metrics_key_value", ["key", "value"], unique=False)
        batch_op.drop_column("experiment_id")
