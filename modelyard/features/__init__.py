"""The feature store's Python API: Feast-style definitions and the FeatureStoreClient."""

from modelyard.features.client import FeatureStoreClient, OnlineResponse, RetrievalJob
from modelyard.features.definitions import (
    Bool,
    Bytes,
    Entity,
    FeatureService,
    FeatureView,
    FeatureViewProjection,
    Field,
    FileSource,
    Float32,
    Float64,
    Int32,
    Int64,
    SqlSource,
    String,
    UnixTimestamp,
    ValueType,
)

__all__ = [
    "Bool",
    "Bytes",
    "Entity",
    "FeatureService",
    "FeatureStoreClient",
    "FeatureView",
    "FeatureViewProjection",
    "Field",
    "FileSource",
    "Float32",
    "Float64",
    "Int32",
    "Int64",
    "OnlineResponse",
    "RetrievalJob",
    "SqlSource",
    "String",
    "UnixTimestamp",
    "ValueType",
]
