"""Moving artifact bytes: chunked gRPC streams, or presigned URLs for big files on S3 stores.

Every upload declares its sha256, so the server refuses corrupted bytes; every download is
hashed on arrival and compared with the digest the server recorded.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import urllib3
from tenacity import RetryCallState, Retrying, retry_if_exception, wait_random_exponential

from modelyard._gen.tracking.v1 import tracking_pb2 as pb
from modelyard.client._transport import Transport
from modelyard.convert.common import file_info_to_entity, presigned_to_entity
from modelyard.entities import FileInfo, PresignedUrl
from modelyard.errors import (
    Aborted,
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    ModelyardError,
    Unavailable,
)
from modelyard.paths import clean_path, relative_to

if TYPE_CHECKING:
    from modelyard.client.tracking import TrackingClient

CHUNK = 1024 * 1024
# Files at least this big move through a presigned URL, both ways, when the store offers one.
PRESIGN_THRESHOLD = 32 * 1024 * 1024
# S3 takes at most 5 GiB in one PUT; bigger files stream through the service, which stores them
# as a multipart upload.
PRESIGNED_PUT_LIMIT = 5 * 1024**3
_STREAM_TIMEOUT = 3600.0
# Calls that move or hash a whole file get a deadline of at least a second per this many bytes,
# so a big file on a slow link is not cut off by a deadline sized for small ones.
_SLOWEST_RATE = 1024 * 1024

F = TypeVar("F", bound=Callable[..., Any])


# While an upload moves new bytes to a path (or a delete removes them), the server answers another
# upload of it ABORTED and a download UNAVAILABLE, naming the artifact: a moment, or, if that upload
# died with its server, until its lease runs out (15 s for small files, minutes for big ones). The
# call starts over until then: for as long as the server says the lease can last (`busy_for`, plus
# a margin for finishing it), or, from servers that say nothing, for _PATH_BUSY_WAIT.
_PATH_BUSY_WAIT = 30.0
_PATH_BUSY_MARGIN = 10.0
_PATH_BUSY_MAX = 3600.0  # what the server advises at most; a larger hint is not believed
# Injected by tests, so waiting out a lease of minutes takes none.
_clock = time.monotonic
_sleep = time.sleep


class _BusyBudget:
    """Stop once the path has been busy for longer than any answer said it could be; one per
    call, as each call waits out its own path."""

    def __init__(self) -> None:
        self.start = _clock()
        self.budget = _PATH_BUSY_WAIT

    def __call__(self, state: RetryCallState) -> bool:
        error = state.outcome.exception() if state.outcome else None
        hint = getattr(error, "busy_for", None)
        if hint is not None:
            self.budget = max(self.budget, min(hint, _PATH_BUSY_MAX) + _PATH_BUSY_MARGIN)
        return _clock() - self.start >= self.budget


def _path_busy(error: type[ModelyardError]) -> Callable[[F], F]:
    def busy(exc: BaseException) -> bool:
        return isinstance(exc, error) and exc.resource_type == "artifact"

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            retrying = Retrying(
                retry=retry_if_exception(busy),
                stop=_BusyBudget(),
                wait=wait_random_exponential(multiplier=0.05, max=2),
                sleep=lambda seconds: _sleep(seconds),
                reraise=True,
            )
            return retrying(fn, *args, **kwargs)

        return cast(F, call)

    return decorate


def _deadline(size: int, floor: float) -> float:
    return max(floor, size / _SLOWEST_RATE)


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


@_path_busy(Aborted)
def upload_bytes(t: Transport, stub: Any, run_id: str, data: bytes, path: str) -> FileInfo:
    chunks = iter([data[i : i + CHUNK] for i in range(0, len(data), CHUNK)] or [b""])
    requests = _requests(run_id, path, hashlib.sha256(data).hexdigest(), chunks)
    timeout = _deadline(len(data), _STREAM_TIMEOUT)
    return file_info_to_entity(t.call(stub.UploadArtifact, requests, timeout=timeout).file)


@_path_busy(Aborted)
def upload_file(t: Transport, stub: Any, run_id: str, local: Path, path: str) -> FileInfo:
    size = local.stat().st_size
    digest = file_sha256(local)
    if PRESIGN_THRESHOLD <= size <= PRESIGNED_PUT_LIMIT:
        uploaded = _upload_presigned(t, stub, run_id, local, path, digest, size)
        if uploaded is not None:
            return uploaded
    requests = _requests(run_id, path, digest, _file_chunks(local))
    timeout = _deadline(size, _STREAM_TIMEOUT)
    return file_info_to_entity(t.call(stub.UploadArtifact, requests, timeout=timeout).file)


def _upload_presigned(
    t: Transport, stub: Any, run_id: str, local: Path, path: str, digest: str, size: int
) -> FileInfo | None:
    try:
        response = t.call(
            stub.CreateArtifactUploadUrl,
            pb.CreateArtifactUploadUrlRequest(run_id=run_id, path=path),
        )
    except FailedPrecondition:
        # The store has no URLs (local files): stream through the service, which also answers
        # any other refusal again, before the bytes.
        return None
    with open(local, "rb") as body:
        headers = {"Content-Length": str(size)}
        _http("PUT", response.upload_url.url, path, body=body, headers=headers)
    # The server reads the staged object back to hash it, then copies it into place.
    request = pb.CompleteArtifactUploadRequest(
        run_id=run_id, path=path, sha256=digest, upload_id=response.upload_id
    )
    done = t.call(stub.CompleteArtifactUpload, request, timeout=_deadline(size, t.timeout))
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
    dst = make_dir(Path(dst_path)) if dst_path else Path(tempfile.mkdtemp(prefix="modelyard-"))
    # In the server's normal form, as its listing names the files: './model' lists 'model/...'.
    path = clean_path(path, allow_empty=True)
    files = list(client.iter_artifacts(run_id, path, recursive=True))
    if path and not files:
        # Not a directory, so a single file (the server answers NotFound if it is neither).
        target = inside(dst, Path(path).name, path)
        _download_file(t, stub, run_id, path, None, target)
        return target
    root = dst / Path(path).name if path else dst
    for f in files:
        rel = relative_to(f.path, path)
        if rel is None:
            raise DataLoss(
                f"the server listed {f.path!r} under {path!r}, where it does not lie; nothing "
                "more was downloaded: report this to the server's operator"
            )
        _download_file(t, stub, run_id, f.path, f.file_size, inside(root, rel, f.path))
    return root


def make_dir(directory: Path) -> Path:
    """`directory`, created if need be. A file in its place (or in place of a parent) was a
    bare FileExistsError or NotADirectoryError from deep in the download, naming no argument."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InvalidArgument(
            f"dst_path: downloads go into a directory, but {directory} is (or lies under) an "
            "existing file; pass a directory, or move that file away first",
            field="dst_path",
        ) from None
    return directory


def inside(directory: Path, rel: str, path: str) -> Path:
    """`directory / rel`, refused unless it lies inside `directory`: a path from the server is
    never trusted to write elsewhere on this machine (an absolute one would replace `directory`,
    '..' would climb out of it)."""
    target = directory / rel
    if not target.resolve().is_relative_to(directory.resolve()):
        raise DataLoss(
            f"artifact {path!r} would be written to {target}, outside {directory}; nothing was "
            "written there: report this to the server's operator"
        )
    return target


def _download_url(t: Transport, stub: Any, run_id: str, path: str) -> tuple[PresignedUrl, FileInfo]:
    request = pb.CreateArtifactDownloadUrlRequest(run_id=run_id, path=path)
    reply = t.call(stub.CreateArtifactDownloadUrl, request)
    return presigned_to_entity(reply.download_url), file_info_to_entity(reply.file)


# A busy path retried at the outermost call only: nested retries would multiply the wait.
download_url = _path_busy(Unavailable)(_download_url)


@_path_busy(Unavailable)
def open_run_artifact(
    t: Transport,
    stub: Any,
    run_id: str,
    path: str,
    timeout: float | None = _STREAM_TIMEOUT,
    idle_timeout: float | None = None,
) -> tuple[FileInfo, Iterator[bytes]]:
    request = pb.DownloadArtifactRequest(run_id=run_id, path=path)
    return open_stream(t, stub.DownloadArtifact, request, timeout, idle_timeout)


@_path_busy(Aborted)
def delete(t: Transport, stub: Any, run_id: str, path: str) -> None:
    t.call(stub.DeleteArtifact, pb.DeleteArtifactRequest(run_id=run_id, path=path))


def open_stream(
    t: Transport,
    method: Any,
    request: Any,
    timeout: float | None = _STREAM_TIMEOUT,
    idle_timeout: float | None = None,
) -> tuple[FileInfo, Iterator[bytes]]:
    """Start a download stream: the header's FileInfo, then an iterator over the chunks
    (closing it cancels the stream). `timeout` and `idle_timeout` as Transport.stream's.

    Download RPCs of every service share this shape (FileInfo first, then bytes).
    """
    responses = t.stream(method, request, timeout=timeout, idle_timeout=idle_timeout)
    first = next(responses)
    if first.WhichOneof("part") != "file":
        responses.close()
        raise DataLoss("the server sent bytes before describing the file; retry the download")
    return file_info_to_entity(first.file), _chunks(responses)


def _chunks(responses: Generator[Any]) -> Iterator[bytes]:
    with contextlib.closing(responses):
        for message in responses:
            yield message.chunk


def save_stream(info: FileInfo, chunks: Iterator[bytes], target: Path) -> None:
    """Write a download to `target` atomically, refusing it unless it hashes to info.sha256;
    a failed download leaves nothing behind."""
    make_dir(target.parent)
    if target.is_dir():
        raise InvalidArgument(
            f"dst_path: artifact {info.path!r} would replace the directory {target}; pass "
            "another destination, or move that directory away first",
            field="dst_path",
        )
    # A short name of its own beside the target (so the rename is atomic): one derived from the
    # target's is over the file system's 255 bytes for the longest names uploads take. Not
    # tempfile's, which would leave the file readable by its owner only.
    tmp = target.with_name(f".modelyard-{uuid.uuid4().hex}.part")
    h = hashlib.sha256()
    try:
        with open(tmp, "xb") as out:
            for chunk in chunks:
                h.update(chunk)
                out.write(chunk)
        if info.sha256 and h.hexdigest() != info.sha256:
            raise DataLoss(
                f"artifact {info.path!r} arrived with sha256 {h.hexdigest()}, but the server "
                f"recorded {info.sha256}; download it again"
            )
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@_path_busy(Unavailable)
def _download_file(
    t: Transport, stub: Any, run_id: str, path: str, size: int | None, target: Path
) -> None:
    """Big files, and single files of unknown size, come straight from object storage when the
    store presigns URLs; the rest, and every file of a local store, stream through the service."""
    if size is None or size >= PRESIGN_THRESHOLD:
        try:
            url, info = _download_url(t, stub, run_id, path)
        except FailedPrecondition:
            pass  # the store has no URLs (local files): stream through the service instead
        else:
            size = info.file_size or 0
            if size >= PRESIGN_THRESHOLD:
                _fetch(url, info, target)
                return
    request = pb.DownloadArtifactRequest(run_id=run_id, path=path)
    timeout = _deadline(size or 0, _STREAM_TIMEOUT)
    save_stream(*open_stream(t, stub.DownloadArtifact, request, timeout), target)


def _fetch(url: PresignedUrl, info: FileInfo, target: Path) -> None:
    response = _http(url.method, url.url, info.path, preload_content=False)
    try:
        save_stream(info, response.stream(CHUNK), target)
    except urllib3.exceptions.HTTPError as exc:
        raise _unreachable(url.method, info.path, exc) from None
    finally:
        response.release_conn()


def _http(method: str, url: str, path: str, **kwargs: Any) -> urllib3.BaseHTTPResponse:
    """A request to a presigned URL; a failure becomes Unavailable with what to check."""
    try:
        reply = urllib3.request(
            method, url, timeout=urllib3.Timeout(connect=10, read=_STREAM_TIMEOUT), **kwargs
        )
    except urllib3.exceptions.HTTPError as exc:
        raise _unreachable(method, path, exc) from None
    if reply.status >= 300:
        reply.release_conn()
        raise Unavailable(
            f"object storage refused the {method} of {path!r} (HTTP {reply.status}); retry (the "
            "presigned URL may have expired), or check that its endpoint is reachable from this "
            "machine (MODELYARD_S3__PUBLIC_ENDPOINT on the server)"
        )
    return reply


def _unreachable(method: str, path: str, exc: Exception) -> Unavailable:
    return Unavailable(
        f"the {method} of {path!r} through its presigned URL failed ({exc}); retry, or check "
        "that the URL's endpoint is reachable from this machine (MODELYARD_S3__PUBLIC_ENDPOINT on "
        "the server)"
    )
