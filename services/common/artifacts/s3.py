"""Artifacts in any S3-compatible object store, through the `minio` client.

Uploads of unknown length go up as multipart uploads (`part_size_mb` parts); listings follow every
continuation page (minio's iterator does); presigned URLs let clients move bytes directly. Copies
stay on the server: one CopyObject up to S3's 5 GiB limit, a multipart copy (compose) above it.
"""

from __future__ import annotations

import contextlib
import io
import mmap
import time
from collections.abc import Collection, Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse
from xml.etree.ElementTree import ParseError

import urllib3
from minio import Minio
from minio.commonconfig import ComposeSource, CopySource
from minio.credentials import (
    AWSConfigProvider,
    ChainedProvider,
    EnvAWSProvider,
    EnvMinioProvider,
    IamAwsProvider,
    Provider,
)
from minio.datatypes import Object, Part
from minio.deleteobjects import DeleteObject
from minio.error import InvalidResponseError, MinioException, S3Error
from minio.helpers import DictType

from modelyard.entities.common import PresignedUrl
from modelyard.errors import FailedPrecondition, ModelyardError, Unavailable
from modelyard.services.common.artifacts.base import (
    STAGING_DIR,
    ArtifactStore,
    PathClash,
    is_staged_upload,
    is_staging,
    join_key,
)
from modelyard.services.common.logging import get_logger
from modelyard.services.common.settings import S3Settings

log = get_logger(__name__)

_MISSING = {"NoSuchKey", "NoSuchObject", "NotFound"}
# What the store (minio's errors) or the way to it (urllib3's: refused connections, timeouts,
# retries of 5xx answers exhausted) raise when it fails.
_FAILURES = (MinioException, urllib3.exceptions.HTTPError)


def _is_missing(exc: MinioException) -> bool:
    if isinstance(exc, S3Error):
        return exc.code in _MISSING
    # Some S3 servers answer a missing key with an error body minio cannot parse as S3 XML
    # (rclone sends it without an XML content type); the HTTP status still says 404.
    return isinstance(exc, InvalidResponseError) and getattr(exc, "_code", None) == 404


def _is_changed(exc: MinioException) -> bool:
    """A conditional request (If-Match an ETag) met other bytes than those it pinned."""
    return isinstance(exc, S3Error) and exc.code == "PreconditionFailed"


class _SourceChanged(FailedPrecondition):
    """A pinned read met other bytes; the copy that made it says which copy failed."""


def _fill(reader: io.RawIOBase, view: memoryview) -> int:
    """Read into `view` until it is full or the bytes end; how many it holds."""
    filled = 0
    while filled < len(view):
        n = reader.readinto(view[filled:])
        if not n:
            break
        filled += n
    return filled


def _secret(value: object) -> str | None:
    return value.get_secret_value() if value is not None else None  # type: ignore[attr-defined]


def _endpoint(raw: str, secure: bool) -> tuple[str, bool]:
    if "://" in raw:
        parsed = urlparse(raw)
        return parsed.netloc, parsed.scheme == "https"
    return raw, secure


def _credentials(settings: S3Settings) -> Provider | None:
    """Without configured keys, the pod's or machine's own identity, found as the AWS SDKs do:
    AWS_*/MINIO_* environment variables, ~/.aws/credentials, then IamAwsProvider (IRSA's web
    identity token, ECS/EKS container credentials, EC2 instance metadata). Else minio would send
    every request unsigned."""
    if settings.access_key is not None:
        return None
    return ChainedProvider(
        [EnvAWSProvider(), EnvMinioProvider(), AWSConfigProvider(), IamAwsProvider()]
    )


def make_client(settings: S3Settings, endpoint: str | None = None) -> Minio:
    host, secure = _endpoint(endpoint or settings.endpoint, settings.secure)
    http_client = None
    if settings.ca_file:
        http_client = urllib3.PoolManager(
            cert_reqs="CERT_REQUIRED", ca_certs=str(settings.ca_file), maxsize=16
        )
    return Minio(
        host,
        access_key=_secret(settings.access_key),
        secret_key=_secret(settings.secret_key),
        session_token=_secret(settings.session_token),
        secure=secure,
        # A known region spares minio a GetBucketLocation round trip (and lets it presign offline).
        region=settings.region or "us-east-1",
        http_client=http_client,
        credentials=_credentials(settings),
    )


class S3ArtifactStore(ArtifactStore):
    presigns = True
    # The largest object one CopyObject takes (S3's limit); bigger ones are copied in parts of this
    # size. Tests lower it (to at least S3's 5 MiB minimum part) to exercise the multipart copy.
    max_copy_size = 5 * 1024**3
    max_key_bytes = 1024  # S3's limit on an object key, the root's prefix included

    def __init__(self, root_uri: str, settings: S3Settings) -> None:
        super().__init__(root_uri)
        parsed = urlparse(root_uri)
        if not parsed.netloc:
            raise FailedPrecondition(
                f"artifact root {root_uri!r} names no bucket; use s3://bucket/prefix"
            )
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.settings = settings
        self.client = make_client(settings)
        self._presigner = (
            make_client(settings, settings.public_endpoint)
            if settings.public_endpoint
            else self.client
        )
        self._part_size = settings.part_size_mb * 1024 * 1024
        self._ensure_bucket()

    def _ensure_bucket(self) -> None:
        try:
            if not self.client.bucket_exists(self.bucket):
                self.client.make_bucket(self.bucket)
        except MinioException as exc:
            raise FailedPrecondition(
                f"S3 bucket {self.bucket!r} is not usable ({exc}); "
                "check MODELYARD_S3__* credentials and the bucket name"
            ) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise Unavailable(
                f"S3 endpoint {self.settings.endpoint} is unreachable ({exc}); "
                "check MODELYARD_S3__ENDPOINT and that the server is running"
            ) from exc

    def _name(self, key: str) -> str:
        return join_key(self.prefix, key)

    def key_bytes(self, key: str) -> int:
        return len(self._name(key).encode())

    def _key(self, name: str) -> str:
        """The key of object `name` (the inverse of `_name`)."""
        return name[len(self.prefix) + 1 :] if self.prefix else name

    @contextlib.contextmanager
    def _answering(self) -> Iterator[None]:
        """Around every call to the store: a failure that nothing more specific explains (the
        store down or unreachable, an error this code does not map) becomes Unavailable naming
        the store, which clients retry, rather than INTERNAL with a traceback in the log."""
        try:
            yield
        except _FAILURES as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: Exception) -> Unavailable:
        return Unavailable(
            f"object storage at {self.settings.endpoint} failed ({type(exc).__name__}: "
            f"{str(exc)[:300]}); retry, and if it persists check that it is running and "
            "reachable from the server (MODELYARD_S3__ENDPOINT) and its bucket and credentials "
            "(MODELYARD_S3__*)"
        )

    def _stat(self, key: str) -> Object | None:
        """The object's metadata, or None when there is no such object."""
        with self._answering():
            try:
                return self.client.stat_object(self.bucket, self._name(key))
            except MinioException as exc:
                if _is_missing(exc):
                    return None
                raise

    def size(self, key: str) -> int | None:
        stat = self._stat(key)
        return None if stat is None else stat.size

    def delete(self, key: str) -> None:
        with self._answering():
            self.client.remove_object(self.bucket, self._name(key))

    def delete_prefix(self, prefix: str) -> int:
        with self._answering():
            names = [
                DeleteObject(obj.object_name)
                for obj in self.client.list_objects(
                    self.bucket, prefix=self._name(prefix) + "/", recursive=True
                )
                if obj.object_name
            ]
            errors = list(self.client.remove_objects(self.bucket, names))
        if errors:
            raise Unavailable(
                f"could not delete {len(errors)} objects under {prefix!r}: {errors[0]}"
            )
        return len(names)

    def iter_files(self, prefix: str) -> Iterator[tuple[str, int]]:
        base = self._name(prefix)
        with self._answering():
            for obj in self.client.list_objects(
                self.bucket, prefix=base + "/" if base else "", recursive=True
            ):
                if obj.object_name and not obj.is_dir:
                    key = self._key(obj.object_name)
                    if prefix or not is_staging(key):  # uploads in flight are no files
                        yield key, obj.size or 0

    def sweep_staged(self, older_than: timedelta, keep: Collection[str] = ()) -> int:
        # Housekeeping on the way to a new upload: a failure is logged, never the upload's.
        cutoff = datetime.now(UTC) - older_than
        kept = {self._name(key) for key in keep}
        try:
            doomed = [
                DeleteObject(obj.object_name)
                for obj in self.client.list_objects(
                    self.bucket, prefix=self._name(STAGING_DIR) + "/", recursive=True
                )
                if obj.object_name
                and obj.last_modified
                and obj.last_modified <= cutoff
                and is_staged_upload(self._key(obj.object_name))
                and obj.object_name not in kept
            ]
            errors = list(self.client.remove_objects(self.bucket, doomed)) if doomed else []
        except _FAILURES as exc:
            log.warning("could not sweep abandoned uploads under %s: %s", STAGING_DIR, exc)
            return 0
        if errors:
            log.warning("could not delete %d abandoned uploads: %s", len(errors), errors[0])
        return len(doomed) - len(errors)

    def _put(self, key: str, reader: io.RawIOBase) -> None:
        try:
            self._put_parts(self._name(key), reader)
        except _FAILURES as exc:
            raise self._refused(key, exc, racing=False) from exc

    def _put_parts(self, name: str, reader: io.RawIOBase) -> None:
        """Upload bytes of unknown length: one PUT if they fit one part, else a multipart upload,
        each part read into the same buffer and sent from it. An upload so holds one part
        (part_size_mb) at a time; minio's put_object(length=-1) held several copies of each
        (about 5 x part_size_mb per upload, measured). The buffer is an anonymous mapping, whose
        pages take memory only once written: a small file costs its size, not a part."""
        view = memoryview(mmap.mmap(-1, self._part_size))
        filled = _fill(reader, view)
        headers: DictType = {"Content-Type": "application/octet-stream"}
        if filled < len(view):
            self.client._put_object(self.bucket, name, view[:filled], dict(headers))  # type: ignore[arg-type]
            return
        upload_id = self.client._create_multipart_upload(self.bucket, name, dict(headers))
        try:
            parts: list[Part] = []
            while filled:
                number = len(parts) + 1
                part = view[:filled]
                etag = self.client._upload_part(self.bucket, name, part, None, upload_id, number)  # type: ignore[arg-type]
                parts.append(Part(number, etag))
                filled = _fill(reader, view)
            self.client._complete_multipart_upload(self.bucket, name, upload_id, parts)
        except BaseException:
            with contextlib.suppress(*_FAILURES):  # else S3's lifecycle rules reclaim it
                self.client._abort_multipart_upload(self.bucket, name, upload_id)
            raise

    def _refused(self, key: str, exc: Exception, *, racing: bool) -> ModelyardError:
        """Why a write to `key` failed. MinIO and filesystem-backed servers (rclone) refuse a
        file where a directory is, or inside a file, as a disk does: `PathClash`, as the local
        store says. A refusal that no file explains, by a store that answers otherwise, is taken
        for one too where another write `racing` this one can cause it (rclone refuses a copy
        onto a name another upload has just made a directory, then lists it as a file). Else
        the store is failing: Unavailable."""
        try:
            clash = self._clash(key)
        except Unavailable:
            return self._unavailable(exc)  # the store is failing: its first error says more
        if clash is None and racing:
            clash = PathClash(key, None)
        return clash or self._unavailable(exc)

    def _get(self, key: str, chunk_size: int, version: str | None = None) -> Iterator[bytes]:
        # With an ETag, the server answers other bytes 412 PreconditionFailed (rclone ignores it).
        headers: DictType | None = {"If-Match": f'"{version}"'} if version else None
        with self._answering():
            try:
                name = self._name(key)
                response = self.client.get_object(self.bucket, name, request_headers=headers)
            except MinioException as exc:
                if _is_missing(exc):
                    raise self._missing(key) from None
                if _is_changed(exc):
                    raise _SourceChanged(f"{key!r} changed since it was hashed") from None
                raise
        return self._stream(response, chunk_size)

    def _stream(self, response: urllib3.BaseHTTPResponse, chunk_size: int) -> Iterator[bytes]:
        try:
            with self._answering():
                yield from response.stream(chunk_size)
        finally:
            response.close()
            response.release_conn()

    def _version(self, key: str) -> str | None:
        stat = self._stat(key)
        if stat is None:
            raise self._missing(key)
        return stat.etag

    def _copy(self, src_key: str, dst_key: str, version: str | None, size: int | None) -> None:
        if size is None:
            size = self.size(src_key)
        if size is None:
            raise self._missing(src_key)
        src, dst = self._name(src_key), self._name(dst_key)
        try:
            if size <= self.max_copy_size:
                self.client.copy_object(
                    self.bucket, dst, CopySource(self.bucket, src, match_etag=version)
                )
                return
            parts = [
                ComposeSource(
                    self.bucket,
                    src,
                    offset=start,
                    length=min(self.max_copy_size, size - start),
                    match_etag=version,
                )
                for start in range(0, size, self.max_copy_size)
            ]
            try:
                self.client.compose_object(self.bucket, dst, parts)
            except ParseError:
                # A server without UploadPartCopy (rclone) answers each part with an empty body;
                # minio aborted the upload, so nothing was stored. Copy through this process.
                log.info("S3 server cannot copy in parts; streaming %s instead", src_key)
                super()._copy(src_key, dst_key, version, size)
        except _SourceChanged:  # the copy through this process read other bytes
            raise self._changed(src_key, dst_key) from None
        except MinioException as exc:
            if _is_missing(exc) or _is_changed(exc):
                raise self._changed(src_key, dst_key) from None
            raise self._refused(dst_key, exc, racing=True) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise self._refused(dst_key, exc, racing=True) from exc

    @staticmethod
    def _changed(src_key: str, dst_key: str) -> FailedPrecondition:
        return FailedPrecondition(
            f"{src_key!r} changed or vanished while it was copied to {dst_key!r}; nothing was "
            "stored, try again",
            resource_type="artifact",
            resource_name=dst_key,
        )

    def presign_put(self, key: str) -> PresignedUrl:
        expiry = self.settings.presign_expiry_seconds
        url = self._presigner.presigned_put_object(
            self.bucket, self._name(key), timedelta(seconds=expiry)
        )
        return PresignedUrl(url, "PUT", _expire_time(expiry))

    def presign_get(self, key: str) -> PresignedUrl:
        expiry = self.settings.presign_expiry_seconds
        url = self._presigner.presigned_get_object(
            self.bucket, self._name(key), timedelta(seconds=expiry)
        )
        return PresignedUrl(url, "GET", _expire_time(expiry))


def _expire_time(seconds: int) -> int:
    return int((time.time() + seconds) * 1000)
