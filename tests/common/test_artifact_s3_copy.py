"""Round trips of placing staged bytes on S3: the staged object's size is known from hashing it,
so placing (and promoting) it asks the server for it no more. Real S3 servers, their HTTP traced."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from modelyard.services.common.artifacts import (
    ArtifactStore,
    PathClash,
    StoredFile,
    open_artifact_store,
    staged_upload_key,
)
from modelyard.services.common.artifacts.s3 import S3ArtifactStore
from modelyard.services.common.settings import S3Settings
from tests.conftest import S3_ACCESS_KEY, S3_BUCKET, S3_SECRET_KEY

RUN = "0123456789abcdef0123456789abcdef"
PART = 5 * 1024 * 1024  # S3's smallest part: the lowest `max_copy_size` can go

on_s3_servers = pytest.mark.parametrize(
    "artifact_backend",
    [pytest.param("s3", marks=pytest.mark.s3), pytest.param("seaweedfs", marks=pytest.mark.s3)],
    indirect=True,
)


@pytest.fixture
def store(artifact_backend: tuple[str, S3Settings]) -> Iterator[ArtifactStore]:
    s = open_artifact_store(*artifact_backend)
    yield s
    s.close()


def heads_of(trace: str, store: S3ArtifactStore, key: str) -> int:
    """HEAD requests for `key` in a minio trace."""
    name = re.escape(f"/{store.bucket}/{store._name(key)}")
    return len(re.findall(rf"^HEAD {name}\b", trace, re.M))


@on_s3_servers
@pytest.mark.parametrize("size", [10, 2 * PART + 17])
def test_placing_staged_bytes_looks_up_no_size(store: ArtifactStore, size: int) -> None:
    """Once verified, the staged object's size is known: placing it asks the server for it no
    more, whether copied in one request or in parts (or streamed where the server cannot copy
    parts). What HEADs remain are minio's own, one per source of a CopyObject or of each part,
    and, when promoting, the one that pins the hashed bytes."""
    assert isinstance(store, S3ArtifactStore)
    store.max_copy_size = PART
    data = os.urandom(size)
    digest = hashlib.sha256(data).hexdigest()
    sources = -(-size // PART)  # minio looks at each before copying it
    for how, pin in (("place", 0), ("promote", 1)):
        staged = staged_upload_key(RUN, "f.bin", str(pin) * 32)
        store.write(staged, iter([data[i : i + PART] for i in range(0, size, PART)]))
        verified = store.verify_staged(staged, digest) if how == "place" else None
        trace = io.StringIO()
        store.client.trace_on(trace)
        try:
            if verified is not None:
                placed = store.place(verified, f"exp/{how}.bin")
            else:
                placed = store.promote(staged, f"exp/{how}.bin", digest)
        finally:
            store.client.trace_off()
        assert heads_of(trace.getvalue(), store, staged) == sources + pin, how
        assert placed == StoredFile(f"exp/{how}.bin", size, digest)
        assert store.digest(f"exp/{how}.bin") == placed


@pytest.mark.s3
@pytest.mark.parametrize("artifact_backend", ["s3"], indirect=True)
def test_a_copy_refused_where_no_file_explains_it_is_a_clash(store: ArtifactStore) -> None:
    """Two uploads racing, 'x' and 'x/y': the pre-check of 'x' finds nothing, then the other
    makes 'x' a directory and rclone refuses the copy onto it (HTTP 500, retried, then listed as
    a file). That answered INTERNAL; it is a clash, which leaves storage as it was."""
    store.write("run/x/y", iter([b"y"]))
    staged = store.write("staged", iter([b"x"]))
    with pytest.raises(PathClash) as err:
        store._copy(staged.key, "run/x", None, staged.size)  # past the pre-check, as in a race
    assert "retry" in err.value.message
    assert err.value.under("run").resource_name == "x"


# Streams uploads of `size` MB, `uploads` at once, into an S3 store with 16 MB parts, in a fresh
# process; prints how much its peak resident memory grew meanwhile, in MB.
_UPLOADS_MEMORY = """
import json, os, sys, threading
from modelyard.services.common.artifacts.s3 import S3ArtifactStore
from modelyard.services.common.settings import S3Settings

settings = S3Settings(**json.loads(sys.argv[1]), part_size_mb=16)
size, uploads = int(sys.argv[3]), int(sys.argv[4])
store = S3ArtifactStore(sys.argv[2], settings)
chunk = os.urandom(1024 * 1024)

def peak():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) // 1024

store.write("warm", iter([chunk]))
before = peak()
writers = [
    threading.Thread(target=store.write, args=(f"f{i}", iter([chunk] * size)))
    for i in range(uploads)
]
for w in writers:
    w.start()
for w in writers:
    w.join()
assert all(store.size(f"f{i}") == size * 1024 * 1024 for i in range(uploads))
print(peak() - before)
"""


@pytest.mark.s3
def test_a_streamed_upload_holds_about_one_part_in_memory(s3_server: S3Settings) -> None:
    """Streams of unknown length go up in part_size_mb parts; minio's put_object held about
    five copies of each part per upload (4 uploads of 80 MB at 16 MB parts: +355 MB), a way to
    exhaust a small pod's memory with concurrent uploads. Each now holds one part."""
    uploads, part_mb = 4, 16
    settings = {
        "endpoint": s3_server.endpoint,
        "access_key": S3_ACCESS_KEY,
        "secret_key": S3_SECRET_KEY,
        "region": s3_server.region,
    }
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            _UPLOADS_MEMORY,
            json.dumps(settings),
            f"s3://{S3_BUCKET}/{uuid.uuid4().hex[:12]}",
            "80",
            str(uploads),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    grown = int(out.stdout.strip().splitlines()[-1])
    assert grown < uploads * 2 * part_mb, out.stdout
