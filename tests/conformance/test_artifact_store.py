"""The artifact store contract, on local files and on real S3 servers: rclone serve s3, and
SeaweedFS, which unlike rclone pins a copy's source by ETag and copies in parts on the server."""

from __future__ import annotations

import hashlib
import io
import os
import pathlib
import re
from collections.abc import Iterator
from datetime import timedelta
from xml.etree.ElementTree import ParseError

import pytest
import urllib3

from modelyard.errors import FailedPrecondition, InvalidArgument, NotFound
from modelyard.services.common.artifacts import (
    STAGING_DIR,
    ArtifactStore,
    StoredFile,
    clean_path,
    open_artifact_store,
    staged_upload_key,
)
from modelyard.services.common.artifacts.local import LocalArtifactStore
from modelyard.services.common.artifacts.s3 import S3ArtifactStore
from modelyard.services.common.settings import S3Settings


@pytest.fixture
def store(artifact_backend: tuple[str, S3Settings]) -> Iterator[ArtifactStore]:
    root, s3 = artifact_backend
    s = open_artifact_store(root, s3)
    yield s
    s.close()


def chunks(data: bytes, size: int = 1000) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def backend(request: pytest.FixtureRequest) -> str:
    """The `artifact_backend` this test runs on ('file', 's3' (rclone), 'seaweedfs', ...)."""
    return request.node.callspec.params["artifact_backend"]


# S3 servers that implement what rclone lacks: CopyObject with x-amz-copy-source-if-match (the
# copy takes only the bytes that were hashed) and UploadPartCopy (copies beyond one request).
on_copying_s3_servers = pytest.mark.parametrize(
    "artifact_backend",
    [
        pytest.param("seaweedfs", marks=pytest.mark.s3),
        pytest.param("minio-container", marks=pytest.mark.docker),
    ],
    indirect=True,
)


def test_write_read_digest(store: ArtifactStore) -> None:
    data = os.urandom(10_000)
    stored = store.write("run/a/file.bin", chunks(data))
    assert stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert b"".join(store.read("run/a/file.bin", chunk_size=777)) == data
    assert store.size("run/a/file.bin") == len(data)
    assert store.digest("run/a/file.bin") == stored


def test_empty_file(store: ArtifactStore) -> None:
    stored = store.write("empty", iter([]))
    assert stored.size == 0 and b"".join(store.read("empty")) == b""


def test_large_file_streams_in_parts(store: ArtifactStore) -> None:
    # Bigger than one S3 multipart part (5 MiB in the test settings).
    data = os.urandom(12 * 1024 * 1024 + 17)
    stored = store.write("big.bin", chunks(data, 1024 * 1024))
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert hashlib.sha256(b"".join(store.read("big.bin"))).hexdigest() == stored.sha256


def test_declared_digest_mismatch_keeps_the_old_file(store: ArtifactStore) -> None:
    store.write("f.txt", iter([b"old"]))
    with pytest.raises(InvalidArgument, match="sha256"):
        store.write("f.txt", iter([b"new bytes"]), expected_sha256="0" * 64)
    assert b"".join(store.read("f.txt")) == b"old"
    good = hashlib.sha256(b"new").hexdigest()
    store.write("f.txt", iter([b"new"]), expected_sha256=good)
    assert b"".join(store.read("f.txt")) == b"new"


def test_missing_file(store: ArtifactStore) -> None:
    assert store.size("nope") is None
    with pytest.raises(NotFound):
        b"".join(store.read("nope"))
    store.delete("nope")  # deleting what is not there is fine


def test_listing_copy_and_prefix_delete(store: ArtifactStore) -> None:
    for i in range(30):
        store.write(f"exp/run/{i:02d}.txt", iter([str(i).encode()]))
    store.write("exp/runner.txt", iter([b"outside the prefix"]))
    listed = sorted(store.iter_files("exp/run"))
    assert [k for k, _ in listed] == [f"exp/run/{i:02d}.txt" for i in range(30)]
    store.copy("exp/run/07.txt", "copy/07.txt")
    assert b"".join(store.read("copy/07.txt")) == b"7"
    assert store.delete_prefix("exp/run") == 30
    assert list(store.iter_files("exp/run")) == []
    assert b"".join(store.read("exp/runner.txt")) == b"outside the prefix"


RUN = "0123456789abcdef0123456789abcdef"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_promote_copies_only_verified_bytes_into_place(store: ArtifactStore) -> None:
    store.write("run/f.bin", iter([b"old"]))
    staged = staged_upload_key(RUN, "f.bin", "1" * 32)
    store.write(staged, iter([b"new"]))
    with pytest.raises(InvalidArgument, match="sha256") as err:
        store.promote(staged, "run/f.bin", sha(b"other"))
    assert err.value.field == "sha256"
    assert b"".join(store.read("run/f.bin")) == b"old"
    promoted = store.promote(staged, "run/f.bin", sha(b"new"))
    assert (promoted.key, promoted.size, promoted.sha256) == ("run/f.bin", 3, sha(b"new"))
    assert b"".join(store.read("run/f.bin")) == b"new"
    assert b"".join(store.read(staged)) == b"new"  # the caller deletes it


def test_promote_onto_a_directory_keeps_its_files(store: ArtifactStore) -> None:
    """rclone would replace the directory's files by the copy: the clash is refused first."""
    store.write("run/model/MLmodel", iter([b"manifest"]))
    staged = staged_upload_key(RUN, "model", "2" * 32)
    store.write(staged, iter([b"file"]))
    with pytest.raises(FailedPrecondition) as err:
        store.promote(staged, "run/model", sha(b"file"))
    assert err.value.resource_name == "run/model" and "is a directory" in err.value.message
    assert b"".join(store.read("run/model/MLmodel")) == b"manifest"
    assert store.size("run/model") is None


def test_copies_beyond_one_copy_request(store: ArtifactStore) -> None:
    """Over S3's limit for one CopyObject (lowered here to 5 MiB), S3 stores copy in parts
    (minio's compose_object); servers without UploadPartCopy (rclone) get a streamed copy."""
    data = os.urandom(12 * 1024 * 1024 + 17)
    staged = staged_upload_key(RUN, "big.bin", "3" * 32)
    store.write(staged, chunks(data, 1024 * 1024))
    trace = io.StringIO()
    if isinstance(store, S3ArtifactStore):
        store.max_copy_size = 5 * 1024 * 1024
        store.client.trace_on(trace)
    store.copy(staged, "copy/big.bin")
    promoted = store.promote(staged, "run/big.bin", sha(data))
    if isinstance(store, S3ArtifactStore):
        store.client.trace_off()
        assert trace.getvalue().lower().count("x-amz-copy-source-range: bytes=0-5242879") == 2
    assert promoted.size == len(data)
    for key in ("copy/big.bin", "run/big.bin"):
        assert store.digest(key).sha256 == sha(data)


PART = 5 * 1024 * 1024  # S3's smallest part but the last


def replace_after_hashing(
    store: ArtifactStore, monkeypatch: pytest.MonkeyPatch, staged: str, data: bytes
) -> None:
    """Make `promote` meet a second PUT to the staged key (a client reusing its upload URL) right
    after it hashed the bytes there and before it copies them: the race it must lose safely."""
    verify = store.verify

    def verify_then_replace(key: str, sha256: str) -> StoredFile:
        stored = verify(key, sha256)
        if key == staged:
            store.write(staged, chunks(data, 1024 * 1024))
        return stored

    monkeypatch.setattr(store, "verify", verify_then_replace)


@on_copying_s3_servers
def test_promote_copies_none_of_the_bytes_put_after_hashing(
    store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CopyObject names the hashed bytes' ETag: a PUT since makes it fail, nothing is stored."""
    store.write("run/f.bin", iter([b"old"]))
    staged = staged_upload_key(RUN, "f.bin", "6" * 32)
    store.write(staged, iter([b"verified"]))
    replace_after_hashing(store, monkeypatch, staged, b"unverified")
    with pytest.raises(FailedPrecondition) as err:
        store.promote(staged, "run/f.bin", sha(b"verified"))
    assert err.value.resource_name == "run/f.bin"
    assert b"".join(store.read("run/f.bin")) == b"old"
    assert b"".join(store.read(staged)) == b"unverified"  # the race did happen


@on_copying_s3_servers
def test_copies_in_parts_on_the_server(
    store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parts of `max_copy_size` (lowered to S3's 5 MiB minimum), a shorter last one, all copied
    by the server (UploadPartCopy): no byte passes through this process."""
    assert isinstance(store, S3ArtifactStore)
    data = os.urandom(2 * PART + 1024 * 1024 + 17)
    staged = staged_upload_key(RUN, "big.bin", "7" * 32)
    store.write(staged, chunks(data, 1024 * 1024))
    store.max_copy_size = PART

    def streamed(*args: object) -> None:
        raise AssertionError("the copy went through this process")

    monkeypatch.setattr(store, "_put", streamed)  # what a streamed copy ends in
    trace = io.StringIO()
    store.client.trace_on(trace)
    promoted = store.promote(staged, "run/big.bin", sha(data))
    store.client.trace_off()
    ranges = re.findall(r"x-amz-copy-source-range: bytes=(\d+)-(\d+)", trace.getvalue(), re.I)
    last = (2 * PART, len(data) - 1)  # 1 MiB and 17 bytes
    assert [(int(a), int(b)) for a, b in ranges] == [(0, PART - 1), (PART, 2 * PART - 1), last]
    assert promoted == StoredFile("run/big.bin", len(data), sha(data))
    assert b"".join(store.read("run/big.bin")) == data


@on_copying_s3_servers
def test_copy_in_parts_refuses_bytes_put_after_hashing(
    store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every part is pinned to the hashed bytes' ETag; new bytes of the same size (the same
    parts) fail the copy, and the multipart copy stores nothing."""
    assert isinstance(store, S3ArtifactStore)
    data = os.urandom(2 * PART + 1024 * 1024 + 17)
    store.write("run/big.bin", iter([b"old"]))
    staged = staged_upload_key(RUN, "big.bin", "8" * 32)
    store.write(staged, chunks(data, 1024 * 1024))
    store.max_copy_size = PART
    replace_after_hashing(store, monkeypatch, staged, data[::-1])
    with pytest.raises(FailedPrecondition) as err:
        store.promote(staged, "run/big.bin", sha(data))
    assert err.value.resource_name == "run/big.bin"
    assert b"".join(store.read("run/big.bin")) == b"old"
    assert store.digest(staged).sha256 == sha(data[::-1])  # the race did happen


@on_copying_s3_servers
def test_streamed_copy_refuses_bytes_put_after_hashing(
    store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where a server lacks UploadPartCopy (rclone answers with an empty body, which minio cannot
    parse), the copy streams through this process; it too must take only the hashed bytes."""
    assert isinstance(store, S3ArtifactStore)

    def no_part_copy(*args: object, **kwargs: object) -> None:
        raise ParseError("no element found: line 1, column 0")

    monkeypatch.setattr(store.client, "compose_object", no_part_copy)
    data = os.urandom(PART + 17)
    store.write("run/big.bin", iter([b"old"]))
    staged = staged_upload_key(RUN, "big.bin", "9" * 32)
    store.write(staged, chunks(data, 1024 * 1024))
    store.max_copy_size = PART
    replace_after_hashing(store, monkeypatch, staged, data[::-1])
    with pytest.raises(FailedPrecondition) as err:
        store.promote(staged, "run/big.bin", sha(data))
    assert err.value.resource_name == "run/big.bin"
    assert b"".join(store.read("run/big.bin")) == b"old"


def test_listings_skip_staged_uploads(store: ArtifactStore) -> None:
    store.write("exp/f.txt", iter([b"f"]))
    staged = staged_upload_key(RUN, "f.txt", "4" * 32)
    store.write(staged, iter([b"staged"]))
    assert list(store.iter_files("")) == [("exp/f.txt", 1)]
    assert [k for k, _ in store.iter_files(staged_upload_key(RUN, "f.txt"))] == [staged]


def test_sweep_removes_only_abandoned_staged_uploads(store: ArtifactStore) -> None:
    store.write("exp/f.txt", iter([b"f"]))
    staged = staged_upload_key(RUN, "f.txt", "5" * 32)
    store.write(staged, iter([b"staged"]))
    # Files of an experiment placed in the staging directory before its name was reserved.
    squatter = f"{STAGING_DIR}/{RUN}/artifacts/f.txt"
    store.write(squatter, iter([b"mine"]))
    assert store.sweep_staged(timedelta(days=1)) == 0  # written just now
    assert store.size(staged) == 6
    assert store.sweep_staged(timedelta(0)) == 1
    assert store.size(staged) is None
    assert b"".join(store.read(squatter)) == b"mine"
    assert b"".join(store.read("exp/f.txt")) == b"f"


def test_keys_and_uris(store: ArtifactStore) -> None:
    assert store.key_for(store.uri("a/b")) == "a/b"
    assert store.key_for(store.root_uri) == ""
    assert store.key_for("file:///somewhere/else") is None
    with pytest.raises(InvalidArgument):
        store.key_for(store.root_uri + "/../escape")


@pytest.mark.parametrize(
    "bad",
    ["../x", "a/../../x", "/etc/passwd", "a\\b", "C:/x", "C:", "c:\\x", "a\x00b", "", "x" * 2000],
)
def test_clean_path_rejects_escapes(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        clean_path(bad)


def test_clean_path_normalizes() -> None:
    assert clean_path("a//b/./c/") == "a/b/c"


@pytest.mark.parametrize("name", ["a:b", "1:2.txt", "t:checkpoint", "C:x", "dir/C:", "ab:/c"])
def test_names_with_a_colon_are_not_windows_drives(name: str) -> None:
    """Only a drive letter alone or before a separator ('C:', 'C:/x') is absolute on Windows;
    a colon elsewhere is an ordinary character on Linux and S3."""
    assert clean_path(name) == name


def test_a_windows_drive_is_refused_as_one() -> None:
    with pytest.raises(InvalidArgument, match="Windows drive") as err:
        clean_path("D:/models/x", field="source")
    assert err.value.field == "source"


def test_presigned_urls(store: ArtifactStore) -> None:
    if store.root_uri.startswith("file:"):
        with pytest.raises(FailedPrecondition, match="UploadArtifact"):
            store.presign_put("x")
        return
    put = store.presign_put("pre/x.txt")
    assert put.method == "PUT"
    assert urllib3.request("PUT", put.url, body=b"direct").status == 200
    assert b"".join(store.read("pre/x.txt")) == b"direct"
    get = store.presign_get("pre/x.txt")
    assert urllib3.request("GET", get.url).data == b"direct"


@pytest.mark.s3
@pytest.mark.parametrize("server", ["s3_server", "seaweedfs_server"])
def test_s3_wrong_credentials_fail_clearly(server: str, request: pytest.FixtureRequest) -> None:
    s3: S3Settings = request.getfixturevalue(server)
    bad = S3Settings.model_validate({**s3.model_dump(), "secret_key": "wrong-secret-key"})
    with pytest.raises(FailedPrecondition, match="credentials"):
        open_artifact_store("s3://modelyard-test/x", bad)


def test_a_file_inside_a_file_is_refused_clearly(
    store: ArtifactStore, request: pytest.FixtureRequest
) -> None:
    """Local disks, MinIO and rclone cannot store 'f/g' beside a file 'f' (AWS S3 and SeaweedFS
    can; the services refuse such paths from their records before a write gets here)."""
    store.write("f", iter([b"f"]))
    if backend(request) == "seaweedfs":
        store.write("f/g", iter([b"new"]))  # no clash to explain: both are stored
        assert sorted(store.iter_files("")) == [("f", 1), ("f/g", 3)]
        assert b"".join(store.read("f")) == b"f"
        return
    with pytest.raises(FailedPrecondition) as err:
        store.write("f/g", iter([b"new"]))
    assert err.value.resource_name == "f/g"
    assert "inside 'f', which is a file" in err.value.message
    assert sorted(store.iter_files("")) == [("f", 1)]
    assert b"".join(store.read("f")) == b"f"


def test_local_store_refuses_a_file_where_a_directory_is(tmp_path) -> None:
    root = tmp_path / "root"
    store = open_artifact_store(root.as_uri())
    store.write("m/x", iter([b"x"]))
    with pytest.raises(FailedPrecondition) as err:
        store.write("m", iter([b"new"]))
    assert err.value.resource_name == "m"
    assert "'m' is a directory (it holds 'm/x')" in err.value.message
    assert "DeleteArtifact" in err.value.message
    # Nothing left behind, temporary files included.
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == ["m/x"]
    # A directory whose files were deleted is no obstacle: S3 has no directories at all.
    store.delete("m/x")
    store.write("m", iter([b"m"]))
    assert b"".join(store.read("m")) == b"m"


def test_local_store_refuses_symlink_escape(tmp_path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    store = open_artifact_store(root.as_uri())
    with pytest.raises(InvalidArgument, match="symbolic link") as err:
        store.write("link/evil.txt", iter([b"x"]))
    assert err.value.field == "path" and "'link/evil.txt'" in err.value.message
    assert not (outside / "evil.txt").exists()


# A placement on a local disk prunes the staging directories it empties, while another upload of
# the same run may be making them: a directory can vanish between mkdir and its use.


def test_a_directory_pruned_before_the_file_is_opened_is_made_again(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalArtifactStore(tmp_path.as_uri())
    made = store._parent_ready
    pruned: list[str] = []

    def pruned_once(key: str) -> pathlib.Path:
        final = made(key)
        if not pruned:
            final.parent.rmdir()  # as a placement does, once the directory is empty
            pruned.append(key)
        return final

    monkeypatch.setattr(store, "_parent_ready", pruned_once)
    stored = store.write("a/b/f.txt", iter([b"bytes"]))
    assert pruned == ["a/b/f.txt"]
    assert stored.sha256 == sha(b"bytes")
    assert b"".join(store.read("a/b/f.txt")) == b"bytes"


def test_a_directory_pruned_while_mkdir_checks_it_is_made_again(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mkdir(exist_ok=True) raises FileExistsError when the directory it found is gone by the
    time it checks it."""
    store = LocalArtifactStore(tmp_path.as_uri())
    real = pathlib.Path.mkdir
    raced: list[pathlib.Path] = []

    def vanished_once(self: pathlib.Path, *args: object, **kwargs: object) -> None:
        if not raced and self.name == "b":
            raced.append(self)
            raise FileExistsError(17, "File exists", str(self))
        real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pathlib.Path, "mkdir", vanished_once)
    store.write("a/b/f.txt", iter([b"bytes"]))
    assert [p.name for p in raced] == ["b"]
    assert b"".join(store.read("a/b/f.txt")) == b"bytes"
