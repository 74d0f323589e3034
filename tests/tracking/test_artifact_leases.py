"""Leases beyond uploads: deletes hold them too, every "retry" answer says how long the lease can
last (and the SDK waits that long), and staged bytes nobody will place are swept, local stores
included. Both stacks where both apply (see test_artifact_consistency.py, whose helpers these
reuse); crashes are BaseExceptions raised at one step, the passing of time an injected clock.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy import event

from modelyard import Client
from modelyard._gen.tracking.v1 import tracking_pb2 as pb
from modelyard._gen.tracking.v1 import tracking_pb2_grpc
from modelyard.client import _artifacts
from modelyard.errors import (
    Aborted,
    FailedPrecondition,
    ModelyardError,
    NotFound,
    Unavailable,
    from_rpc_error,
)
from modelyard.services.common.artifacts import STAGING_DIR, staged_upload_key
from modelyard.services.common.artifacts.local import LocalArtifactStore
from modelyard.services.common.db.prepared import Prepared
from modelyard.services.common.settings import Settings
from modelyard.services.tracking.placement import MAX_BUSY_MS, deletion_lease_ms
from modelyard.services.tracking.service import SWEEP_INTERVAL_S, TrackingService
from tests.conftest import running_server
from tests.tracking.test_artifact_consistency import (
    NEW,
    OLD,
    THIRD,
    Crash,
    crash_upload,
    expire_leases,
    leases,
    read,
    sha,
    started_run,
    tracking_service,
)

DIR_FILES = ("d/a.bin", "d/b.bin", "d/c.bin")


def upload(service: TrackingService, rid: str, path: str, data: bytes) -> None:
    service.upload_artifact(rid, path, iter([data]), sha(data))


def stored_keys(service: TrackingService) -> list[str]:
    return sorted(k for k, _ in service.artifacts.iter_files(""))


def key_of(service: TrackingService, rid: str, path: str) -> str:
    return service._artifact_key(service.get_run(rid).info, path)


def assert_records_describe_bytes(service: TrackingService, rid: str) -> None:
    for f in service.store.list_artifacts(rid, ""):
        assert service.artifacts.digest(key_of(service, rid, f.path)).sha256 == f.sha256


# -- a delete holds leases on what it deletes --------------------------------------------------


@pytest.mark.parametrize("target", ["f.bin", "d"])
def test_an_upload_while_a_delete_removes_bytes_is_told_to_retry(
    stack_settings: Settings, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    """The upload comes between the delete forgetting the records and deleting the bytes: had it
    gone through, its record would name bytes the delete then removes."""
    paths = ["f.bin"] if target == "f.bin" else list(DIR_FILES)
    interloper = paths[-1]
    with tracking_service(stack_settings) as service:
        rid = service.create_run("0").info.run_id
        for p in paths:
            upload(service, rid, p, OLD)
        delete_bytes = service.artifacts.delete
        outcome: list[object] = []

        def upload_first(key: str) -> None:
            if not outcome:  # the first byte deletion of the delete
                outcome.append(None)
                try:
                    upload(service, rid, interloper, NEW)
                except ModelyardError as exc:
                    outcome[0] = exc
            delete_bytes(key)

        monkeypatch.setattr(service.artifacts, "delete", upload_first)
        assert service.delete_artifact(rid, target) == len(paths)
        monkeypatch.undo()

        [refused] = outcome
        assert isinstance(refused, Aborted), "the upload went through during the delete"
        assert refused.resource_name == interloper and "retry the upload" in refused.message
        assert "being deleted" in refused.message
        assert refused.busy_for is not None
        assert 0 < refused.busy_for <= deletion_lease_ms(len(paths)) / 1000
        with pytest.raises(NotFound, match="has no artifact"):  # not "recorded but missing"
            service.open_artifact(rid, interloper)
        assert stored_keys(service) == []
        assert leases(stack_settings) == 0

        upload(service, rid, interloper, NEW)  # the retry, once the delete is done
        assert read(service, rid, interloper) == (sha(NEW), NEW)
        assert_records_describe_bytes(service, rid)


@pytest.mark.parametrize("who", ["upload", "read", "start-up"])
def test_a_delete_that_died_is_finished_by_whoever_meets_it(
    stack_settings: Settings, monkeypatch: pytest.MonkeyPatch, who: str
) -> None:
    with tracking_service(stack_settings) as service:
        rid = service.create_run("0").info.run_id
        for p in DIR_FILES:
            upload(service, rid, p, OLD)

        def die(*_args: object) -> None:
            raise Crash

        monkeypatch.setattr(service.artifacts, "delete", die)
        with pytest.raises(Crash):
            service.delete_artifact(rid, "d")
        monkeypatch.undo()
    # One lease per file; the files are gone from listings, their bytes are still stored.
    assert leases(stack_settings) == len(DIR_FILES)

    with tracking_service(stack_settings) as service:
        assert service.store.list_artifacts(rid, "") == []
        assert len(stored_keys(service)) == len(DIR_FILES)
        # While the leases are live (the delete could be at work in another server).
        with pytest.raises(Aborted, match="being deleted; retry the upload") as busy:
            upload(service, rid, "d/a.bin", NEW)
        assert busy.value.resource_name == "d/a.bin" and busy.value.busy_for
        with pytest.raises(NotFound, match="has no artifact"):
            service.open_artifact(rid, "d/a.bin")

        now = service.placer.clock()
        service.placer.clock = lambda: now + deletion_lease_ms(len(DIR_FILES)) + 1
        if who == "upload":
            upload(service, rid, "d/a.bin", NEW)
            assert read(service, rid, "d/a.bin") == (sha(NEW), NEW)
            assert stored_keys(service) == sorted(
                [key_of(service, rid, "d/a.bin")]
                + [key_of(service, rid, p) for p in DIR_FILES[1:]]  # not met yet
            )
        elif who == "read":
            with pytest.raises(NotFound, match="has no artifact"):
                service.open_artifact(rid, "d/a.bin")
            assert key_of(service, rid, "d/a.bin") not in stored_keys(service)
        assert_records_describe_bytes(service, rid)

    expire_leases(stack_settings)
    with running_server(stack_settings):  # start-up finishes whatever is left
        assert leases(stack_settings) == 0
    with tracking_service(stack_settings) as service:
        expected = [key_of(service, rid, "d/a.bin")] if who == "upload" else []
        assert stored_keys(service) == expected
        assert_records_describe_bytes(service, rid)


def test_a_delete_of_a_directory_costs_the_same_statements_for_any_number_of_files(
    stack_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tracking_service(stack_settings) as service:
        rid = service.create_run("0").info.run_id
        statements: list[str] = []

        def count(*args: Any) -> None:
            statements.append(args[2])

        # Statements on the raw cursor (Prepared) pass no SQLAlchemy event: count them too.
        prepared_rows = Prepared.rows

        def counted_rows(self: Prepared, cursor: Any, **params: Any) -> Any:
            statements.append(self.sql)
            return prepared_rows(self, cursor, **params)

        monkeypatch.setattr(Prepared, "rows", counted_rows)

        costs = []
        for n in (2, 40):
            for i in range(n):
                upload(service, rid, f"d{n}/{i}.bin", OLD)
            statements.clear()
            event.listen(service.store.db.engine, "before_cursor_execute", count)
            try:
                assert service.delete_artifact(rid, f"d{n}") == n
            finally:
                event.remove(service.store.db.engine, "before_cursor_execute", count)
            costs.append(len(statements))
        assert costs[0] == costs[1], statements
        assert leases(stack_settings) == 0


# -- "retry" says for how long -----------------------------------------------------------------


def busy_details(
    error: grpc.RpcError,
) -> tuple[error_details_pb2.RetryInfo | None, error_details_pb2.ErrorInfo | None]:
    """The standard details a generic gRPC client reads: when to retry, and why."""
    status = rpc_status.from_call(error)
    found: dict[type, Any] = {}
    for detail in status.details if status else ():
        for kind in (error_details_pb2.RetryInfo, error_details_pb2.ErrorInfo):
            if detail.Is(kind.DESCRIPTOR):
                found[kind] = kind()
                detail.Unpack(found[kind])
    return found.get(error_details_pb2.RetryInfo), found.get(error_details_pb2.ErrorInfo)


@pytest.mark.parametrize("lease_s", [600, 36_000])
def test_a_busy_path_answers_with_the_time_left_on_its_lease(
    stack_settings: Settings, monkeypatch: pytest.MonkeyPatch, lease_s: int
) -> None:
    """Over real gRPC: a placement that died holding a long lease (a big file); the lease is
    written far ahead rather than waited for."""
    rid = started_run(stack_settings)
    with tracking_service(stack_settings) as service:
        crash_upload(service, monkeypatch, rid, "recording")
    expires_at = int(time.time() * 1000) + lease_s * 1000
    expire_leases(stack_settings, at=expires_at)
    with running_server(stack_settings) as server, grpc.insecure_channel(server.address) as ch:
        stub = tracking_pb2_grpc.TrackingServiceStub(ch)
        header = pb.UploadArtifactHeader(run_id=rid, path="f.bin", sha256=sha(THIRD))
        calls = {
            grpc.StatusCode.UNAVAILABLE: lambda: list(
                stub.DownloadArtifact(pb.DownloadArtifactRequest(run_id=rid, path="f.bin"))
            ),
            grpc.StatusCode.ABORTED: lambda: stub.UploadArtifact(
                iter(
                    [pb.UploadArtifactRequest(header=header), pb.UploadArtifactRequest(chunk=THIRD)]
                )
            ),
        }
        for code, call in calls.items():
            before = int(time.time() * 1000)
            with pytest.raises(grpc.RpcError) as refused:
                call()
            after = int(time.time() * 1000)
            assert refused.value.code() == code
            retry, reason = busy_details(refused.value)
            # A generic client is told to retry soon (the cause usually lasts milliseconds)...
            assert retry is not None, f"{code.name} carries no RetryInfo"
            assert 0 < retry.retry_delay.ToMilliseconds() <= 100
            # ...and why, with the most it can last, which the SDK reads as busy_for.
            assert reason is not None and reason.reason == "BUSY"
            busy_ms = int(reason.metadata["busy_for_ms"])
            assert from_rpc_error(refused.value).busy_for == busy_ms / 1000
            # ...and grpc's own retry policy, which would retry blind, is told not to.
            pushback = dict(refused.value.trailing_metadata())
            assert pushback.get("grpc-retry-pushback-ms") == "-1"
            if lease_s * 1000 > MAX_BUSY_MS:
                assert busy_ms == MAX_BUSY_MS
            else:
                assert expires_at - after <= busy_ms <= expires_at - before
    assert leases(stack_settings) == 1


class FakeTime:
    """The SDK's clock and sleep: a sleep passes at once, moving the clock on (and, at
    `then_s`, runs `then`, which is what the passing of that much time does)."""

    def __init__(self, then_s: float = float("inf"), then: Any = None) -> None:
        self.now = 0.0
        self.sleeps = 0
        self.then_s, self.then = then_s, then

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds
        if self.now >= self.then_s and self.then is not None:
            self.then()
            self.then = None


def sdk_time(monkeypatch: pytest.MonkeyPatch, fake: FakeTime) -> FakeTime:
    """Make `fake` the clock and sleep of the SDK's retries (of this process: servers started
    in it, such as the registry's, included)."""
    monkeypatch.setattr(_artifacts, "_clock", fake.clock)
    monkeypatch.setattr(_artifacts, "_sleep", fake.sleep)
    return fake


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    return sdk_time(monkeypatch, FakeTime())


def died_holding_a_long_lease(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, rid: str
) -> FakeTime:
    """An upload of NEW to f.bin that died after placing its bytes, holding a lease written far
    ahead (200 s, a big file's); the SDK's clock, faked, runs it out when it passes 120 s."""
    with tracking_service(settings) as service:
        crash_upload(service, monkeypatch, rid, "recording")
    expire_leases(settings, at=int(time.time() * 1000) + 200_000)
    return sdk_time(monkeypatch, FakeTime(then_s=120, then=lambda: expire_leases(settings)))


@pytest.mark.parametrize(
    ("hint", "budget"),
    [
        (None, _artifacts._PATH_BUSY_WAIT),  # an older server: the fixed wait
        (5.0, _artifacts._PATH_BUSY_WAIT),  # a short lease: never less than that
        (300.0, 300.0 + _artifacts._PATH_BUSY_MARGIN),
        (1e9, _artifacts._PATH_BUSY_MAX + _artifacts._PATH_BUSY_MARGIN),  # not believed
    ],
)
def test_the_sdk_retries_a_busy_path_for_as_long_as_the_server_says(
    fake_time: FakeTime, hint: float | None, budget: float
) -> None:
    def busy() -> None:
        raise Aborted("busy; retry", resource_type="artifact", busy_for=hint)

    with pytest.raises(Aborted):
        _artifacts._path_busy(Aborted)(busy)()
    assert budget <= fake_time.now < budget + 2  # the last wait is 2 s at most
    assert fake_time.sleeps > 1


def test_the_sdk_waits_out_a_long_lease_over_grpc(
    stack_settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A placement of a big file died; its lease (written far ahead: 200 s) outlasts the SDK's
    30 s of old. The SDK keeps retrying for as long as the server says; once the lease has run
    out (here when the fake clock passes 120 s) the server finishes it and the upload lands."""
    rid = started_run(stack_settings)
    fake = died_holding_a_long_lease(stack_settings, monkeypatch, rid)
    with running_server(stack_settings) as server, Client(server.address) as client:
        assert client.log_text(rid, THIRD.decode(), "f.bin").sha256 == sha(THIRD)
        assert fake.now >= 120
        got = Path(client.download_artifacts(rid, "f.bin", tmp_path / "after"))
        assert got.read_bytes() == THIRD
    assert leases(stack_settings) == 0


def _read_back(client: Client, rid: str) -> bytes:
    _info, chunks = client.open_artifact(rid, "f.bin")
    return b"".join(chunks)


def _url_record(client: Client, rid: str) -> str | None:
    try:
        return client.create_artifact_download_url(rid, "f.bin")[1].sha256
    except FailedPrecondition:  # a local store gives no URLs, once the path is settled
        return sha(NEW)


@pytest.mark.parametrize(
    ("call", "then"),
    [
        # The upload that died had placed NEW: its lease, once expired, is finished by recording it.
        (_read_back, lambda result: result == NEW),
        (_url_record, lambda result: result == sha(NEW)),
        (lambda client, rid: client.delete_artifact(rid, "f.bin"), lambda result: True),
    ],
    ids=["open_artifact", "create_artifact_download_url", "delete_artifact"],
)
def test_every_sdk_call_on_an_artifact_waits_out_a_busy_path(
    stack_settings: Settings, monkeypatch: pytest.MonkeyPatch, call: Any, then: Any
) -> None:
    """Not only uploads and downloads: every SDK call that the server can answer "busy" for a
    path retries for as long as the server says, then gets the settled answer."""
    rid = started_run(stack_settings)
    fake = died_holding_a_long_lease(stack_settings, monkeypatch, rid)
    with running_server(stack_settings) as server, Client(server.address) as client:
        assert then(call(client, rid))
        assert fake.now >= 120
        deleted = call is not _read_back and call is not _url_record
        assert [f.path for f in client.list_artifacts(rid)] == ([] if deleted else ["f.bin"])
    assert leases(stack_settings) == 0


# -- staged bytes nobody will place are swept, on local stores too -----------------------------


def local_settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, port=0, grace_period=0)


def age(store: LocalArtifactStore, key: str, days: float = 2) -> None:
    """What the passing of `days` does to a staged file's mtime."""
    then = time.time() - days * 86_400
    os.utime(store.root / key, (then, then))


def test_the_local_sweep_removes_only_old_staged_uploads_not_kept(tmp_path: Path) -> None:
    with tracking_service(local_settings(tmp_path)) as service:
        store = service.artifacts
        assert isinstance(store, LocalArtifactStore)
        rid = service.create_run("0").info.run_id
        old, kept, young = (staged_upload_key(rid, p, f"{n}" * 32) for n, p in enumerate("abc"))
        for key in (old, kept, young):
            store.write(key, iter([b"staged"]))
        partial = f"{staged_upload_key(rid, 'e')}/.modelyard-tmp-{'4' * 32}"  # killed mid-write
        store.write(partial, iter([b"part"]))
        squatter = f"{STAGING_DIR}/{rid}/artifacts/f.txt"  # not an upload: never swept
        store.write(squatter, iter([b"mine"]))
        for key in (old, kept, partial, squatter):
            age(store, key)

        assert store.sweep_staged(timedelta(days=1), keep={kept}) == 2
        assert [store.size(k) for k in (old, kept, young, partial)] == [None, 6, 6, None]
        assert store.size(squatter) == 4
        # The directories the old upload and the partial write were staged in went with them.
        assert not (store.root / staged_upload_key(rid, "a")).exists()
        assert not (store.root / staged_upload_key(rid, "e")).exists()


def test_a_restart_sweeps_what_a_process_killed_before_its_lease_staged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = local_settings(tmp_path)
    rid = started_run(settings)
    with tracking_service(settings) as service:

        def die(*_args: object) -> None:
            raise Crash

        monkeypatch.setattr(service.store, "take_placement", die)
        with pytest.raises(Crash):
            upload(service, rid, "f.bin", NEW)
        monkeypatch.undo()
        [staged] = [k for k, _ in service.artifacts.iter_files(STAGING_DIR)]
        assert isinstance(service.artifacts, LocalArtifactStore)
        age(service.artifacts, staged)
        staging = service.artifacts.root / STAGING_DIR
    with running_server(settings) as server, Client(server.address) as client:
        assert list(staging.iterdir()) == []
        assert client.list_artifacts(rid)[0].sha256 == sha(OLD)


def test_a_long_running_server_sweeps_from_uploads_once_an_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not only at start-up: the first upload once SWEEP_INTERVAL_S has passed sweeps; uploads
    before that do not (each sweep lists every staged upload)."""
    settings = local_settings(tmp_path)
    rid = started_run(settings)
    now = [0.0]
    with tracking_service(settings, clock=lambda: now[0]) as service:
        assert isinstance(service.artifacts, LocalArtifactStore)

        def abandoned(path: str) -> str:
            """What a process killed between staging an upload and its lease leaves."""
            with monkeypatch.context() as patched:
                patched.setattr(service.store, "take_placement", _crash)
                with pytest.raises(Crash):
                    upload(service, rid, path, NEW)
            [staged] = [k for k, _ in service.artifacts.iter_files(staged_upload_key(rid, path))]
            age(service.artifacts, staged)
            return staged

        first = abandoned("a.bin")
        upload(service, rid, "b.bin", OLD)  # within the interval: no sweep
        assert service.artifacts.size(first) is not None
        now[0] += SWEEP_INTERVAL_S
        upload(service, rid, "c.bin", OLD)  # the first upload past it sweeps
        assert service.artifacts.size(first) is None
        second = abandoned("d.bin")
        upload(service, rid, "e.bin", OLD)
        assert service.artifacts.size(second) is not None
        now[0] += SWEEP_INTERVAL_S
        upload(service, rid, "g.bin", OLD)
        assert service.artifacts.size(second) is None
        # The abandoned uploads never became files; every acknowledged one did.
        listed = service.list_artifacts(rid, recursive=True)[1]
        assert sorted(f.path for f in listed) == ["b.bin", "c.bin", "e.bin", "f.bin", "g.bin"]


def _crash(*_args: object) -> None:
    raise Crash


def test_the_sweep_never_breaks_an_upload_under_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two uploads of the path an abandoned one was staged for, so all three share a staging
    directory: one halfway through its bytes while the sweep runs, one between making that
    directory and opening its file in it when the sweep empties and prunes it."""
    with tracking_service(local_settings(tmp_path)) as service:
        store = service.artifacts
        assert isinstance(store, LocalArtifactStore)
        rid = service.create_run("0").info.run_id

        def abandon() -> str:
            key = staged_upload_key(rid, "f.bin", os.urandom(16).hex())
            store.write(key, iter([OLD]))
            age(store, key)
            return key

        # Halfway: its first chunk is written (to a temporary file) when the sweep runs.
        abandoned = abandon()
        halfway, resume = threading.Event(), threading.Event()
        errors: list[BaseException] = []

        def chunks() -> Iterator[bytes]:
            yield NEW[:4]
            halfway.set()
            resume.wait(timeout=60)  # a safety net against a hang, not a synchronization
            yield NEW[4:]

        def upload_slowly() -> None:
            try:
                service.upload_artifact(rid, "f.bin", chunks(), sha(NEW))
            except BaseException as exc:  # reported below
                errors.append(exc)

        writer = threading.Thread(target=upload_slowly)
        writer.start()
        try:
            assert halfway.wait(timeout=60)
            assert store.sweep_staged(timedelta(days=1)) == 1
        finally:
            resume.set()
            writer.join()
        assert errors == [] and store.size(abandoned) is None
        assert read(service, rid, "f.bin") == (sha(NEW), NEW)

        # Between making the directory and opening its file: the sweep prunes the directory.
        abandoned = abandon()
        parent_ready = store._parent_ready
        swept: list[int] = []

        def sweep_once_ready(key: str) -> Path:
            final = parent_ready(key)
            if not swept:
                swept.append(store.sweep_staged(timedelta(days=1)))
                assert not final.parent.exists()  # pruned under the upload's feet
            return final

        monkeypatch.setattr(store, "_parent_ready", sweep_once_ready)
        upload(service, rid, "f.bin", THIRD)
        monkeypatch.undo()
        assert swept == [1] and store.size(abandoned) is None
        assert read(service, rid, "f.bin") == (sha(THIRD), THIRD)
        assert list((store.root / STAGING_DIR).iterdir()) == []


# -- reads ------------------------------------------------------------------------------------


def test_a_read_of_a_path_being_replaced_says_for_how_long(
    stack_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """UNAVAILABLE "being replaced" (as before), now with the time left on the lease."""
    with tracking_service(stack_settings) as service:
        rid = service.create_run("0").info.run_id
        upload(service, rid, "f.bin", OLD)
        refused: list[Unavailable] = []
        record = service.store.finish_placement

        def read_then_record(lease: Any) -> Any:
            with pytest.raises(Unavailable, match="being replaced by an upload; retry") as busy:
                service.open_artifact(rid, "f.bin")
            refused.append(busy.value)
            return record(lease)

        monkeypatch.setattr(service.store, "finish_placement", read_then_record)
        upload(service, rid, "f.bin", NEW)
        [error] = refused
        assert error.resource_name == "f.bin"
        assert error.busy_for is not None and 0 < error.busy_for <= 15.1
