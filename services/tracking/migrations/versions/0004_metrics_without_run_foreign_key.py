"""metric history rows no longer carry a foreign key to their run

The foreign key made PostgreSQL run a referential-integrity trigger, a row lock on the run, for
every history row written: a third of a 1000-metric LogBatch. The hot path now locks each run
once per write (FOR KEY SHARE, what the trigger took per row) after checking it is active, and
runs are never deleted by the service, so the history keeps the same guarantee.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 21:10:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("metrics", schema=None) as batch_op:
        batch_op.drop_constraint("fk_metrics_run_uuid_runs", type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("metrics", schema=None) as batch_op:
        batch_op.create_foreign_key(
            "fk_metrics_run_uuid_runs", "runs", ["run_uuid"], ["run_uuid"], ondelete="CASCADE"
        )
