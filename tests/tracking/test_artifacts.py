"""Run artifacts end to end over real gRPC, through the SDK: paths, transfers, presigned URLs.

The `stack` tests run on both stacks (tests/tracking/conftest.py); the presigned URL tests need S3.
A recording interceptor on the client's channel shows which RPCs a transfer made, and with what
deadline.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import grpc
import pytest
import urllib3

from modelyard import Client
from modelyard._gen.tracking.v1 import tracking_pb2 as pb
from modelyard._gen.tracking.v1 import tracking_pb2_grpc as pb_grpc
from modelyard.client import _artifacts
from modelyard.client._transport import DEFAULT_TIMEOUT, Transport
from modelyard.entities import Run
from modelyard.errors import (
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from modelyard.services.common.artifacts import (
    STAGING_DIR,
    ArtifactStore,
    PathClash,
    is_staging,
    open_artifact_store,
)
from modelyard.services.common.artifacts.s3 import S3ArtifactStore
from modelyard.services.common.pagination import encode_token, fingerprint
from modelyard.services.common.settings import S3Settings, Settings
from tests.conftest import S3_BUCKET, free_port, running_server, serve_s3


def storage(settings: Settings, run: Run) -> ArtifactStore:
    """The run's artifacts as the server stores them, to look (or tamper) under the service."""
    return open_artifact_store(run.info.artifact_uri, settings.s3)


def stored_keys(settings: Settings, run: Run) -> list[str]:
    return sorted(key for key, _ in storage(settings, run).iter_files(""))


def listed(client: Client, run: Run) -> list[str]:
    return [f.path for f in client.iter_artifacts(run.info.run_id, recursive=True)]


# -- on both stacks ----------------------------------------------------------------------------


def test_artifacts_round_trip(stack: Client, tmp_path: Path) -> None:
    rid = stack.create_run("0").info.run_id
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha")
    (src / "sub" / "b.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 5))
    stack.log_artifacts(rid, src, "outputs")
    stack.log_text(rid, "hello", "notes/readme.md")
    stack.log_dict(rid, {"a": 1}, "config.json")
    top = stack.list_artifacts(rid)
    assert [(f.path, f.is_dir) for f in top] == [
        ("config.json", False),
        ("notes", True),
        ("outputs", True),
    ]
    files = {f.path: f for f in stack.list_artifacts(rid, "outputs/sub")}
    digest = hashlib.sha256((src / "sub" / "b.bin").read_bytes()).hexdigest()
    assert files["outputs/sub/b.bin"].sha256 == digest
    out = Path(stack.download_artifacts(rid, "outputs", tmp_path / "dst"))
    assert (out / "a.txt").read_text() == "alpha"
    assert (out / "sub" / "b.bin").read_bytes() == (src / "sub" / "b.bin").read_bytes()
    single = Path(stack.download_artifacts(rid, "notes/readme.md", tmp_path / "one"))
    assert single.read_text() == "hello"
    stack.delete_artifact(rid, "outputs")
    assert [f.path for f in stack.list_artifacts(rid)] == ["config.json", "notes"]
    with pytest.raises(NotFound):
        stack.download_artifacts(rid, "outputs/a.txt", tmp_path / "gone")


def test_artifact_paths_cannot_escape(stack: Client) -> None:
    rid = stack.create_run("0").info.run_id
    for bad in ("../../etc/passwd", "/abs/x", "a/../../b"):
        with pytest.raises(InvalidArgument) as err:
            stack.log_text(rid, "x", bad)
        assert err.value.field == "path"
    assert stack.list_artifacts(rid) == []


def test_artifact_paths_the_store_cannot_take_are_refused(stack: Client, tmp_path: Path) -> None:
    """A name over 255 bytes fits no file system, and S3 keys end at 1024 bytes, the run's root
    included: refused naming the path, where both failed in the store, as INTERNAL."""
    rid = stack.create_run("0").info.run_id
    with pytest.raises(InvalidArgument, match="at most 255") as err:
        stack.log_text(rid, "x", "\u5b9e" * 100)  # 100 characters, 300 bytes
    assert err.value.field == "path"
    deep = "/".join(["d" * 200] * 5)  # no name too long; 1004 bytes
    if stack.get_run(rid).info.artifact_uri.startswith("s3://"):
        with pytest.raises(InvalidArgument, match="at most 1024") as err:
            stack.log_text(rid, "x", deep)
        assert err.value.field == "path"
        assert stack.list_artifacts(rid) == []
    else:
        stack.log_text(rid, "kept", deep)
        assert Path(stack.download_artifacts(rid, deep, tmp_path)).read_text() == "kept"


def test_files_with_the_longest_names_download(stack: Client, tmp_path: Path) -> None:
    """A 255-byte name is the longest uploads take; the download's temporary file beside the
    target must not be named after it, or it is too long for the file system (ENAMETOOLONG)."""
    rid = stack.create_run("0").info.run_id
    name = "x" * 251 + ".txt"
    stack.log_text(rid, "long", f"model/{name}")
    single = Path(stack.download_artifacts(rid, f"model/{name}", tmp_path / "one"))
    assert single.name == name and single.read_text() == "long"
    whole = Path(stack.download_artifacts(rid, "", tmp_path / "all"))
    assert sorted(p.name for p in whole.rglob("*")) == ["model", name]
    stack.create_model_version("long", f"runs:/{rid}/model")
    version = stack.download_model_version("long", 1, tmp_path / "v1")
    assert [p.name for p in version.iterdir()] == [name]
    assert (version / name).read_text() == "long"


def test_a_directory_downloads_the_same_however_its_path_is_spelled(
    stack: Client, tmp_path: Path
) -> None:
    """The server lists paths in normal form; a download of './model' took the listed paths
    apart by the length of the caller's spelling, and wrote 'MLmodel' as 'model'."""
    rid = stack.create_run("0").info.run_id
    stack.log_text(rid, "manifest", "model/MLmodel")
    stack.log_text(rid, "weights", "model/sub/weights.bin")
    stack.log_text(rid, "deep", "a/b/c.txt")

    def tree(root: Path) -> dict[str, str]:
        return {
            p.relative_to(root).as_posix(): p.read_text() for p in root.rglob("*") if p.is_file()
        }

    for i, (spelling, name, files) in enumerate(
        (
            ("./model", "model", {"MLmodel": "manifest", "sub/weights.bin": "weights"}),
            ("model/./", "model", {"MLmodel": "manifest", "sub/weights.bin": "weights"}),
            ("./model/sub", "sub", {"weights.bin": "weights"}),
            ("a//b", "b", {"c.txt": "deep"}),
        )
    ):
        dst = tmp_path / f"dst{i}"
        out = Path(stack.download_artifacts(rid, spelling, dst))
        assert out == dst / name, spelling
        assert sorted(p.name for p in dst.iterdir()) == [name], spelling
        assert tree(out) == files, spelling
    single = Path(stack.download_artifacts(rid, "./model//MLmodel", tmp_path / "one"))
    assert single == tmp_path / "one" / "MLmodel" and single.read_text() == "manifest"


def test_a_download_writes_nothing_outside_its_destination(stack: Client, tmp_path: Path) -> None:
    """A file planted in a shared run, whose name a misaligned download would have read as an
    absolute path ('model/ab' + '/<dir>/planted.txt'), lands inside the destination."""
    rid = stack.create_run("0").info.run_id
    outside = tmp_path / "outside" / "planted.txt"
    stack.log_text(rid, "manifest", "model/MLmodel")
    stack.log_text(rid, "planted", f"model/ab{outside}")
    out = Path(stack.download_artifacts(rid, "./model", tmp_path / "dst"))
    assert not outside.exists()
    assert (out / f"ab{outside}").read_text() == "planted"
    assert (out / "MLmodel").read_text() == "manifest"


@pytest.mark.parametrize("listed", ["/etc/evil", "../evil", "a/../../evil"])
def test_a_listed_path_out_of_the_destination_is_refused(tmp_path: Path, listed: str) -> None:
    """Defence in depth: whatever a server lists, the client writes only inside `dst`."""
    with pytest.raises(DataLoss, match="outside") as err:
        _artifacts.inside(tmp_path / "dst", listed, listed)
    assert repr(listed) in err.value.message
    assert _artifacts.inside(tmp_path, "a/./b", "a/b") == tmp_path / "a" / "b"


def test_download_detects_corruption(
    stack: Client, stack_settings: Settings, tmp_path: Path
) -> None:
    run = stack.create_run("0")
    stack.log_text(run.info.run_id, "original", "f.txt")
    storage(stack_settings, run).write("f.txt", iter([b"tampered"]))  # behind the service
    with pytest.raises(DataLoss, match="sha256"):
        stack.download_artifacts(run.info.run_id, "f.txt", tmp_path / "dst")
    assert list((tmp_path / "dst").iterdir()) == []  # neither the file nor a partial one


def test_a_path_cannot_be_a_file_and_a_directory(
    stack: Client, stack_settings: Settings, tmp_path: Path
) -> None:
    run = stack.create_run("0")
    rid = run.info.run_id
    stack.log_text(rid, "manifest", "model/MLmodel")
    stack.log_text(rid, "alpha", "a")
    for path, message in (
        ("model", "'model' is a directory (it holds 'model/MLmodel')"),
        ("a/b", "'a/b' lies inside 'a', which is a file"),
        ("a/b/c", "'a/b/c' lies inside 'a', which is a file"),
    ):
        with pytest.raises(FailedPrecondition) as err:
            stack.log_text(rid, "clash", path)
        assert message in err.value.message and "DeleteArtifact" in err.value.message
        assert (err.value.resource_type, err.value.resource_name) == ("artifact", path)
    # Nothing changed, in the records or in storage.
    assert listed(stack, run) == ["a", "model/MLmodel"]
    assert stored_keys(stack_settings, run) == ["a", "model/MLmodel"]
    assert Path(stack.download_artifacts(rid, "a", tmp_path / "a")).read_text() == "alpha"
    # Deleting the other side frees the path (on local files, despite the directory left behind).
    stack.delete_artifact(rid, "model")
    stack.log_text(rid, "now a file", "model")
    stack.delete_artifact(rid, "a")
    stack.log_text(rid, "now inside a directory", "a/b")
    assert listed(stack, run) == ["a/b", "model"]
    assert stored_keys(stack_settings, run) == ["a/b", "model"]


def test_a_clash_found_in_storage_names_run_relative_paths(
    stack: Client, stack_settings: Settings
) -> None:
    """A file stored but not recorded (left by a crash, or an upload racing this one) is found
    by the store, in its own keys ('<experiment>/<run>/artifacts/a'): the refusal names the
    paths as the run's records would, and as the caller gave them."""
    run = stack.create_run("0")
    rid = run.info.run_id
    store = storage(stack_settings, run)
    store.write("a/b.txt", iter([b"unrecorded"]))
    store.write("c", iter([b"unrecorded"]))
    for path, message in (
        ("a", "artifact path 'a' is a directory (it holds 'a/b.txt')"),
        ("c/d", "artifact path 'c/d' lies inside 'c', which is a file"),
    ):
        with pytest.raises(FailedPrecondition) as err:
            stack.log_text(rid, "clash", path)
        assert err.value.message.startswith(message), err.value.message
        assert rid not in err.value.message and "artifacts/" not in err.value.message
        assert (err.value.resource_type, err.value.resource_name) == ("artifact", path)
    assert listed(stack, run) == []


def test_a_clash_with_a_file_above_the_runs_artifacts_names_no_key() -> None:
    run_dir = "0/5c45e0e58b6c42c0a32df5f7a9e0627e/artifacts"
    inside = PathClash(f"{run_dir}/a/b", f"{run_dir}/a").under(run_dir)
    assert inside.message.startswith("artifact path 'a/b' lies inside 'a', which is a file")
    above = PathClash(f"{run_dir}/a/b", run_dir).under(run_dir)
    assert "'a/b'" in above.message and run_dir not in above.message
    assert (above.resource_type, above.resource_name) == ("artifact", "a/b")


def test_a_symlink_out_of_the_artifact_root_is_refused(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", port=0, grace_period=0)
    with running_server(settings) as server, Client(server.address) as client:
        run = client.create_run("0")
        run_dir = Path(unquote(urlparse(run.info.artifact_uri).path))
        run_dir.mkdir(parents=True, exist_ok=True)
        outside = tmp_path / "outside"
        outside.mkdir()
        (run_dir / "link").symlink_to(outside)
        with pytest.raises(InvalidArgument, match="symbolic link") as err:
            client.log_text(run.info.run_id, "x", "link/evil.txt")
        assert err.value.field == "path" and "link/evil.txt'" in err.value.message
        assert list(outside.iterdir()) == []
        assert client.list_artifacts(run.info.run_id) == []


def paged(
    client: Client, rid: str, path: str = "", recursive: bool = False, size: int = 1
) -> list[str]:
    """Every path ListArtifacts lists, `size` per page."""
    token: str | None = None
    found: list[str] = []
    while True:
        page = client.list_artifacts_page(rid, path, size, token, recursive=recursive)
        assert len(page) <= size
        found += [f.path for f in page]
        token = page.token
        if not token:
            return found


def test_listings_page_through_every_entry_once(stack: Client) -> None:
    """Pages are read in the store's index: a one-level page jumps past each directory's files
    (a token after directory 'd' resumes after every 'd/...'), a recursive one resumes after
    its last file. Every page size lists every entry exactly once."""
    rid = stack.create_run("0").info.run_id
    paths = ["d.txt", "d-1/x", "d0", "e", "top.txt"]
    paths += [f"d/{i:02d}.bin" for i in range(12)] + ["d/sub/deep.bin", "m/a", "m/b/c"]
    for path in paths:
        stack.log_text(rid, path, path)
    level = ["d-1", "d.txt", "d", "d0", "e", "m", "top.txt"]  # a directory where its files sort
    in_d = [f"d/{i:02d}.bin" for i in range(12)] + ["d/sub"]
    for size in (1, 2, 3, 5, 100):
        assert paged(stack, rid, size=size) == level, size
        assert paged(stack, rid, "d", size=size) == in_d, size
        assert paged(stack, rid, recursive=True, size=size) == sorted(paths), size
        assert paged(stack, rid, "m", recursive=True, size=size) == ["m/a", "m/b/c"], size
    assert [f.path for f in stack.list_artifacts(rid)] == level
    assert [(f.path, f.is_dir) for f in stack.list_artifacts(rid, "m")] == [
        ("m/a", False),
        ("m/b", True),
    ]
    # A forged position goes no further than the token's check (PostgreSQL takes no NUL).
    forged = encode_token("any", "d\x00")
    with pytest.raises(InvalidArgument) as err:
        stack._t.call(
            stack._tracking.ListArtifacts, pb.ListArtifactsRequest(run_id=rid, page_token=forged)
        )
    assert err.value.field == "page_token"


def test_listings_of_long_paths_page_with_short_tokens(stack: Client) -> None:
    """A token carried the last path whole: 1024 CJK characters made a ~4 KB token, past what
    a link behind nginx's default 8 KB request line carries beside the path listed. A long
    path's token carries its first bytes and a digest now, found again among the stored
    paths: every listing pages as before, with short tokens. Tokens of before still read; one
    whose file was deleted since says so."""
    rid = stack.create_run("0").info.run_id
    upper = "/".join(["模" * 20] * 4)  # ~630 bytes a path: what S3 takes under a run's key
    long_dir = f"{upper}/{'模' * 20}"
    deep = f"{long_dir}/{'/'.join(['型' * 20] * 4)}"
    paths = [f"{deep}/{'型' * 20}{i}" for i in range(4)] + [f"{long_dir}0", "a"]
    paths += [f"{deep}/{'型' * 20}d{i}/deep" for i in range(2)]
    for path in paths:
        stack.log_text(rid, path, path)
    in_dir = paths[:4] + [f"{deep}/{'型' * 20}d{i}" for i in range(2)]
    tokens: list[str] = []

    def pages(path: str = "", recursive: bool = False, size: int = 1) -> list[str]:
        token: str | None = None
        found: list[str] = []
        while True:
            page = stack.list_artifacts_page(rid, path, size, token, recursive=recursive)
            found += [f.path for f in page]
            token = page.token
            if not token:
                return found
            tokens.append(token)

    for size in (1, 2, 3):
        assert pages(size=size) == ["a", "模" * 20], size
        assert pages(upper, size=size) == [long_dir, f"{long_dir}0"], size
        assert pages(deep, size=size) == in_dir, size
        assert pages(recursive=True, size=size) == sorted(paths), size
    assert max(len(t) for t in tokens) < 400
    before = encode_token(fingerprint("artifacts", rid, "", True), paths[0])  # a path whole
    after = stack.list_artifacts_page(rid, None, 2, before, recursive=True)
    assert [f.path for f in after] == sorted(paths)[sorted(paths).index(paths[0]) + 1 :][:2]
    first = stack.list_artifacts_page(rid, long_dir, 1, recursive=True)
    stack.delete_artifact(rid, first[0].path)
    with pytest.raises(InvalidArgument, match="deleted or moved since") as err:
        stack.list_artifacts_page(rid, long_dir, 1, first.token, recursive=True)
    assert err.value.field == "page_token"


@pytest.mark.postgres
def test_artifact_paths_compare_bytewise_under_a_linguistic_collation(
    icu_postgres_url: str, tmp_path: Path
) -> None:
    """A directory is the range ('a/', 'a0') of paths, and pages resume after a path: both hold
    only byte by byte. On a database collated by ICU's en-US, 'A/keep.txt' lay inside 'a':
    deleting 'a' deleted it, a file 'b' clashed with 'B/file.txt', and pages skipped files."""
    settings = Settings(home=tmp_path, port=0, grace_period=0, backend_store_uri=icu_postgres_url)
    with running_server(settings) as server, Client(server.address) as client:
        rid = client.create_run("0").info.run_id
        for path in ("a/tmp.txt", "A/keep.txt", "B/file.txt", "a1.txt", "A2.txt", "b3.txt"):
            client.log_text(rid, path, path)
        assert [f.path for f in client.list_artifacts(rid, "a")] == ["a/tmp.txt"]
        assert [f.path for f in client.iter_artifacts(rid, "a", recursive=True)] == ["a/tmp.txt"]
        client.log_text(rid, "a file beside directory 'B'", "b")
        everything = ["A/keep.txt", "A2.txt", "B/file.txt", "a/tmp.txt", "a1.txt", "b", "b3.txt"]
        assert paged(client, rid, recursive=True) == everything
        assert paged(client, rid) == ["A", "A2.txt", "B", "a", "a1.txt", "b", "b3.txt"]
        client.delete_artifact(rid, "a")
        assert paged(client, rid, recursive=True) == [p for p in everything if p != "a/tmp.txt"]
        client.log_text(rid, "lower", "A/a/x.txt")
        client.log_text(rid, "upper", "A/A/y.txt")
        client.create_model_version("icu", f"runs:/{rid}/A")
        files = client.list_model_version_artifacts("icu", 1, "a")
        assert [f.path for f in files] == ["a/x.txt"]


# -- presigned URLs --------------------------------------------------------------------------


class Recorder(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
):
    """Notes each RPC a client makes (its short name) and the deadline it gives it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float | None]] = []

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def timeout(self, name: str) -> float | None:
        return next(t for n, t in self.calls if n == name)

    def _note(self, details: Any) -> None:
        self.calls.append((details.method.rsplit("/", 1)[-1], details.timeout))

    def _pass(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        self._note(details)
        return continuation(details, request)

    intercept_unary_unary = intercept_unary_stream = intercept_stream_unary = _pass


@contextlib.contextmanager
def recording(settings: Settings) -> Iterator[tuple[Client, Recorder]]:
    """A server, and a client whose calls a Recorder notes."""
    recorder = Recorder()
    with running_server(settings) as server:
        transport = Transport(server.address)
        transport.channel = grpc.intercept_channel(transport.channel, recorder)
        with Client.over(transport) as client:
            yield client, recorder


def s3_settings(tmp_path: Path, s3: S3Settings) -> Settings:
    return Settings(
        home=tmp_path,
        port=0,
        grace_period=0,
        artifact_uri=f"s3://{S3_BUCKET}/{tmp_path.name}",
        s3=s3,
    )


def random_file(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


@pytest.fixture
def small_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Presign from 1 KiB, and only up to 100 kB in one PUT, so small files show each path."""
    monkeypatch.setattr(_artifacts, "PRESIGN_THRESHOLD", 1024)
    monkeypatch.setattr(_artifacts, "PRESIGNED_PUT_LIMIT", 100_000)


@pytest.mark.s3
@pytest.mark.usefixtures("small_thresholds")
def test_big_files_move_through_presigned_urls_both_ways(
    s3_server: S3Settings, tmp_path: Path
) -> None:
    big = random_file(tmp_path / "src" / "big.bin", 50_000)
    small = random_file(tmp_path / "src" / "small.txt", 100)
    with recording(s3_settings(tmp_path, s3_server)) as (client, calls):
        rid = client.create_run("0").info.run_id
        info = client.log_artifact(rid, big, "d")
        assert info.sha256 == hashlib.sha256(big.read_bytes()).hexdigest()
        assert "UploadArtifact" not in calls.names()
        assert {"CreateArtifactUploadUrl", "CompleteArtifactUpload"} <= set(calls.names())
        calls.calls.clear()
        client.log_artifact(rid, small, "d")
        assert "UploadArtifact" in calls.names()
        assert "CreateArtifactUploadUrl" not in calls.names()

        calls.calls.clear()
        out = Path(client.download_artifacts(rid, "d", tmp_path / "dst"))
        assert (out / "big.bin").read_bytes() == big.read_bytes()
        assert (out / "small.txt").read_bytes() == small.read_bytes()
        # The listing gave both sizes: only the big file asks for a URL, only the small streams.
        assert calls.names().count("CreateArtifactDownloadUrl") == 1
        assert calls.names().count("DownloadArtifact") == 1

        # One file, of a size unknown until the server describes it.
        calls.calls.clear()
        one = Path(client.download_artifacts(rid, "d/big.bin", tmp_path / "one"))
        assert one.read_bytes() == big.read_bytes()
        assert "DownloadArtifact" not in calls.names()
        calls.calls.clear()
        one = Path(client.download_artifacts(rid, "d/small.txt", tmp_path / "one"))
        assert one.read_bytes() == small.read_bytes()
        assert "DownloadArtifact" in calls.names()


@pytest.mark.s3
@pytest.mark.usefixtures("small_thresholds")
def test_files_over_the_single_put_limit_stream_through_the_service(
    s3_server: S3Settings, tmp_path: Path
) -> None:
    at_limit = random_file(tmp_path / "at_limit.bin", 100_000)
    over = random_file(tmp_path / "over.bin", 100_001)
    with recording(s3_settings(tmp_path, s3_server)) as (client, calls):
        rid = client.create_run("0").info.run_id
        client.log_artifact(rid, at_limit)
        assert "CreateArtifactUploadUrl" in calls.names()
        assert "UploadArtifact" not in calls.names()
        calls.calls.clear()
        info = client.log_artifact(rid, over)
        assert info.sha256 == hashlib.sha256(over.read_bytes()).hexdigest()
        assert calls.names() == ["UploadArtifact"]
        # Downloads have no such limit.
        calls.calls.clear()
        got = Path(client.download_artifacts(rid, "over.bin", tmp_path / "dst"))
        assert got.read_bytes() == over.read_bytes()
        assert "DownloadArtifact" not in calls.names()


@pytest.mark.s3
@pytest.mark.usefixtures("small_thresholds")
def test_deadlines_of_whole_file_calls_grow_with_the_size(
    s3_server: S3Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_artifacts, "_SLOWEST_RATE", 1000)  # bytes per second
    small = random_file(tmp_path / "small.bin", 2000)
    big = random_file(tmp_path / "big.bin", 90_000)
    huge = random_file(tmp_path / "huge.bin", 5_000_000)
    with recording(s3_settings(tmp_path, s3_server)) as (client, calls):
        rid = client.create_run("0").info.run_id
        client.log_artifact(rid, small)
        assert calls.timeout("CompleteArtifactUpload") == pytest.approx(DEFAULT_TIMEOUT)
        calls.calls.clear()
        client.log_artifact(rid, big)
        assert calls.timeout("CompleteArtifactUpload") == pytest.approx(90, abs=1)
        calls.calls.clear()
        client.log_artifact(rid, huge)  # over the put limit: streams, for up to 5,000 s
        assert calls.timeout("UploadArtifact") == pytest.approx(5000, abs=1)


@pytest.mark.s3
@pytest.mark.usefixtures("small_thresholds")
def test_presigned_transfers_are_verified_and_leave_nothing_behind(
    s3_server: S3Settings, tmp_path: Path
) -> None:
    settings = s3_settings(tmp_path, s3_server)
    big = random_file(tmp_path / "big.bin", 50_000)
    with running_server(settings) as server, Client(server.address) as client:
        run = client.create_run("0")
        rid = run.info.run_id
        client.log_artifact(rid, big)
        # The stored object changes behind the service: the download refuses it.
        storage(settings, run).write("big.bin", iter([os.urandom(50_000)]))
        with pytest.raises(DataLoss, match="sha256"):
            client.download_artifacts(rid, "big.bin", tmp_path / "dst")
        assert list((tmp_path / "dst").iterdir()) == []

        # An upload the server refuses to complete is removed, unless a record points at it.
        reply = client._t.call(
            client._tracking.CreateArtifactUploadUrl,
            pb.CreateArtifactUploadUrlRequest(run_id=rid, path="new.bin"),
        )
        assert urllib3.request("PUT", reply.upload_url.url, body=b"bytes").status == 200
        with pytest.raises(InvalidArgument) as err:
            client._t.call(
                client._tracking.CompleteArtifactUpload,
                pb.CompleteArtifactUploadRequest(run_id=rid, path="new.bin", sha256="0" * 64),
            )
        assert err.value.field == "sha256"
        assert stored_keys(settings, run) == ["big.bin"]
        assert listed(client, run) == ["big.bin"]

        # Nor does a path that clashes with a recorded file get an upload URL.
        client.log_text(rid, "manifest", "model/MLmodel")
        with pytest.raises(FailedPrecondition) as clash:
            client._t.call(
                client._tracking.CreateArtifactUploadUrl,
                pb.CreateArtifactUploadUrlRequest(run_id=rid, path="model"),
            )
        assert clash.value.resource_name == "model"


def root_objects(settings: Settings) -> list[str]:
    """Every object under the server's artifact root as S3 lists it, staged uploads included."""
    store = open_artifact_store(settings.artifact_uri, settings.s3)
    assert isinstance(store, S3ArtifactStore)
    start = len(store.prefix) + 1
    listing = store.client.list_objects(store.bucket, prefix=store.prefix + "/", recursive=True)
    return sorted(obj.object_name[start:] for obj in listing if obj.object_name)


def staged(settings: Settings) -> list[str]:
    return [key for key in root_objects(settings) if is_staging(key)]


def start_upload(client: Client, rid: str, path: str, data: bytes) -> str:
    """CreateArtifactUploadUrl and the PUT to its URL, as the SDK does; returns the upload id."""
    reply = client._t.call(
        client._tracking.CreateArtifactUploadUrl,
        pb.CreateArtifactUploadUrlRequest(run_id=rid, path=path),
    )
    assert urllib3.request("PUT", reply.upload_url.url, body=data).status == 200
    return reply.upload_id


def complete(client: Client, rid: str, path: str, data: bytes | str, upload_id: str) -> Any:
    digest = data if isinstance(data, str) else hashlib.sha256(data).hexdigest()
    request = pb.CompleteArtifactUploadRequest(
        run_id=rid, path=path, sha256=digest, upload_id=upload_id
    )
    return client._t.call(client._tracking.CompleteArtifactUpload, request).file


def read_back(client: Client, rid: str, path: str, dst: Path) -> bytes:
    return Path(client.download_artifacts(rid, path, dst)).read_bytes()


@pytest.mark.s3
@pytest.mark.usefixtures("small_thresholds")
def test_presigned_uploads_are_staged_until_completed(
    s3_server: S3Settings, tmp_path: Path
) -> None:
    settings = s3_settings(tmp_path, s3_server)
    old, new = os.urandom(50_000), os.urandom(60_000)
    with running_server(settings) as server, Client(server.address) as client:
        run = client.create_run("0")
        rid = run.info.run_id
        (tmp_path / "f.bin").write_bytes(old)
        recorded = client.log_artifact(rid, tmp_path / "f.bin")
        assert staged(settings) == []

        # Uploaded but not completed: the bytes wait aside, seen by no listing.
        upload_id = start_upload(client, rid, "f.bin", new)
        assert len(upload_id) == 32
        [waiting] = staged(settings)
        assert waiting.startswith(f"{STAGING_DIR}/{rid}/") and waiting.endswith(upload_id)
        assert listed(client, run) == ["f.bin"]
        assert stored_keys(settings, run) == ["f.bin"]
        root = open_artifact_store(settings.artifact_uri, settings.s3)
        assert not any(is_staging(key) for key, _ in root.iter_files(""))
        assert read_back(client, rid, "f.bin", tmp_path / "mid") == old

        # A wrong digest is refused: the recorded file keeps its bytes and its record.
        with pytest.raises(InvalidArgument) as err:
            complete(client, rid, "f.bin", "0" * 64, upload_id)
        assert err.value.field == "sha256"
        assert staged(settings) == []
        [info] = client.list_artifacts(rid)
        assert (info.sha256, info.file_size) == (recorded.sha256, len(old))
        assert read_back(client, rid, "f.bin", tmp_path / "refused") == old

        # A path that became a directory meanwhile is refused, and the directory keeps its files.
        upload_id = start_upload(client, rid, "model", new)
        client.log_text(rid, "manifest", "model/MLmodel")
        with pytest.raises(FailedPrecondition) as clash:
            complete(client, rid, "model", new, upload_id)
        assert clash.value.resource_name == "model"
        assert read_back(client, rid, "model/MLmodel", tmp_path / "m") == b"manifest"
        assert staged(settings) == []

        # A verified upload replaces the file.
        upload_id = start_upload(client, rid, "f.bin", new)
        done = complete(client, rid, "f.bin", new, upload_id)
        assert done.sha256 == hashlib.sha256(new).hexdigest() and done.file_size == len(new)
        assert read_back(client, rid, "f.bin", tmp_path / "replaced") == new
        assert staged(settings) == []
        assert listed(client, run) == ["f.bin", "model/MLmodel"]
        assert stored_keys(settings, run) == ["f.bin", "model/MLmodel"]


@pytest.mark.s3
@pytest.mark.usefixtures("small_thresholds")
def test_the_contract_names_the_directory_uploads_are_staged_in() -> None:
    """Operators write lifecycle rules and exclusions from the proto's comments."""
    proto = Path(__file__).resolve().parents[2] / "protos/modelyard/tracking/v1/tracking.proto"
    comment = proto.read_text().split("message CreateArtifactUploadUrlResponse {", 1)[1]
    comment = comment.split("}", 1)[0]
    assert f"`{STAGING_DIR}/`" in comment and ".uploads" not in comment


def test_an_upload_id_completes_only_its_own_upload(s3_server: S3Settings, tmp_path: Path) -> None:
    settings = s3_settings(tmp_path, s3_server)
    data = os.urandom(5000)
    with running_server(settings) as server, Client(server.address) as client:
        run = client.create_run("0")
        rid = run.info.run_id
        upload_id = start_upload(client, rid, "a.bin", data)
        for path, bad_id, status in (
            ("b.bin", upload_id, FailedPrecondition),  # issued for another path
            ("a.bin", "f" * 32, FailedPrecondition),  # issued to nobody
            ("a.bin", "not-an-id", InvalidArgument),
        ):
            with pytest.raises(status) as err:
                complete(client, rid, path, data, bad_id)
            if status is InvalidArgument:
                assert err.value.field == "upload_id"
            else:
                assert err.value.resource_name == path and "nothing was uploaded" in str(err.value)
        assert listed(client, run) == []
        assert complete(client, rid, "a.bin", data, upload_id).file_size == len(data)
        assert read_back(client, rid, "a.bin", tmp_path / "a") == data


@pytest.mark.s3
@pytest.mark.usefixtures("small_thresholds")
def test_clients_that_send_no_upload_id_complete_their_newest_upload(
    s3_server: S3Settings, tmp_path: Path
) -> None:
    settings = s3_settings(tmp_path, s3_server)
    first, second = os.urandom(5000), os.urandom(6000)
    with running_server(settings) as server, Client(server.address) as client:
        run = client.create_run("0")
        rid = run.info.run_id
        start_upload(client, rid, "a.bin", first)  # abandoned
        start_upload(client, rid, "a.bin", second)
        assert complete(client, rid, "a.bin", second, "").file_size == len(second)
        assert read_back(client, rid, "a.bin", tmp_path / "a") == second
        assert len(staged(settings)) == 1  # the abandoned one, left to the sweep
        with pytest.raises(InvalidArgument):  # the newest upload is now the abandoned one
            complete(client, rid, "a.bin", "0" * 64, "")
        assert staged(settings) == []
        # Nothing staged: the bytes at the path are verified in place, as before upload ids.
        assert complete(client, rid, "a.bin", second, "").file_size == len(second)
        assert read_back(client, rid, "a.bin", tmp_path / "b") == second
        with pytest.raises(FailedPrecondition, match="nothing was uploaded"):
            complete(client, rid, "never.bin", second, "")


def test_experiments_cannot_store_artifacts_among_staged_uploads(stack: Client) -> None:
    root = stack.get_experiment("0").artifact_location.rsplit("/", 1)[0]
    for location in (f"{root}/{STAGING_DIR}", f"{root}/{STAGING_DIR}/mine"):
        with pytest.raises(InvalidArgument, match="reserves") as err:
            stack.create_experiment(f"exp-{len(location)}", artifact_location=location)
        assert err.value.field == "artifact_location"
    assert stack.create_experiment("fine", artifact_location=f"{root}/{STAGING_DIR}x")


@pytest.mark.s3
@pytest.mark.usefixtures("small_thresholds")
def test_an_unreachable_presigned_endpoint_is_reported(
    s3_server: S3Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = s3_server.model_copy(update={"public_endpoint": f"http://127.0.0.1:{free_port()}"})
    big = random_file(tmp_path / "big.bin", 50_000)
    with running_server(s3_settings(tmp_path, closed)) as server, Client(server.address) as c:
        rid = c.create_run("0").info.run_id
        with pytest.raises(Unavailable, match="MODELYARD_S3__PUBLIC_ENDPOINT"):
            c.log_artifact(rid, big)
        assert c.list_artifacts(rid) == []
        monkeypatch.setattr(_artifacts, "PRESIGN_THRESHOLD", 10**9)
        c.log_artifact(rid, big)  # streams through the service
        monkeypatch.setattr(_artifacts, "PRESIGN_THRESHOLD", 1024)
        with pytest.raises(Unavailable, match="MODELYARD_S3__PUBLIC_ENDPOINT"):
            c.download_artifacts(rid, "big.bin", tmp_path / "dst")
        assert list((tmp_path / "dst").iterdir()) == []


@pytest.mark.s3
def test_an_object_store_outage_is_unavailable_naming_the_store(tmp_path: Path) -> None:
    """With the S3 server gone mid-run, artifact calls answered INTERNAL ("report the request
    id") and the log got tracebacks: they answer UNAVAILABLE, which clients retry, naming the
    store and what to check."""
    with contextlib.ExitStack() as s3:
        settings = s3_settings(tmp_path, s3.enter_context(serve_s3(tmp_path / "s3")))
        with running_server(settings) as server, Client(server.address) as client:
            rid = client.create_run("0").info.run_id
            client.log_text(rid, "hello", "a.txt")
            s3.close()  # the object store goes away; the metadata store stays
            # A channel of its own: the SDK's retries UNAVAILABLE, which would wait out each.
            channel = grpc.insecure_channel(server.address)
            stub = pb_grpc.TrackingServiceStub(channel)
            digest = hashlib.sha256(b"x").hexdigest()
            header = pb.UploadArtifactHeader(run_id=rid, path="b.txt", sha256=digest)
            calls: dict[str, Callable[[], object]] = {
                "upload": lambda: stub.UploadArtifact(
                    iter(
                        [
                            pb.UploadArtifactRequest(header=header),
                            pb.UploadArtifactRequest(chunk=b"x"),
                        ]
                    )
                ),
                "download": lambda: list(
                    stub.DownloadArtifact(pb.DownloadArtifactRequest(run_id=rid, path="a.txt"))
                ),
                "delete": lambda: stub.DeleteArtifact(
                    pb.DeleteArtifactRequest(run_id=rid, path="a.txt")
                ),
            }
            for name, call in calls.items():
                with pytest.raises(grpc.RpcError) as err:
                    call()
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE, (name, err.value.details())
                message = err.value.details()
                assert settings.s3.endpoint in message and "MODELYARD_S3__ENDPOINT" in message
            channel.close()


@pytest.mark.s3
def test_a_delete_cut_short_by_an_object_store_outage_is_finished_by_its_retry(
    tmp_path: Path,
) -> None:
    """A delete that forgot the records and then lost the object store kept a live lease per
    file: a retry once the store was back got ABORTED until the leases expired, then NOT_FOUND;
    uploads to those paths were ABORTED meanwhile, and the bytes of paths nobody touched again
    stayed stored. The stopped delete now expires its leases, so its retry finishes it and
    answers OK, and an upload goes straight in."""
    port = free_port()
    with contextlib.ExitStack() as s3:
        settings = s3_settings(tmp_path, s3.enter_context(serve_s3(tmp_path / "s3", port)))
        with running_server(settings) as server, Client(server.address) as client:
            rid = client.create_run("0").info.run_id
            for name in ("a", "b", "c"):
                client.log_text(rid, name, f"d/{name}.txt")
            channel = grpc.insecure_channel(server.address)  # no SDK retries: each answer
            stub = pb_grpc.TrackingServiceStub(channel)
            delete = pb.DeleteArtifactRequest(run_id=rid, path="d")
            s3.close()  # the object store goes away
            for _attempt in ("the delete", "its retry while the store is still away"):
                with pytest.raises(grpc.RpcError) as err:
                    stub.DeleteArtifact(delete)
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value.details()
            assert client.list_artifacts(rid) == []  # forgotten at once
            s3.enter_context(serve_s3(tmp_path / "s3", port))  # back, at the same address
            stub.DeleteArtifact(delete)  # the retry finishes it
            store = S3ArtifactStore(settings.artifact_uri, settings.s3)
            assert [key for key, _ in store.iter_files("") if "/artifacts/" in key] == []
            with pytest.raises(grpc.RpcError) as err:
                stub.DeleteArtifact(delete)  # done: nothing left to delete
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            header = pb.UploadArtifactHeader(
                run_id=rid, path="d/a.txt", sha256=hashlib.sha256(b"new").hexdigest()
            )
            requests = [
                pb.UploadArtifactRequest(header=header),
                pb.UploadArtifactRequest(chunk=b"new"),
            ]
            stub.UploadArtifact(iter(requests))  # no lease left on the path
            assert [f.path for f in client.list_artifacts(rid, "d")] == ["d/a.txt"]
            channel.close()


@pytest.mark.usefixtures("small_thresholds")
def test_a_local_store_streams_files_of_every_size(tmp_path: Path) -> None:
    big = random_file(tmp_path / "big.bin", 50_000)
    with recording(Settings(home=tmp_path / "home", port=0, grace_period=0)) as (client, calls):
        rid = client.create_run("0").info.run_id
        info = client.log_artifact(rid, big)
        assert info.sha256 == hashlib.sha256(big.read_bytes()).hexdigest()
        assert calls.names()[-2:] == ["CreateArtifactUploadUrl", "UploadArtifact"]
        calls.calls.clear()
        got = Path(client.download_artifacts(rid, "big.bin", tmp_path / "dst"))
        assert got.read_bytes() == big.read_bytes()
        assert calls.names()[-2:] == ["CreateArtifactDownloadUrl", "DownloadArtifact"]
        with pytest.raises(FailedPrecondition, match="DownloadArtifact"):
            client.create_artifact_download_url(rid, "big.bin")


@pytest.mark.s3
def test_create_artifact_download_url(s3_server: S3Settings, tmp_path: Path) -> None:
    with running_server(s3_settings(tmp_path, s3_server)) as server, Client(server.address) as c:
        rid = c.create_run("0").info.run_id
        c.log_text(rid, "hello", "notes/a.txt")
        before = int(time.time() * 1000)
        url, info = c.create_artifact_download_url(rid, "notes/a.txt")
        assert url.method == "GET"
        expiry_ms = s3_server.presign_expiry_seconds * 1000
        assert before + expiry_ms - 5000 <= url.expire_time <= before + expiry_ms + 5000
        assert info.path == "notes/a.txt" and info.file_size == 5
        data = urllib3.request(url.method, url.url).data
        assert data == b"hello" and hashlib.sha256(data).hexdigest() == info.sha256
        with pytest.raises(NotFound):
            c.create_artifact_download_url(rid, "notes/missing.txt")
