"""initial tracking schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23 13:56:59.073658
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
        "experiments",
        sa.Column(
            "experiment_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=500), nullable=False),
        sa.Column("artifact_location", sa.String(length=2000), nullable=False),
        sa.Column("lifecycle_stage", sa.String(length=16), nullable=False),
        sa.Column("creation_time", sa.BigInteger(), nullable=False),
        sa.Column("last_update_time", sa.BigInteger(), nullable=False),
        sa.Column("deleted_time", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("experiment_id", name=op.f("pk_experiments")),
        sa.UniqueConstraint("name", name=op.f("uq_experiments_name")),
    )
    op.create_table(
        "datasets",
        sa.Column("dataset_uuid", sa.String(length=32), nullable=False),
        sa.Column(
            "experiment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("name", sa.String(length=500), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("source_type", sa.String(length=64), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("schema", sa.Text(), nullable=False),
        sa.Column("profile", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.experiment_id"],
            name=op.f("fk_datasets_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("dataset_uuid", name=op.f("pk_datasets")),
        sa.UniqueConstraint(
            "experiment_id", "name", "digest", name=op.f("uq_datasets_experiment_id_name_digest")
        ),
    )
    op.create_table(
        "experiment_tags",
        sa.Column(
            "experiment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.experiment_id"],
            name=op.f("fk_experiment_tags_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("experiment_id", "key", name=op.f("pk_experiment_tags")),
    )
    op.create_table(
        "runs",
        sa.Column("run_uuid", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=250), nullable=False),
        sa.Column(
            "experiment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("user_id", sa.String(length=256), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("start_time", sa.BigInteger(), nullable=False),
        sa.Column("end_time", sa.BigInteger(), nullable=True),
        sa.Column("lifecycle_stage", sa.String(length=16), nullable=False),
        sa.Column("artifact_uri", sa.String(length=2000), nullable=False),
        sa.Column("parent_run_id", sa.String(length=32), nullable=True),
        sa.Column("deleted_time", sa.BigInteger(), nullable=True),
        sa.Column("deleted_with_experiment", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.experiment_id"],
            name=op.f("fk_runs_experiment_id_experiments"),
        ),
        sa.PrimaryKeyConstraint("run_uuid", name=op.f("pk_runs")),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_runs_experiment_stage_start",
            ["experiment_id", "lifecycle_stage", "start_time"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_runs_parent_run_id"), ["parent_run_id"], unique=False)

    op.create_table(
        "artifacts",
        sa.Column("run_uuid", sa.String(length=32), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("file_size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_time", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_uuid"],
            ["runs.run_uuid"],
            name=op.f("fk_artifacts_run_uuid_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_uuid", "path", name=op.f("pk_artifacts")),
    )
    op.create_table(
        "inputs",
        sa.Column("input_uuid", sa.String(length=32), nullable=False),
        sa.Column("run_uuid", sa.String(length=32), nullable=False),
        sa.Column("dataset_uuid", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_uuid"],
            ["datasets.dataset_uuid"],
            name=op.f("fk_inputs_dataset_uuid_datasets"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_uuid"],
            ["runs.run_uuid"],
            name=op.f("fk_inputs_run_uuid_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("input_uuid", name=op.f("pk_inputs")),
        sa.UniqueConstraint(
            "run_uuid", "dataset_uuid", name=op.f("uq_inputs_run_uuid_dataset_uuid")
        ),
    )
    op.create_table(
        "latest_metrics",
        sa.Column("run_uuid", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("is_nan", sa.Boolean(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_uuid"],
            ["runs.run_uuid"],
            name=op.f("fk_latest_metrics_run_uuid_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_uuid", "key", name=op.f("pk_latest_metrics")),
    )
    with op.batch_alter_table("latest_metrics", schema=None) as batch_op:
        batch_op.create_index("ix_latest_metrics_key_value", ["key", "value"], unique=False)

    op.create_table(
        "metrics",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("run_uuid", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("is_nan", sa.Boolean(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_uuid"],
            ["runs.run_uuid"],
            name=op.f("fk_metrics_run_uuid_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metrics")),
    )
    with op.batch_alter_table("metrics", schema=None) as batch_op:
        batch_op.create_index(
            "ix_metrics_run_key_step", ["run_uuid", "key", "step", "timestamp"], unique=False
        )

    op.create_table(
        "params",
        sa.Column("run_uuid", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_uuid"],
            ["runs.run_uuid"],
            name=op.f("fk_params_run_uuid_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_uuid", "key", name=op.f("pk_params")),
    )
    with op.batch_alter_table("params", schema=None) as batch_op:
        batch_op.create_index("ix_params_key_value", ["key", "run_uuid"], unique=False)

    op.create_table(
        "tags",
        sa.Column("run_uuid", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_uuid"], ["runs.run_uuid"], name=op.f("fk_tags_run_uuid_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_uuid", "key", name=op.f("pk_tags")),
    )
    with op.batch_alter_table("tags", schema=None) as batch_op:
        batch_op.create_index("ix_tags_key_run", ["key", "run_uuid"], unique=False)

    op.create_table(
        "input_tags",
        sa.Column("input_uuid", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["input_uuid"],
            ["inputs.input_uuid"],
            name=op.f("fk_input_tags_input_uuid_inputs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("input_uuid", "key", name=op.f("pk_input_tags")),
    )


def downgrade() -> None:
    op.drop_table("input_tags")
    with op.batch_alter_table("tags", schema=None) as batch_op:
        batch_op.drop_index("ix_tags_key_run")

    op.drop_table("tags")
    with op.batch_alter_table("params", schema=None) as batch_op:
        batch_op.drop_index("ix_params_key_value")

    op.drop_table("params")
    with op.batch_alter_table("metrics", schema=None) as batch_op:
        batch_op.drop_index("ix_metrics_run_key_step")

    op.drop_table("metrics")
    with op.batch_alter_table("latest_metrics", schema=None) as batch_op:
        batch_op.drop_index("ix_latest_metrics_key_value")

    op.drop_table("latest_metrics")
    op.drop_table("inputs")
    op.drop_table("artifacts")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runs_parent_run_id"))
        batch_op.drop_index("ix_runs_experiment_stage_start")

    op.drop_table("runs")
    op.drop_table("experiment_tags")
    op.drop_table("datasets")
    op.drop_table("experiments")
