"""Tables of the tracking store (SQLAlchemy Core; rows never leave store/).

Core rather than ORM: the hot paths (log_metric, log_batch, search_runs) are a few statements
each, and Core keeps them free of unit-of-work overhead. `latest_metrics` holds the newest value
of every metric of every run, so searching and ordering by a metric never scans the history.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from modelyard.services.common.auth.grants import permissions_table
from modelyard.services.common.db.types import bytewise

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# BIGINT autoincrement on PostgreSQL, INTEGER PRIMARY KEY (the rowid) on SQLite.
_BigId = BigInteger().with_variant(Integer(), "sqlite")


experiments = Table(
    "experiments",
    metadata,
    Column("experiment_id", _BigId, primary_key=True, autoincrement=True),
    Column("name", String(500), nullable=False, unique=True),
    Column("artifact_location", String(2000), nullable=False),
    Column("lifecycle_stage", String(16), nullable=False),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_update_time", BigInteger, nullable=False),
    Column("deleted_time", BigInteger, nullable=True),
)

experiment_tags = Table(
    "experiment_tags",
    metadata,
    Column(
        "experiment_id",
        _BigId,
        ForeignKey("experiments.experiment_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("run_uuid", String(32), primary_key=True),
    Column("name", String(250), nullable=False),
    Column("experiment_id", _BigId, ForeignKey("experiments.experiment_id"), nullable=False),
    Column("user_id", String(256), nullable=False),
    Column("status", String(16), nullable=False),
    Column("start_time", BigInteger, nullable=False),
    Column("end_time", BigInteger, nullable=True),
    Column("lifecycle_stage", String(16), nullable=False),
    Column("artifact_uri", String(2000), nullable=False),
    Column("parent_run_id", String(32), nullable=True, index=True),
    Column("deleted_time", BigInteger, nullable=True),
    # Set when the run was deleted by deleting its experiment, so restoring the experiment
    # brings back exactly those runs.
    Column("deleted_with_experiment", Boolean, nullable=False, default=False),
    Index("ix_runs_experiment_stage_start", "experiment_id", "lifecycle_stage", "start_time"),
)

params = Table(
    "params",
    metadata,
    Column(
        "run_uuid", String(32), ForeignKey("runs.run_uuid", ondelete="CASCADE"), primary_key=True
    ),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
    Index("ix_params_key_value", "key", "run_uuid"),
)

tags = Table(
    "tags",
    metadata,
    Column(
        "run_uuid", String(32), ForeignKey("runs.run_uuid", ondelete="CASCADE"), primary_key=True
    ),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
    Index("ix_tags_key_run", "key", "run_uuid"),
)

# The history, read per (run, key) in (step, timestamp, id) order. On SQLite `id` is the
# primary key (the rowid, numbering rows as written) and the order has an index of its own; on
# PostgreSQL the primary key is that order itself, (run_uuid, key, step, timestamp, id), and run
# ids and keys compare bytewise, so each write keeps up one index, without strcoll (migration
# 0007).
metrics = Table(
    "metrics",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    # No foreign key: a per-row trigger on PostgreSQL; the hot path (store/hot.py) checks and
    # locks each run once per write instead (migration 0004).
    Column("run_uuid", bytewise(32), nullable=False),
    Column("key", bytewise(250), nullable=False),
    # NaN cannot be stored portably (SQLite turns it into NULL): value 0 + is_nan marks it.
    Column("value", Double, nullable=False),
    Column("is_nan", Boolean, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("step", BigInteger, nullable=False),
)
Index(
    "ix_metrics_run_key_step",
    metrics.c.run_uuid,
    metrics.c.key,
    metrics.c.step,
    metrics.c.timestamp,
).ddl_if(dialect="sqlite")

latest_metrics = Table(
    "latest_metrics",
    metadata,
    Column(
        "run_uuid", String(32), ForeignKey("runs.run_uuid", ondelete="CASCADE"), primary_key=True
    ),
    Column("key", String(250), primary_key=True),
    Column("value", Double, nullable=False),
    Column("is_nan", Boolean, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("step", BigInteger, nullable=False),
    # The run's experiment and start time (a run changes neither), so that ordering an
    # experiment's runs by a metric reads only that experiment's values, in the result's order.
    Column("experiment_id", _BigId, nullable=False),
    Column("start_time", BigInteger, nullable=False),
)
# Searching runs ordered by a metric walks one of these in exactly the order of the result,
# MLflow's (numbers, then NaN, in either direction; ties by start time, newest first, then run
# id), so a page stops after its last run instead of sorting every match.
Index(
    "ix_latest_metrics_order_asc",
    latest_metrics.c.experiment_id,
    latest_metrics.c.key,
    latest_metrics.c.is_nan,
    latest_metrics.c.value,
    latest_metrics.c.start_time.desc(),
    latest_metrics.c.run_uuid,
)
Index(
    "ix_latest_metrics_order_desc",
    latest_metrics.c.experiment_id,
    latest_metrics.c.key,
    latest_metrics.c.is_nan,
    latest_metrics.c.value.desc(),
    latest_metrics.c.start_time.desc(),
    latest_metrics.c.run_uuid,
)

datasets = Table(
    "datasets",
    metadata,
    Column("dataset_uuid", String(32), primary_key=True),
    Column(
        "experiment_id",
        _BigId,
        ForeignKey("experiments.experiment_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("name", String(500), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("source_type", String(64), nullable=False),
    Column("source", Text, nullable=False),
    Column("schema", Text, nullable=False),
    Column("profile", Text, nullable=False),
    UniqueConstraint("experiment_id", "name", "digest"),
)

inputs = Table(
    "inputs",
    metadata,
    Column("input_uuid", String(32), primary_key=True),
    Column("run_uuid", String(32), ForeignKey("runs.run_uuid", ondelete="CASCADE"), nullable=False),
    Column(
        "dataset_uuid",
        String(32),
        ForeignKey("datasets.dataset_uuid", ondelete="CASCADE"),
        nullable=False,
    ),
    UniqueConstraint("run_uuid", "dataset_uuid"),
)

input_tags = Table(
    "input_tags",
    metadata,
    Column(
        "input_uuid",
        String(32),
        ForeignKey("inputs.input_uuid", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
)

# The index of a run's artifact files: what exists, its size and digest. Bytes live in the
# artifact store; a file becomes visible only once recorded here, after its bytes are stored.
artifacts = Table(
    "artifacts",
    metadata,
    Column(
        "run_uuid", String(32), ForeignKey("runs.run_uuid", ondelete="CASCADE"), primary_key=True
    ),
    Column("path", bytewise(1024), primary_key=True),
    Column("file_size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("created_time", BigInteger, nullable=False),
)

# Leases on artifact paths whose new bytes are being moved into place (one per path at a time):
# taken before the move, deleted in the transaction that records the file. A lease left by a
# crash names its staged bytes, so whoever finds it expired finishes the placement
# (services/tracking/placement.py). A lease with an empty staged_key and sha256 is a delete's,
# held while the bytes of a path whose record it forgot are deleted.
artifact_placements = Table(
    "artifact_placements",
    metadata,
    Column(
        "run_uuid", String(32), ForeignKey("runs.run_uuid", ondelete="CASCADE"), primary_key=True
    ),
    Column("path", bytewise(1024), primary_key=True),
    Column("staged_key", String(256), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("file_size", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),  # ms since the epoch
)

# Grants on experiments (and through them, on their runs). Searches of a caller who may read
# only some experiments select its grants (Visibility) through the principal index.
experiment_permissions = permissions_table(metadata, "experiment_permissions")
Index(
    "ix_experiment_permissions_principal",
    experiment_permissions.c.principal,
    experiment_permissions.c.level,
    experiment_permissions.c.resource_id,
)
