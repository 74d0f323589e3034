"""The artifact store interface. Backends supply a few byte-level primitives; the base owns path
rules, sha256, streaming and verification so every backend behaves the same.

Keys are '/'-separated paths relative to the store's root URI. A store never lets a key escape
its root: `clean_path` rejects absolute paths, '..' and other tricks before any backend sees them.

Keys form a tree as on a disk: no key is both a file and a directory (a prefix of other keys).
Local disks cannot hold both and MinIO refuses both; AWS S3 would accept them, but a listing would
then show one name as a file and as a directory. So services refuse such a path from their records
before any bytes move, with `PathClash`, and a backend that refuses one anyway (two uploads racing,
a file left unrecorded by a crash) raises the same error.

Every upload is staged: its bytes go to a key under `STAGING_DIR` (a top-level directory of the
root that holds no artifact and that listings skip) and move into place only once they hash to the
declared sha256 (`verify_staged`, then `place`), so a refused upload never touches the file it was
meant to replace. `place` is an atomic rename on local disks and a server-side copy on S3; the
service orders it with its records (see services/tracking/placement.py). `promote` does both steps
and keeps the staged object. Staged objects that nobody completes are swept by `sweep_staged`.
"""

from __future__ import annotations

import abc
import hashlib
import io
import posixpath
import re
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta

from modelyard.entities.common import PresignedUrl
from modelyard.errors import FailedPrecondition, InvalidArgument, NotFound
from modelyard.paths import clean_path

CHUNK_SIZE = 1024 * 1024
# Reserved top-level directory of every artifact root: uploads in flight (streamed and presigned),
# nothing else.
# Every artifact lies below an experiment's location, and none may be here (see `is_staging`).
# Not ".uploads": SeaweedFS keeps its own multipart uploads in folders of that name and leaves
# them out of listings, so the sweep would never see an abandoned upload there.
STAGING_DIR = ".modelyard-staging"
# The one shape of a staged upload: <owner>/<digest of its path>/<upload id>, 32 hex digits each.
# No artifact key has it (they end in .../<run id>/artifacts/<path>), so the sweep deletes only
# uploads, even where an experiment made before the directory was reserved keeps files in it.
_STAGED_UPLOAD = re.compile(rf"^{re.escape(STAGING_DIR)}(/[0-9a-f]{{32}}){{3}}\Z")


@dataclass(frozen=True, slots=True)
class StoredFile:
    key: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class StagedFile:
    """Staged bytes known to hash to `sha256`; `version`, where the backend has one, pins those
    very bytes, so placing them fails rather than move bytes written to the key since."""

    key: str
    size: int
    sha256: str
    version: str | None = None


def join_key(*parts: str) -> str:
    return posixpath.join(*[p.strip("/") for p in parts if p])


def staged_upload_key(owner: str, path: str, upload_id: str = "") -> str:
    """Where an upload of `path` by `owner` (a run id) is staged; without `upload_id`, the
    directory of all of them. The path goes in by digest, as paths can be long."""
    return join_key(STAGING_DIR, owner, hashlib.sha256(path.encode()).hexdigest()[:32], upload_id)


def is_staged_upload(key: str) -> bool:
    return _STAGED_UPLOAD.match(key) is not None


def is_staging(key: str) -> bool:
    """Whether `key` (relative to the root) lies in the staging directory."""
    return key.split("/", 1)[0] == STAGING_DIR


def digest_mismatch(actual: str, expected: str) -> InvalidArgument:
    return InvalidArgument(
        f"uploaded bytes hash to sha256 {actual}, not the declared {expected}; the file was not "
        "stored, upload it again",
        field="sha256",
    )


def parents(path: str) -> Iterator[str]:
    """Every directory above `path`, the top one first: 'a/b/c' -> 'a', 'a/b'."""
    parts = path.split("/")
    for i in range(1, len(parts)):
        yield "/".join(parts[:i])


class PathClash(FailedPrecondition):
    """The refusal of a file at `path` when `other` is a file above it (so `path` would be
    inside a file) or inside it (so `path` is a directory), or None when the backend refused a
    write that no file explains (two uploads racing, one making `path` a directory). It keeps
    both paths: a store finds a clash in its own keys, which a service names again as its
    callers know the files (`under`), never as storage keys."""

    def __init__(self, path: str, other: str | None) -> None:
        self.path, self.other = path, other
        if other is None:  # the backend refused the write, yet holds no file it clashes with
            message = (
                f"the artifact store refused to store artifact path {path!r}, though it holds "
                "no file above or inside it: most likely another upload was writing one at the "
                "same time; list the run's files, and retry"
            )
        elif other.startswith(path + "/"):
            message = (
                f"artifact path {path!r} is a directory (it holds {other!r}); upload the file "
                "under another path, or delete the directory first with DeleteArtifact"
            )
        else:
            message = (
                f"artifact path {path!r} lies inside {other!r}, which is a file; upload the file "
                f"under another path, or delete {other!r} first with DeleteArtifact"
            )
        super().__init__(message, resource_type="artifact", resource_name=path)

    def under(self, directory: str) -> FailedPrecondition:
        """The same refusal with both keys named relative to `directory` (a run's artifacts),
        which holds `path`; a file above it is no path of the caller's, so it goes unnamed."""
        prefix = directory.rstrip("/") + "/"
        path = self.path.removeprefix(prefix)
        if self.other is None or self.other.startswith(prefix):
            return PathClash(path, self.other and self.other.removeprefix(prefix))
        return FailedPrecondition(
            f"artifact path {path!r} lies inside a file of the artifact store that is not one of "
            "its artifacts; ask the operator to remove that file",
            resource_type="artifact",
            resource_name=path,
        )


class _VerifyingReader(io.RawIOBase):
    """File-like view of a chunk iterator that hashes what passes and checks it at EOF.

    Raising at EOF, before the backend commits, means a corrupt upload never replaces a file.
    """

    def __init__(self, chunks: Iterable[bytes], expected_sha256: str | None) -> None:
        self._chunks = iter(chunks)
        self._buffer = b""
        self._expected = expected_sha256
        self.hasher = hashlib.sha256()
        self.size = 0
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, target: memoryview) -> int:  # type: ignore[override]
        while not self._buffer and not self._eof:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self._eof = True
                self._check()
                break
            self.hasher.update(chunk)
            self.size += len(chunk)
            self._buffer = bytes(chunk)
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n

    def _check(self) -> None:
        if self._expected and self.hasher.hexdigest() != self._expected.lower():
            raise digest_mismatch(self.hasher.hexdigest(), self._expected)


class ArtifactStore(abc.ABC):
    """Bytes under a root URI. Subclasses implement the `_`-prefixed primitives."""

    # Whether presign_put/presign_get hand out URLs (else they refuse with FailedPrecondition).
    presigns = False
    # The longest full object name the store takes, in UTF-8 bytes (None: no limit beyond each
    # name's, modelyard.paths.MAX_NAME_BYTES); see key_bytes.
    max_key_bytes: int | None = None

    def __init__(self, root_uri: str) -> None:
        self.root_uri = root_uri.rstrip("/")

    def uri(self, key: str) -> str:
        return f"{self.root_uri}/{key}" if key else self.root_uri

    def key_bytes(self, key: str) -> int:
        """The length of `key`'s full object name, as max_key_bytes counts it."""
        return len(key.encode())

    def key_for(self, uri: str) -> str | None:
        """The key of `uri` if it lies under this store's root, else None."""
        root = self.root_uri + "/"
        if uri.rstrip("/") == self.root_uri:
            return ""
        if not uri.startswith(root):
            return None
        rest = uri[len(root) :]
        return clean_path(rest, field="artifact_location", allow_empty=True)

    # -- operations ------------------------------------------------------------------------

    def write(
        self, key: str, chunks: Iterable[bytes], expected_sha256: str | None = None
    ) -> StoredFile:
        """Store the bytes atomically; a reader sees the old file or the new one, never a part."""
        reader = _VerifyingReader(chunks, expected_sha256)
        self._put(key, reader)
        return StoredFile(key, reader.size, reader.hasher.hexdigest())

    def read(self, key: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """Stream the file's bytes; NotFound if it is missing from storage."""
        return self._get(key, chunk_size)

    def digest(self, key: str) -> StoredFile:
        hasher = hashlib.sha256()
        size = 0
        for chunk in self.read(key):
            hasher.update(chunk)
            size += len(chunk)
        return StoredFile(key, size, hasher.hexdigest())

    def verify(self, key: str, sha256: str) -> StoredFile:
        """The stored file, once its bytes hash to `sha256` (InvalidArgument if they do not)."""
        stored = self.digest(key)
        if stored.sha256 != sha256.lower():
            raise digest_mismatch(stored.sha256, sha256)
        return stored

    def copy(self, src_key: str, dst_key: str) -> None:
        """Copy within this store (server-side where the backend can)."""
        self._copy(src_key, dst_key, None, None)

    def verify_staged(self, staged_key: str, sha256: str) -> StagedFile:
        """The staged upload at `staged_key`, once its bytes hash to `sha256` (InvalidArgument if
        they do not), pinned where the backend can: a new PUT to it meanwhile makes `place` fail
        rather than store unverified bytes."""
        version = self._version(staged_key)
        stored = self.verify(staged_key, sha256)
        return StagedFile(staged_key, stored.size, stored.sha256, version)

    def place(self, staged: StagedFile, key: str) -> StoredFile:
        """Put verified staged bytes at `key` atomically; a refusal (a path clash in storage, the
        staged bytes changed) leaves `key` as it was. The staged object may be gone afterwards
        (a local rename moves it); the caller deletes it either way."""
        self._place(staged, key)
        return StoredFile(key, staged.size, staged.sha256)

    def promote(self, staged_key: str, key: str, sha256: str) -> StoredFile:
        """`verify_staged` and a copy to `key` that keeps the staged object, on every backend."""
        staged = self.verify_staged(staged_key, sha256)
        self._copy_into_place(staged, key)
        return StoredFile(key, staged.size, staged.sha256)

    def sweep_staged(self, older_than: timedelta, keep: Collection[str] = ()) -> int:
        """Delete staged uploads last written more than `older_than` ago, but those in `keep`
        (placements under way still need them); returns how many. Presigned uploads nobody
        completes leave them, and so does a process that dies between staging and placing."""
        return 0

    def presign_put(self, key: str) -> PresignedUrl:
        raise FailedPrecondition(
            f"artifact store {self.root_uri} cannot hand out upload URLs; "
            "upload through UploadArtifact instead"
        )

    def presign_get(self, key: str) -> PresignedUrl:
        raise FailedPrecondition(
            f"artifact store {self.root_uri} cannot hand out download URLs; "
            "download through DownloadArtifact instead"
        )

    @abc.abstractmethod
    def size(self, key: str) -> int | None:
        """Size in bytes, or None when there is no such file."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove one file; a missing file is not an error."""

    @abc.abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Remove every file under `prefix` (a directory key); returns how many."""

    @abc.abstractmethod
    def iter_files(self, prefix: str) -> Iterator[tuple[str, int]]:
        """(key, size) of every file under `prefix`, following all pages of the listing."""

    @abc.abstractmethod
    def _put(self, key: str, reader: io.RawIOBase) -> None:
        """Store everything `reader` yields at `key`, atomically; an exception stores nothing."""

    @abc.abstractmethod
    def _get(self, key: str, chunk_size: int, version: str | None = None) -> Iterator[bytes]:
        """The bytes at `key`; with `version` (from `_version`), only those very bytes, where the
        backend can check it: other bytes there now fail the read."""

    def _version(self, key: str) -> str | None:
        """A token for the current bytes at `key` that `_copy` can require, or None."""
        return None

    def _copy(self, src_key: str, dst_key: str, version: str | None, size: int | None) -> None:
        """Copy `src_key` (as of `version`, when given and the backend can check it); `size`,
        when the caller knows it, spares backends that need it a look-up."""
        self._put(dst_key, _VerifyingReader(self._get(src_key, CHUNK_SIZE, version), None))

    def _place(self, staged: StagedFile, key: str) -> None:
        """Move staged bytes to `key`; backends that can rename atomically do."""
        self._copy_into_place(staged, key)

    def _copy_into_place(self, staged: StagedFile, key: str) -> None:
        # Some servers (rclone) replace a directory's files by a copy onto its name: check first.
        clash = self._clash(key)
        if clash is not None:
            raise clash
        self._copy(staged.key, key, staged.version, staged.size)

    def close(self) -> None:
        """Release connections; the default store holds none."""

    def _clash(self, key: str) -> FailedPrecondition | None:
        """`PathClash` naming the file `key` collides with, if one does: what explains a write
        the backend refused."""
        for above in parents(key):
            if self.size(above) is not None:
                return PathClash(key, above)
        inside = next((k for k, _ in self.iter_files(key)), None)
        return PathClash(key, inside) if inside else None

    @staticmethod
    def _missing(key: str) -> NotFound:
        return NotFound(
            f"artifact {key!r} is recorded but missing from storage; re-upload it",
            resource_type="artifact",
            resource_name=key,
        )
