"""Fetching model versions from the registry into a local cache, and loading them.

The cache is keyed by the sha256 of the version's file digests, so the same bytes are downloaded
once however many endpoints or versions point at them, and a changed file can never be confused
with a cached one. Every load verifies the package's digests before unpickling anything.

Loads of one version may run at once, in threads here and in other replicas sharing the cache
directory. One of them fills the entry (under a lock held across both) into a staging copy and
publishes it with one rename; a published entry is complete and is never replaced or deleted,
so a load reading it cannot be broken by another. The one exception is an entry whose files no
longer match their digests (a damaged disk, a hand edit): nothing can read it, the registry's
copy is the truth, so it is moved aside and downloaded again, once per load.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from modelyard.client.registry import RegistryClient
from modelyard.entities.common import FileInfo
from modelyard.errors import FailedPrecondition, Internal, ModelyardError
from modelyard.features.client import FeatureStoreClient
from modelyard.models.package import verify
from modelyard.models.uri import resolve_model_version
from modelyard.pyfunc import load_local
from modelyard.services.common.logging import get_logger
from modelyard.services.serving.features import FeatureJoin
from modelyard.services.serving.model import LoadedModel

try:
    import fcntl
except ImportError:  # Windows: loads in one process still take turns; replicas are POSIX pods
    fcntl = None  # type: ignore[assignment]

log = get_logger(__name__)

_DONE = ".modelyard-complete"
# Stands for the cache directory in messages: load failures are shown to endpoint users.
_CACHE_LABEL = "<model-cache>"


def files_digest(files: tuple[FileInfo, ...]) -> str:
    """The cache key of a version: one sha256 over its files' paths and digests."""
    return hashlib.sha256(
        "".join(f"{f.path}\0{f.sha256}\n" for f in sorted(files, key=lambda f: f.path)).encode()
    ).hexdigest()


@dataclass(frozen=True)
class VersionFiles:
    """A version's files as the registry lists them now; `digest` identifies their content,
    where a name and version number may come back (a model deleted and registered again)."""

    name: str
    version: int
    files: tuple[FileInfo, ...]
    digest: str


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
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def resolve(self, model_uri: str) -> tuple[str, int]:
        return self.resolve_with(self._registry(), model_uri)

    @staticmethod
    def resolve_with(registry: RegistryClient, model_uri: str) -> tuple[str, int]:
        """(name, version) the URI points at now, asking `registry` (and so with its rights)."""
        return resolve_model_version(model_uri, registry)

    def files_of(self, name: str, version: int) -> VersionFiles:
        files = tuple(self._registry().list_model_version_artifacts(name, version))
        return VersionFiles(name, version, files, files_digest(files))

    def load(self, name: str, version: int) -> LoadedModel:
        return self.load_files(self.files_of(name, version))

    def load_files(self, located: VersionFiles) -> LoadedModel:
        """The version whose files were listed as `located` (downloaded unless cached)."""
        name, version, registry = located.name, located.version, self._registry()

        def fill(staging: Path) -> None:
            self._download(registry, name, version, located.files, staging)

        try:
            package = self._cached(located.digest, fill)
            try:
                # The completion marker is the cache's, not the package's.
                model = load_local(package, ignore=(_DONE,))
            except ModelyardError:
                if self._intact(package):
                    raise  # the package itself is at fault, not this copy of it
                package = self._cached(located.digest, fill, corrupted=True)
                model = load_local(package, ignore=(_DONE,))
        except ModelyardError as exc:
            raise self._without_cache_path(exc) from exc
        except OSError as exc:
            raise Internal(
                f"model {name} version {version} could not be cached or read: "
                f"{self._describe(exc)}; check the serving model cache's disk"
            ) from exc
        service = model.metadata.feature_service
        join = None
        if service:
            if self._features is None:
                raise FailedPrecondition(
                    f"model {name} version {version} reads feature service {service!r}, but this "
                    "server has no feature store; set MODELYARD_SERVING__FEATURES_URI"
                )
            join = FeatureJoin.resolve(service, self._features)
        return LoadedModel(name, version, model, join, digest=located.digest)

    @staticmethod
    def _download(
        registry: RegistryClient, name: str, version: int, files: tuple[FileInfo, ...], dst: Path
    ) -> None:
        """The listed files (those the cache key was computed from), each sha256-checked."""
        for f in files:
            if not f.is_dir:
                registry.download_model_version_file(name, version, f.path, dst)

    # -- the cache -----------------------------------------------------------------------------

    def _cached(self, digest: str, fill: Callable[[Path], None], corrupted: bool = False) -> Path:
        """The complete cache entry for `digest`, filled by `fill` unless a load (here or in
        another process) already published it; `corrupted`: the published entry failed
        verification, so it is replaced unless another load repaired it meanwhile."""
        target = self.cache_dir / digest
        if (target / _DONE).exists() and not corrupted:
            return target
        with self._lock(digest):
            if (target / _DONE).exists():
                if not corrupted or self._intact(target):
                    return target  # published (or repaired) while this load waited for the lock
                self._set_aside(target)
                log.warning(
                    "model cache entry %s failed verification; downloading it again", digest
                )
            staging = self.cache_dir / f".{digest}.{uuid.uuid4().hex}"
            try:
                fill(staging)
                (staging / _DONE).touch()
                self._publish(staging, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)  # gone already once published
        return target

    def _publish(self, staging: Path, target: Path) -> None:
        """Move the complete `staging` copy to `target` in one rename (with the lock held)."""
        if target.exists() and not (target / _DONE).exists():
            # Left incomplete by a load that died: no load reads an entry without the marker.
            self._set_aside(target)
        try:
            staging.rename(target)
        except OSError:
            # Published by a process the lock did not reach (a file system without flock, say):
            # keep that entry, as loads may be reading it, and drop this copy.
            if not (target / _DONE).exists():
                raise

    def _set_aside(self, target: Path) -> None:
        """Remove an entry no load can use (with the lock held): renamed first, so loads see it
        whole or not at all, and those that opened its files keep reading them."""
        stale = self.cache_dir / f".{target.name}.{uuid.uuid4().hex}.stale"
        target.rename(stale)
        shutil.rmtree(stale, ignore_errors=True)

    @staticmethod
    def _intact(package: Path) -> bool:
        """Whether a cache entry's files still match the digests its manifest records."""
        try:
            verify(package, ignore=(_DONE,))
        except ModelyardError:
            return False
        return True

    @contextmanager
    def _lock(self, digest: str) -> Iterator[None]:
        """Held by one load of `digest` at a time: across threads (a lock per digest) and across
        processes sharing the cache directory (flock on a lock file, released on close)."""
        with self._locks_guard:
            lock = self._locks.setdefault(digest, threading.Lock())
        with lock, open(self.cache_dir / f".{digest}.lock", "a") as held:
            if fcntl is not None:
                fcntl.flock(held, fcntl.LOCK_EX)
            yield

    # -- messages ------------------------------------------------------------------------------

    def _without_cache_path(self, exc: ModelyardError) -> ModelyardError:
        """`exc` again, with the cache directory's path replaced by a label."""
        return type(exc)(
            exc.message.replace(str(self.cache_dir), _CACHE_LABEL),
            field=exc.field,
            resource_type=exc.resource_type,
            resource_name=exc.resource_name,
        )

    def _describe(self, exc: OSError) -> str:
        """What failed, naming a file by its place in the cache rather than its full path."""
        what = exc.strerror or type(exc).__name__
        if not exc.filename:
            return what
        return f"{what}: {str(exc.filename).replace(str(self.cache_dir), _CACHE_LABEL)}"
