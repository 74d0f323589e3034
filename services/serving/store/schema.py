"""Tables of the serving store: endpoint specs, their grants, and the inference log."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from modelyard.services.common.auth.grants import permissions_table

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

_BigId = BigInteger().with_variant(Integer(), "sqlite")

endpoints = Table(
    "serving_endpoints",
    metadata,
    Column("name", String(63), primary_key=True),
    # The endpoint as declared (served models, traffic, batching, log settings), as JSON.
    Column("spec", Text, nullable=False),
    Column("user_id", String(256), nullable=False),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_update_time", BigInteger, nullable=False),
)

endpoint_permissions = permissions_table(metadata, "serving_endpoint_permissions")

inference_log = Table(
    "serving_inference_log",
    metadata,
    Column("record_id", _BigId, primary_key=True, autoincrement=True),
    Column("endpoint", String(63), nullable=False),
    Column("served_model", String(200), nullable=False),
    Column("model_version", BigInteger, nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("request_time", BigInteger, nullable=False),
    Column("latency_ms", Double, nullable=False),
    Column("inputs_json", Text, nullable=False),
    Column("outputs_json", Text, nullable=False),
    Column("status", String(32), nullable=False),
    Index("ix_serving_inference_log_endpoint_record", "endpoint", "record_id"),
    # Ground truth is accepted only for logged request ids: one lookup per LogGroundTruth.
    Index("ix_serving_inference_log_endpoint_request", "endpoint", "request_id"),
)

# Outcomes for logged requests, by request id (the latest logged value wins).
ground_truth = Table(
    "serving_ground_truth",
    metadata,
    Column("endpoint", String(63), nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("value_json", Text, nullable=False),
    Column("record_time", BigInteger, nullable=False),
    PrimaryKeyConstraint("endpoint", "request_id"),
)
