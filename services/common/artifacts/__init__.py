"""Artifact storage: one interface, local-directory and S3-compatible backends."""

from modelyard.services.common.artifacts.base import (
    CHUNK_SIZE,
    STAGING_DIR,
    ArtifactStore,
    PathClash,
    PresignedUrl,
    StagedFile,
    StoredFile,
    clean_path,
    is_staged_upload,
    is_staging,
    parents,
    staged_upload_key,
)
from modelyard.services.common.artifacts.factory import open_artifact_store

__all__ = [
    "CHUNK_SIZE",
    "STAGING_DIR",
    "ArtifactStore",
    "PathClash",
    "PresignedUrl",
    "StagedFile",
    "StoredFile",
    "clean_path",
    "is_staged_upload",
    "is_staging",
    "open_artifact_store",
    "parents",
    "staged_upload_key",
]
