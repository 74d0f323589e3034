"""model events by model id

A model's history is read by its id (its events before and after renames), not by the name each
event was recorded under.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 23:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_model_events_model_id_id", "model_events", ["model_id", "event_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_model_events_model_id_id", table_name="model_events")
