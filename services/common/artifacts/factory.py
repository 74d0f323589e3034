"""Pick the artifact backend from the root URI's scheme."""

from __future__ import annotations

from urllib.parse import urlparse

from modelyard.errors import InvalidArgument
from modelyard.services.common.artifacts.base import ArtifactStore
from modelyard.services.common.settings import S3Settings


def open_artifact_store(root_uri: str, s3: S3Settings | None = None) -> ArtifactStore:
    scheme = urlparse(root_uri).scheme
    if scheme == "file":
        from modelyard.services.common.artifacts.local import LocalArtifactStore

        return LocalArtifactStore(root_uri)
    if scheme == "s3":
        from modelyard.services.common.artifacts.s3 import S3ArtifactStore

        return S3ArtifactStore(root_uri, s3 or S3Settings())
    raise InvalidArgument(
        f"unsupported artifact root {root_uri!r}; use file:///absolute/path or s3://bucket/prefix",
        field="artifact_uri",
    )
