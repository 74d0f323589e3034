"""Artifacts in any S3-compatible object store, through the `minio` client.

Uploads of unknown length go up as multipart uploads (`part_size_mb` parts); listings follow every
continuation page (minio's iterator does); presigned URLs let clients move bytes directly.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import urlparse

import urllib3
from minio import Minio
from minio.commonconfig import CopySource
from minio.deleteobjects import DeleteObject
from minio.error import InvalidResponseError, MinioException, S3Error

from modelyard.entities.common import PresignedUrl
from modelyard.errors import FailedPrecondition, Unavailable
from modelyard.services.common.artifacts.base import ArtifactStore, join_key
from modelyard.services.common.settings import S3Settings

_MISSING = {"NoSuchKey", "NoSuchObject", "NotFound"}
_COPY_LIMIT = 5 * 1024**3


def _is_missing(exc: MinioException) -> bool:
    if isinstance(exc, S3Error):
        return exc.code in _MISSING
    # Some S3 servers answer a missing key with an error body minio cannot parse as S3 XML
    # (rclone sends it without an XML content type); the HTTP status still says 404.
    return isinstance(exc, InvalidResponseError) and getattr(exc, "_code", None) == 404


def _secret(value: object) -> str | None:
    return value.get_secret_value() if value is not None else None  # type: ignore[attr-defined]


def _endpoint(raw: str, secure: bool) -> tuple[str, bool]:
    if "://" in raw:
        parsed = urlparse(raw)
        return parsed.netloc, parsed.scheme == "https"
    return raw, secure


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
    )


class S3ArtifactStore(ArtifactStore):
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

    def size(self, key: str) -> int | None:
        try:
            return self.client.stat_object(self.bucket, self._name(key)).size
        except MinioException as exc:
            if _is_missing(exc):
                return None
            raise

    def delete(self, key: str) -> None:
        self.client.remove_object(self.bucket, self._name(key))

    def delete_prefix(self, prefix: str) -> int:
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
        strip = len(self.prefix) + 1 if self.prefix else 0
        for obj in self.client.list_objects(
            self.bucket, prefix=base + "/" if base else "", recursive=True
        ):
            if obj.object_name and not obj.is_dir:
                yield obj.object_name[strip:], obj.size or 0

    def _put(self, key: str, reader: io.RawIOBase) -> None:
        try:
            self.client.put_object(
                self.bucket,
                self._name(key),
                io.BufferedReader(reader, buffer_size=1024 * 1024),
                length=-1,
                part_size=self._part_size,
            )
        except (MinioException, urllib3.exceptions.HTTPError):
            # MinIO and filesystem-backed servers (rclone) refuse a file where a directory is,
            # or inside a file, as a disk does; say so, as the local store does.
            try:
                clash = self._clash(key)
            except (MinioException, urllib3.exceptions.HTTPError):
                clash = None  # the store is failing: its first error says more
            if clash is None:
                raise
            raise clash from None

    def _get(self, key: str, chunk_size: int) -> Iterator[bytes]:
        try:
            response = self.client.get_object(self.bucket, self._name(key))
        except MinioException as exc:
            if _is_missing(exc):
                raise self._missing(key) from None
            raise
        return _stream(response, chunk_size)

    def copy(self, src_key: str, dst_key: str) -> None:
        size = self.size(src_key)
        if size is None:
            raise self._missing(src_key)
        if size >= _COPY_LIMIT:  # single-request server-side copy stops at 5 GiB
            super().copy(src_key, dst_key)
            return
        self.client.copy_object(
            self.bucket, self._name(dst_key), CopySource(self.bucket, self._name(src_key))
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


def _stream(response: urllib3.BaseHTTPResponse, chunk_size: int) -> Iterator[bytes]:
    try:
        yield from response.stream(chunk_size)
    finally:
        response.close()
        response.release_conn()
