"""Moving artifact bytes: chunked gRPC streams, or presigned URLs for big files on S3 stores.

Every upload declares its sha256, so the server refuses corrupted bytes; every download is
hashed on arrival and compared with the digest the server recorded.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import urllib3

from modelyard._gen.tracking.v1 import tracking_pb2 as pb
from modelyard.client._transport import Transport
from modelyard.convert.common import file_info_to_entity
from modelyard.entities import FileInfo
from modelyard.errors import DataLoss, FailedPrecondition, Unavailable

if TYPE_CHECKING:
    from modelyard.client.tracking import TrackingClient

CHUNK = 1024 * 1024
# Files at least this big go through a presigned URL when the artifact store offers one.
PRESIGN_THRESHOLD = 32 * 1024 * 1024
_STREAM_TIMEOUT = 3600.0


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def _requests(run_id: str, path: str, sha256: str, chunks: Iterator[bytes]) -> Iterator[Any]:
    header = pb.UploadArtifactHeader(run_id=run_id, path=path, sha256=sha256)
    yield pb.UploadArtifactRequest(header=header)
    for chunk in chunks:
        yield pb.UploadArtifactRequest(chunk=chunk)


def _file_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            yield block


def upload_bytes(t: Transport, stub: Any, run_id: str, data: bytes, path: str) -> FileInfo:
    chunks = iter([data[i : i + CHUNK] for i in range(0, len(data), CHUNK)] or [b""])
    requests = _requests(run_id, path, hashlib.sha256(data).hexdigest(), chunks)
    return file_info_to_entity(t.call(stub.UploadArtifact, requests, timeout=_STREAM_TIMEOUT).file)


def upload_file(t: Transport, stub: Any, run_id: str, local: Path, path: str) -> FileInfo:
    digest = file_sha256(local)
    if local.stat().st_size >= PRESIGN_THRESHOLD:
        uploaded = _upload_presigned(t, stub, run_id, local, path, digest)
        if uploaded is not None:
            return uploaded
    requests = _requests(run_id, path, digest, _file_chunks(local))
    return file_info_to_entity(t.call(stub.UploadArtifact, requests, timeout=_STREAM_TIMEOUT).file)


def _upload_presigned(
    t: Transport, stub: Any, run_id: str, local: Path, path: str, digest: str
) -> FileInfo | None:
    try:
        response = t.call(
            stub.CreateArtifactUploadUrl,
            pb.CreateArtifactUploadUrlRequest(run_id=run_id, path=path),
        )
    except FailedPrecondition:
        return None  # the store has no URLs (local files): stream through the service instead
    with open(local, "rb") as body:
        reply = urllib3.request(
            "PUT",
            response.upload_url.url,
            body=body,
            headers={"Content-Length": str(local.stat().st_size)},
            timeout=urllib3.Timeout(connect=10, read=_STREAM_TIMEOUT),
        )
    if reply.status >= 300:
        raise Unavailable(
            f"object storage refused the upload of {path!r} (HTTP {reply.status}); retry, or "
            "check that the presigned URL's endpoint is reachable from this machine"
        )
    done = t.call(
        stub.CompleteArtifactUpload,
        pb.CompleteArtifactUploadRequest(run_id=run_id, path=path, sha256=digest),
    )
    return file_info_to_entity(done.file)


def upload_tree(
    t: Transport, stub: Any, run_id: str, local_dir: Path, artifact_path: str | None
) -> list[FileInfo]:
    if not local_dir.is_dir():
        raise FileNotFoundError(f"{local_dir} is not a directory")
    base = artifact_path.strip("/") if artifact_path else ""
    uploaded = []
    for root, _dirs, files in os.walk(local_dir):
        for name in sorted(files):
            full = Path(root) / name
            rel = full.relative_to(local_dir).as_posix()
            uploaded.append(upload_file(t, stub, run_id, full, f"{base}/{rel}" if base else rel))
    return uploaded


def download(
    t: Transport,
    stub: Any,
    client: TrackingClient,
    run_id: str,
    path: str,
    dst_path: str | Path | None,
) -> Path:
    dst = Path(dst_path) if dst_path else Path(tempfile.mkdtemp(prefix="modelyard-"))
    dst.mkdir(parents=True, exist_ok=True)
    path = path.strip("/")
    files = list(client.iter_artifacts(run_id, path, recursive=True))
    if path and not files:
        # Not a directory, so a single file (the server answers NotFound if it is neither).
        target = dst / Path(path).name
        _download_file(t, stub, run_id, path, target)
        return target
    root = dst / Path(path).name if path else dst
    for f in files:
        rel = f.path[len(path) + 1 :] if path else f.path
        _download_file(t, stub, run_id, f.path, root / rel)
    return root


def open_stream(t: Transport, method: Any, request: Any) -> tuple[FileInfo, Iterator[bytes]]:
    """Start a download stream: the header's FileInfo, then an iterator over the chunks.

    Download RPCs of every service share this shape (FileInfo first, then bytes).
    """
    responses = t.stream(method, request, timeout=_STREAM_TIMEOUT)
    first = next(responses)
    if first.WhichOneof("part") != "file":
        raise DataLoss("the server sent bytes before describing the file; retry the download")
    return file_info_to_entity(first.file), (msg.chunk for msg in responses)


def save_stream(info: FileInfo, chunks: Iterator[bytes], target: Path) -> None:
    """Write a download to `target` atomically, refusing it unless it hashes to info.sha256."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.part")
    h = hashlib.sha256()
    with open(tmp, "wb") as out:
        for chunk in chunks:
            h.update(chunk)
            out.write(chunk)
    if info.sha256 and h.hexdigest() != info.sha256:
        tmp.unlink()
        raise DataLoss(
            f"artifact {info.path!r} arrived with sha256 {h.hexdigest()}, but the server recorded "
            f"{info.sha256}; download it again"
        )
    os.replace(tmp, target)


def _download_file(t: Transport, stub: Any, run_id: str, path: str, target: Path) -> None:
    request = pb.DownloadArtifactRequest(run_id=run_id, path=path)
    save_stream(*open_stream(t, stub.DownloadArtifact, request), target)
