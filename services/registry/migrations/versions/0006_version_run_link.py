"""model version run_link

MlflowClient.create_model_version takes a run_link (a link to the run that produced the model);
it is kept with the version and returned by reads, as MLflow does.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 15:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("run_link", sa.Text(), server_default="", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_column("run_link")
