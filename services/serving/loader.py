"""Fetching model versions from the registry into a local cache, and loading them.

The cache is keyed by the sha256 of the version's file digests, so the same bytes are downloaded
once however many endpoints or versions point at them, and a changed file can never be confused
with a cached one. Every load verifies the package's digests before unpickling anything.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from modelyard.client.registry import RegistryClient
from modelyard.errors import FailedPrecondition
from modelyard.features.client import FeatureStoreClient
from modelyard.models.uri import resolve_model_version
from modelyard.pyfunc import load_local
from modelyard.services.serving.features import FeatureJoin
from modelyard.services.serving.model import LoadedModel

_DONE = ".modelyard-complete"


class ModelLoader:
    def __init__(
        self,
        registry: Callable[[], RegistryClient],
        cache_dir: Path,
        features: Callable[[], FeatureStoreClient] | None = None,
    ) -> None:
        self._registry = registry
        self._features = features
        self.cache_dir = cache_dir
        cache_dir.mkdir(parents=True, exist_ok=True)

    def resolve(self, model_uri: str) -> tuple[str, int]:
        return self.resolve_with(self._registry(), model_uri)

    @staticmethod
    def resolve_with(registry: RegistryClient, model_uri: str) -> tuple[str, int]:
        """(name, version) the URI points at now, asking `registry` (and so with its rights)."""
        return resolve_model_version(model_uri, registry)

    def load(self, name: str, version: int) -> LoadedModel:
        registry = self._registry()
        files = registry.list_model_version_artifacts(name, version)
        digest = hashlib.sha256(
            "".join(f"{f.path}\0{f.sha256}\n" for f in sorted(files, key=lambda f: f.path)).encode()
        ).hexdigest()
        target = self.cache_dir / digest
        if not (target / _DONE).exists():
            staging = self.cache_dir / f".{digest}.{uuid.uuid4().hex}"
            try:
                registry.download_model_version(name, version, staging)
                (staging / _DONE).touch()
                if target.exists():
                    shutil.rmtree(target)
                staging.rename(target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        # The completion marker is the cache's, not the package's.
        model = load_local(target, ignore=(_DONE,))
        service = model.metadata.feature_service
        join = None
        if service:
            if self._features is None:
                raise FailedPrecondition(
                    f"model {name} version {version} reads feature service {service!r}, but this "
                    "server has no feature store; set MODELYARD_SERVING__FEATURES_URI"
                )
            join = FeatureJoin.resolve(service, self._features)
        return LoadedModel(name, version, model, join)
