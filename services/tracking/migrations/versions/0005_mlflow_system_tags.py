"""runs carry MLflow's system tags: mlflow.runName, mlflow.parentRunId, mlflow.user

Code written for MLflow finds child runs with `tags.mlflow.parentRunId = '<id>'` and reads a
run's name from `tags.mlflow.runName`; runs created from now on get these tags from the service.
This gives the runs that exist already the same tags, from their own fields, and moves two tags
to MLflow's names: a run's description (`modelyard.note.content` -> `mlflow.note.content`) and a
dataset input's context (`context` -> `mlflow.data.context`).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 12:40:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# tag key -> the runs column it copies, and which rows have a value worth a tag
_FROM_COLUMNS = (
    ("mlflow.runName", "name", "name <> ''"),
    ("mlflow.parentRunId", "parent_run_id", "parent_run_id IS NOT NULL"),
    ("mlflow.user", "user_id", "user_id NOT IN ('', 'unknown')"),
)


def upgrade() -> None:
    for key, column, has_value in _FROM_COLUMNS:
        op.execute(
            f"INSERT INTO tags (run_uuid, key, value) SELECT run_uuid, '{key}', {column} "
            f"FROM runs WHERE {has_value} AND NOT EXISTS (SELECT 1 FROM tags AS t "
            f"WHERE t.run_uuid = runs.run_uuid AND t.key = '{key}')"
        )
    op.execute(
        "UPDATE tags SET key = 'mlflow.note.content' WHERE key = 'modelyard.note.content' "
        "AND NOT EXISTS (SELECT 1 FROM tags AS t WHERE t.run_uuid = tags.run_uuid "
        "AND t.key = 'mlflow.note.content')"
    )
    op.execute(
        "UPDATE input_tags SET key = 'mlflow.data.context' WHERE key = 'context' "
        "AND NOT EXISTS (SELECT 1 FROM input_tags AS t WHERE t.input_uuid = input_tags.input_uuid "
        "AND t.key = 'mlflow.data.context')"
    )


def downgrade() -> None:
    """Nothing to undo: to the older schema these are ordinary tags."""
