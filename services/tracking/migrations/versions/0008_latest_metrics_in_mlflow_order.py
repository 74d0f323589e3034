"""latest metrics carry their run's start time; the order indexes follow MLflow's search order

MLflow orders runs by a metric with numbers first, then NaN, then runs without it, in either
direction, and breaks ties by start time (newest first), then run id. Searching walks these
indexes in exactly the result's order, so NaN moves after the numbers in the DESC index too and
both gain the run's start time (copied here, as the experiment is in 0003: a run never changes
it) ahead of the run id.

A key's latest value becomes MLflow's too: of the values at its highest (step, timestamp), the
highest (NaN counting as its stored 0), the first written of equals. Before, the last written of
them was kept, so those keys are picked again from the history.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 07:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_latest = sa.table(
    "latest_metrics",
    sa.column("experiment_id"),
    sa.column("key"),
    sa.column("is_nan"),
    sa.column("value"),
    sa.column("start_time"),
    sa.column("run_uuid"),
)


def upgrade() -> None:
    op.drop_index("ix_latest_metrics_order_desc", table_name="latest_metrics")
    op.drop_index("ix_latest_metrics_order_asc", table_name="latest_metrics")
    with op.batch_alter_table("latest_metrics", schema=None) as batch_op:
        batch_op.add_column(sa.Column("start_time", sa.BigInteger(), nullable=True))
    op.execute(
        "UPDATE latest_metrics SET start_time = "
        "(SELECT runs.start_time FROM runs WHERE runs.run_uuid = latest_metrics.run_uuid)"
    )
    with op.batch_alter_table("latest_metrics", schema=None) as batch_op:
        batch_op.alter_column("start_time", existing_type=sa.BigInteger(), nullable=False)
    # The history's rows at the latest value's (step, timestamp), in MLflow's order of them.
    tied = (
        "FROM metrics AS m WHERE m.run_uuid = latest_metrics.run_uuid "
        "AND m.key = latest_metrics.key AND m.step = latest_metrics.step "
        "AND m.timestamp = latest_metrics.timestamp"
    )
    op.execute(
        f"UPDATE latest_metrics SET (value, is_nan) = (SELECT m.value, m.is_nan {tied} "
        "ORDER BY m.value DESC, m.id LIMIT 1) "
        f"WHERE EXISTS (SELECT 1 {tied} AND (m.value > latest_metrics.value "
        "OR (m.value = latest_metrics.value AND m.is_nan <> latest_metrics.is_nan)))"
    )
    lm = _latest.c
    for name, value in (("asc", lm.value), ("desc", lm.value.desc())):
        op.create_index(
            f"ix_latest_metrics_order_{name}",
            "latest_metrics",
            [lm.experiment_id, lm.key, lm.is_nan, value, lm.start_time.desc(), lm.run_uuid],
            unique=False,
        )


def downgrade() -> None:
    op.drop_index("ix_latest_metrics_order_desc", table_name="latest_metrics")
    op.drop_index("ix_latest_metrics_order_asc", table_name="latest_metrics")
    with op.batch_alter_table("latest_metrics", schema=None) as batch_op:
        batch_op.drop_column("start_time")
    lm = _latest.c
    op.create_index(
        "ix_latest_metrics_order_asc",
        "latest_metrics",
        [lm.experiment_id, lm.key, lm.is_nan, lm.value, lm.run_uuid],
        unique=False,
    )
    op.create_index(
        "ix_latest_metrics_order_desc",
        "latest_metrics",
        [lm.experiment_id, lm.key, lm.is_nan.desc(), lm.value.desc(), lm.run_uuid],
        unique=False,
    )
