"""An artifact's record describes its stored bytes whatever happens between storing and recording:
a crash in between (then a restart), or two uploads of one path at once. Both stacks (SQLite and
local files, PostgreSQL and S3), through the service object on real stores and over real gRPC.

A crash is simulated by a BaseException raised at one step of an upload, which nothing in the
service catches: what it leaves behind is what a killed process would leave.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from modelyard import Client
from modelyard.entities import FileInfo
from modelyard.errors import Aborted, ModelyardError, NotFound, Unavailable
from modelyard.services.common.artifacts import STAGING_DIR, open_artifact_store
from modelyard.services.common.artifacts.local import LocalArtifactStore
from modelyard.services.common.auth.grants import GrantStore
from modelyard.services.common.db import Database
from modelyard.services.common.db.migrations import upgrade
from modelyard.services.common.settings import Settings
from modelyard.services.tracking.app import MIGRATIONS, SERVICE, migrate
from modelyard.services.tracking.authorizer import TrackingAuthorizer
from modelyard.services.tracking.placement import lease_ms
from modelyard.services.tracking.service import TrackingService
from modelyard.services.tracking.store.base import ArtifactPlacement
from modelyard.services.tracking.store.schema import artifact_placements, experiment_permissions
from modelyard.services.tracking.store.sql import SqlTrackingStore
from tests.conftest import STACKS, running_server, stack_settings_of

OLD, NEW, THIRD = b"old bytes", b"new bytes, longer", b"third"


class Crash(BaseException):
    """The process dies here."""


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def tracking_service(
    settings: Settings, clock: Callable[[], float] = time.monotonic
) -> Iterator[TrackingService]:
    """The tracking service on the stores of `settings`, as a server process holds it."""
    db = Database.from_settings(settings)
    migrate(db)
    artifacts = open_artifact_store(settings.artifact_root, settings.s3)
    store = SqlTrackingStore(db, artifacts.root_uri)
    store.ensure_experiment(0, "Default")
    authorizer = TrackingAuthorizer(store, GrantStore(db, experiment_permissions))
    try:
        yield TrackingService(store, artifacts, authorizer, clock)
    finally:
        store.close()
        artifacts.close()


def leases(settings: Settings) -> int:
    db = Database.from_settings(settings)
    try:
        with db.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(artifact_placements)).scalar_one()
    finally:
        db.dispose()


def expire_leases(settings: Settings, at: int = 0) -> None:
    """What the passing of time does to the lease of a placement that died (by `at`, in ms)."""
    db = Database.from_settings(settings)
    try:
        with db.engine.begin() as conn:
            conn.execute(update(artifact_placements).values(expires_at=at))
    finally:
        db.dispose()


def read(service: TrackingService, rid: str, path: str) -> tuple[str | None, bytes]:
    """(recorded sha256, bytes) as DownloadArtifact serves them."""
    file, chunks = service.open_artifact(rid, path)
    return file.sha256, b"".join(chunks)


def crash_upload(
    service: TrackingService, monkeypatch: pytest.MonkeyPatch, rid: str, step: str
) -> None:
    """Upload NEW to f.bin and die at `step`: 'placing' the staged bytes (nothing moved yet) or
    'recording' them (the bytes are at the path, the old record is still there)."""
    target, name = (
        (service.artifacts, "place") if step == "placing" else (service.store, "finish_placement")
    )

    def die(*_args: object, **_kwargs: object) -> None:
        raise Crash

    monkeypatch.setattr(target, name, die)
    with pytest.raises(Crash):
        service.upload_artifact(rid, "f.bin", iter([NEW]), sha(NEW))
    monkeypatch.undo()


def started_run(settings: Settings) -> str:
    with tracking_service(settings) as service:
        rid = service.create_run("0").info.run_id
        service.upload_artifact(rid, "f.bin", iter([OLD]), sha(OLD))
    return rid


# -- the lease table --------------------------------------------------------------------------


def test_migration_0006_adds_leases_to_a_store_with_artifacts(database_url: str) -> None:
    db = Database(database_url)
    try:
        upgrade(db, SERVICE, MIGRATIONS, revision="0005")
        store = SqlTrackingStore(db, "file:///a")
        exp = store.create_experiment("e", None, {})
        rid = store.create_run(exp, "u", 0, {}, "r", None).info.run_id
        before = store.record_artifact(rid, "f.bin", 3, sha(b"old"))
        store.close()
        migrate(db)

        store = SqlTrackingStore(db, "file:///a")
        assert store.find_artifact(rid, "f.bin") == before
        lease = ArtifactPlacement(rid, "f.bin", "staged", sha(b"new"), 3, expires_at=1)
        assert store.take_placement(lease) is None
        assert store.take_placement(replace(lease, staged_key="other")) == lease
        assert store.artifact_state(rid, "f.bin") == (before, lease)
        done = store.finish_placement(lease)
        assert store.artifact_state(rid, "f.bin") == (done, None) and done.sha256 == sha(b"new")
        with pytest.raises(Aborted):  # finished once only
            store.finish_placement(lease)
        store.close()
    finally:
        db.dispose()


def test_uploads_leave_nothing_staged(stack_settings: Settings) -> None:
    with tracking_service(stack_settings) as service:
        rid = service.create_run("0").info.run_id
        for i in range(3):
            for path in ("a.bin", "d/b.bin"):
                data = f"{path} {i}".encode()
                service.upload_artifact(rid, path, iter([data]), sha(data))
        root = service.artifacts
        assert list(root.iter_files(STAGING_DIR)) == []
        if isinstance(root, LocalArtifactStore):  # nor the directories files were staged in
            assert list((root.root / STAGING_DIR).iterdir()) == []
        assert [k for k, _ in root.iter_files("")] == [
            f"{service.artifacts.key_for(service.get_run(rid).info.artifact_uri)}/{p}"
            for p in ("a.bin", "d/b.bin")
        ]


# -- a crash between placing and recording ---------------------------------------------------


def test_a_crash_before_recording_is_finished_by_the_restarted_server(
    stack_settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    rid = started_run(stack_settings)
    with tracking_service(stack_settings) as service:
        crash_upload(service, monkeypatch, rid, "recording")
    assert leases(stack_settings) == 1

    # Another process, while the lease is live (its holder could be another server, at work):
    # the path answers "retry", to reads and writes, rather than new bytes under the old digest.
    with tracking_service(stack_settings) as service:
        for read_it in (service.open_artifact, service.create_download_url):
            with pytest.raises(Unavailable, match="being replaced") as busy:
                read_it(rid, "f.bin")
            assert busy.value.resource_name == "f.bin"
        with pytest.raises(Aborted, match="retry the upload") as taken:
            service.upload_artifact(rid, "f.bin", iter([THIRD]), sha(THIRD))
        assert taken.value.resource_name == "f.bin"
        with pytest.raises(Aborted, match="retry the delete"):
            service.delete_artifact(rid, "f.bin")
    assert leases(stack_settings) == 1

    # A restart once the lease has expired: start-up finishes the placement.
    expire_leases(stack_settings)
    with running_server(stack_settings) as server, Client(server.address) as client:
        assert leases(stack_settings) == 0
        [info] = client.list_artifacts(rid)
        assert (info.sha256, info.file_size) == (sha(NEW), len(NEW))
        got = Path(client.download_artifacts(rid, "f.bin", tmp_path / "after"))
        assert got.read_bytes() == NEW  # the SDK checked it against the recorded sha256
        client.log_text(rid, THIRD.decode(), "f.bin")  # the path is free again
        assert Path(client.download_artifacts(rid, "f.bin", tmp_path / "3")).read_bytes() == THIRD


@pytest.mark.parametrize("call", ["download", "upload"])
def test_the_sdk_waits_out_the_lease_of_an_upload_that_died(
    stack_settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, call: str
) -> None:
    """Restarted right after the crash, a server finds the lease live; the SDK retries until it
    runs out (here in a second, 15 s at most for small files) and the server finishes it."""
    rid = started_run(stack_settings)
    with tracking_service(stack_settings) as service:
        crash_upload(service, monkeypatch, rid, "recording")
        expire_leases(stack_settings, at=service.placer.clock() + 1000)
    with running_server(stack_settings) as server, Client(server.address) as client:
        if call == "download":
            got = Path(client.download_artifacts(rid, "f.bin", tmp_path / "after"))
            assert got.read_bytes() == NEW
        else:
            assert client.log_text(rid, THIRD.decode(), "f.bin").sha256 == sha(THIRD)
            got = Path(client.download_artifacts(rid, "f.bin", tmp_path / "after"))
            assert got.read_bytes() == THIRD
    assert leases(stack_settings) == 0


@pytest.mark.parametrize("step", ["placing", "recording"])
@pytest.mark.parametrize("who", ["read", "upload", "delete"])
def test_whoever_meets_an_abandoned_placement_finishes_it(
    stack_settings: Settings, monkeypatch: pytest.MonkeyPatch, step: str, who: str
) -> None:
    rid = started_run(stack_settings)
    with tracking_service(stack_settings) as service:
        crash_upload(service, monkeypatch, rid, step)
    with tracking_service(stack_settings) as service:
        now = service.placer.clock()
        service.placer.clock = lambda: now + lease_ms(len(NEW)) + 1
        if who == "read":
            assert read(service, rid, "f.bin") == (sha(NEW), NEW)
        elif who == "upload":
            assert service.upload_artifact(rid, "f.bin", iter([THIRD]), sha(THIRD)).sha256 == sha(
                THIRD
            )
            assert read(service, rid, "f.bin") == (sha(THIRD), THIRD)
        else:
            assert service.delete_artifact(rid, "f.bin") == 1
            with pytest.raises(NotFound):
                service.open_artifact(rid, "f.bin")
            assert list(service.artifacts.iter_files("")) == []
    assert leases(stack_settings) == 0


def test_an_abandoned_placement_whose_bytes_are_gone_is_dropped(
    stack_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Died before placing, and the staged bytes were lost since: the old file stands."""
    rid = started_run(stack_settings)
    with tracking_service(stack_settings) as service:
        crash_upload(service, monkeypatch, rid, "placing")
        [staged] = [k for k, _ in service.artifacts.iter_files(STAGING_DIR)]
        service.artifacts.delete(staged)
    with tracking_service(stack_settings) as service:
        now = service.placer.clock()
        service.placer.clock = lambda: now + lease_ms(len(NEW)) + 1
        assert service.finish_abandoned_uploads() == 1
        assert read(service, rid, "f.bin") == (sha(OLD), OLD)
    assert leases(stack_settings) == 0


def test_the_sweep_keeps_the_staged_bytes_of_an_abandoned_placement(
    stack_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However old, staged bytes that a lease names are what finishing it needs."""
    rid = started_run(stack_settings)
    with tracking_service(stack_settings) as service:
        crash_upload(service, monkeypatch, rid, "placing")
        [staged] = [k for k, _ in service.artifacts.iter_files(STAGING_DIR)]
        service.sweep_abandoned_uploads(timedelta(0))
        assert service.artifacts.size(staged) == len(NEW)
        now = service.placer.clock()
        service.placer.clock = lambda: now + lease_ms(len(NEW)) + 1
        assert read(service, rid, "f.bin") == (sha(NEW), NEW)
        assert service.artifacts.size(staged) is None


# -- two uploads of one path at once ---------------------------------------------------------


@pytest.fixture(params=STACKS)
def racing_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """The two stacks, with SeaweedFS as the S3 server: rclone's `serve s3` loses track of an
    object when a delete empties its directory in rclone's cache while the object is being
    PUT there (it reads NoSuchKey while on disk, until the cache expires), which two uploads
    of one path, each deleting its staged object, provoke about once in 25 runs under load."""
    return stack_settings_of(request, tmp_path, "seaweedfs_server")


def test_concurrent_uploads_of_one_path_keep_record_and_bytes_together(
    racing_settings: Settings, tmp_path: Path
) -> None:
    stack_settings = racing_settings
    with running_server(stack_settings) as server, Client(server.address) as stack:
        _race_uploads(stack, stack_settings, tmp_path)


def _race_uploads(stack: Client, stack_settings: Settings, tmp_path: Path) -> None:
    run = stack.create_run("0")
    rid = run.info.run_id
    storage = open_artifact_store(run.info.artifact_uri, stack_settings.s3)
    stack.log_text(rid, "first", "f.txt")
    rounds, writers = 25, 2
    start, done = threading.Barrier(writers + 2), threading.Barrier(writers + 2)
    outcomes: list[ModelyardError | None] = []
    reads: list[ModelyardError | None] = []
    lock = threading.Lock()

    def write(n: int) -> None:
        for r in range(rounds):
            start.wait()
            data = f"writer {n}, round {r}: ".encode() * (n + 1)
            try:
                stack.log_text(rid, data.decode(), "f.txt")
                outcome: ModelyardError | None = None
            except ModelyardError as exc:
                outcome = exc
            with lock:
                outcomes.append(outcome)
            done.wait()

    def read_along(dst: Path) -> None:
        """Downloads while the uploads run: the SDK checks every one against its record."""
        for r in range(rounds):
            start.wait()
            try:
                stack.download_artifacts(rid, "f.txt", dst / str(r))
                outcome: ModelyardError | None = None
            except ModelyardError as exc:
                outcome = exc
            reads.append(outcome)
            done.wait()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    threads.append(threading.Thread(target=read_along, args=(tmp_path,)))
    for t in threads:
        t.start()
    try:
        for _ in range(rounds):
            start.wait()
            done.wait()
            [info] = stack.list_artifacts(rid)
            stored = storage.digest("f.txt")
            assert (info.sha256, info.file_size) == (stored.sha256, stored.size)
    finally:
        start.abort()
        done.abort()
        for t in threads:
            t.join()
    assert len(outcomes) == rounds * writers
    assert [o for o in outcomes if not (o is None or isinstance(o, Aborted))] == []
    assert [o for o in reads if not (o is None or isinstance(o, Unavailable))] == []
    assert leases(stack_settings) == 0


def test_uploads_held_between_storing_and_recording_cannot_split_record_and_bytes(
    stack_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each upload waits between storing its bytes and recording them until the other one got
    as far or was refused: the schedule store A, store B, record B, record A is open to them
    every round, and only a refusal ("retry") keeps it from happening."""
    rounds = 10
    with tracking_service(stack_settings) as service:
        rid = service.create_run("0").info.run_id
        storage = open_artifact_store(service.get_run(rid).info.artifact_uri, stack_settings.s3)
        both = threading.Barrier(2)
        held = threading.local()
        record = service.store.finish_placement

        def hold_then_record(*args: Any) -> FileInfo:
            held.there = True
            both.wait(timeout=60)  # a safety net against a hang, not a synchronization
            return record(*args)

        monkeypatch.setattr(service.store, "finish_placement", hold_then_record)

        def upload(data: bytes, outcomes: dict[bytes, Aborted | None]) -> None:
            held.there = False
            try:
                service.upload_artifact(rid, "f.bin", iter([data]), sha(data))
                outcomes[data] = None
            except Aborted as exc:
                outcomes[data] = exc
            finally:
                if not held.there:
                    both.wait(timeout=60)

        winners = []
        for r in range(rounds):
            outcomes: dict[bytes, Aborted | None] = {}
            payloads = [f"round {r}, writer {n}".encode() * (n + 1) for n in range(2)]
            threads = [threading.Thread(target=upload, args=(p, outcomes)) for p in payloads]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            recorded = service.store.find_artifact(rid, "f.bin")
            assert recorded is not None
            assert recorded.sha256 == storage.digest("f.bin").sha256
            winners.append(
                [p for p, o in outcomes.items() if o is None and sha(p) == recorded.sha256]
            )
            refused = [o for o in outcomes.values() if o is not None]
            # One upload went through, the other was told to retry, every round.
            assert len(refused) == 1, f"round {r}: {len(refused)} uploads refused"
            assert "retry" in refused[0].message and refused[0].resource_name == "f.bin"
        assert all(len(w) == 1 for w in winners)
    assert leases(stack_settings) == 0
