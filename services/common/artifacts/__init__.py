"""Artifact storage: one interface, local-directory and S3-compatible backends."""

from modelyard.services.common.artifacts.base import (
    CHUNK_SIZE,
    ArtifactStore,
    PresignedUrl,
    StoredFile,
    clean_path,
    parents,
    path_clash,
)
from modelyard.services.common.artifacts.factory import open_artifact_store

__all__ = [
    "CHUNK_SIZE",
    "ArtifactStore",
    "PresignedUrl",
    "StoredFile",
    "clean_path",
    "open_artifact_store",
    "parents",
    "path_clash",
]
