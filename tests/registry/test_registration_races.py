"""A registered file's sha256 describes the bytes the registry copied, even when an upload replaces
the run's file while the version is registered. Both stacks (SQLite and local files, PostgreSQL and
S3), where tracking and the registry share the artifact store, so files are copied in the store:
on S3 each copy is checked against tracking's settled record of the file and made again if that
changed; local files (no download URLs, so no such record without the bytes) are hashed instead.

Each race is made deterministic: a replacing upload runs inside the registry's copy, just before
the copy itself (after the registry listed the run's files); an upload caught between placing its
bytes and recording them is set up in tracking's store before the version is registered.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from modelyard import Client
from modelyard.client import _artifacts
from modelyard.entities.registry import ModelVersionStatus
from modelyard.errors import FailedPrecondition
from modelyard.services.common.artifacts import (
    ArtifactStore,
    open_artifact_store,
    staged_upload_key,
)
from modelyard.services.common.db import Database
from modelyard.services.common.settings import RegistrySettings, S3Settings, Settings
from modelyard.services.registry import app as registry_app
from modelyard.services.registry.service import COPY_ATTEMPTS
from modelyard.services.tracking.store.base import ArtifactPlacement
from modelyard.services.tracking.store.sql import SqlTrackingStore
from tests.conftest import running_server
from tests.registry.test_api import logged_model
from tests.tracking.test_artifact_consistency import expire_leases
from tests.tracking.test_artifact_leases import FakeTime, sdk_time

OLD = b"\x00" * 2048  # logged_model's model.pkl
# Replacements of the same size: the registry checked only the size of its copies.
NEW = [bytes([n]) * 2048 for n in range(1, COPY_ATTEMPTS + 1)]


# Races only a checked copy meets (a hashed copy is never made again, nor waits); the tests
# before each cover local files.
S3_ONLY = pytest.mark.parametrize(
    "stack_settings",
    [pytest.param("postgres+s3", marks=[pytest.mark.postgres, pytest.mark.s3])],
    indirect=True,
)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def checks_records(settings: Settings) -> bool:
    """Whether the store hands out URLs, so copies are checked against tracking's records."""
    return urlparse(settings.artifact_root).scheme == "s3"


@contextlib.contextmanager
def served(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Client, ArtifactStore]]:
    """A client of a full server, and the registry's own artifact store (to hook its copies)."""
    opened: list[ArtifactStore] = []

    def open_and_keep(root_uri: str, s3: S3Settings | None = None) -> ArtifactStore:
        store = open_artifact_store(root_uri, s3)
        opened.append(store)
        return store

    monkeypatch.setattr(registry_app, "open_artifact_store", open_and_keep)
    with running_server(settings) as server, Client(server.address) as client:
        [store] = opened
        yield client, store


def hook_copies(
    monkeypatch: pytest.MonkeyPatch, store: ArtifactStore, before: Callable[[str], None]
) -> list[str]:
    """Run `before(name)` ahead of each copy the registry makes; the names of the copied files."""
    copied: list[str] = []
    copy = store.copy

    def hooked(src: str, dst: str) -> None:
        name = dst.rsplit("/", 1)[-1]
        copied.append(name)
        before(name)
        copy(src, dst)

    monkeypatch.setattr(store, "copy", hooked)
    return copied


def assert_registered_as(client: Client, data: bytes, tmp_path: Path) -> None:
    """Version 1 of "raced" is ready, its model.pkl recorded as `data` and downloaded as it (the
    download checks every file against its recorded sha256)."""
    assert client.get_model_version("raced", 1).status == ModelVersionStatus.READY
    files = {f.path: f for f in client.list_model_version_artifacts("raced", 1)}
    assert files["model.pkl"].sha256 == sha(data)
    out = client.download_model_version("raced", 1, tmp_path / "dl")
    assert (out / "model.pkl").read_bytes() == data


@contextlib.contextmanager
def tracking_store(settings: Settings) -> Iterator[SqlTrackingStore]:
    store = SqlTrackingStore(Database.from_settings(settings), settings.artifact_root)
    try:
        yield store
    finally:
        store.close()


def place_unrecorded(
    settings: Settings, client: Client, rid: str, data: bytes, expires_at: int
) -> ArtifactPlacement:
    """What an upload of `data` to model/model.pkl leaves between placing its bytes and recording
    them: its lease, and the new bytes at the path under the old record."""
    staged = staged_upload_key(rid, "model/model.pkl", "0" * 32)  # already moved into place
    lease = ArtifactPlacement(rid, "model/model.pkl", staged, sha(data), len(data), expires_at)
    with tracking_store(settings) as store:
        assert store.take_placement(lease) is None
    run_files = open_artifact_store(client.get_run(rid).info.artifact_uri, settings.s3)
    try:
        run_files.write("model/model.pkl", iter([data]))
    finally:
        run_files.close()
    return lease


def test_file_replaced_before_its_copy_is_recorded_as_copied(
    stack_settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with served(stack_settings, monkeypatch) as (client, store):
        rid = logged_model(client)

        def upload_once(name: str) -> None:
            if name == "model.pkl" and copied.count(name) == 1:
                client.log_text(rid, NEW[0].decode(), "model/model.pkl")

        copied = hook_copies(monkeypatch, store, upload_once)
        mv = client.create_model_version("raced", f"runs:/{rid}/model")
        assert mv.status == ModelVersionStatus.READY
        assert_registered_as(client, NEW[0], tmp_path)
        # One copy per file, and, where it is checked against tracking's record, one more of the
        # replaced file (a hashed copy is kept as it is).
        again = ["model.pkl"] if checks_records(stack_settings) else []
        assert copied == ["MLmodel", "model.pkl", *again]


@S3_ONLY
def test_file_replaced_at_every_copy_fails_the_registration(
    stack_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with served(stack_settings, monkeypatch) as (client, store):
        rid = logged_model(client)

        def upload_each_time(name: str) -> None:
            if name == "model.pkl":
                client.log_text(rid, NEW[copied.count(name) - 1].decode(), "model/model.pkl")

        copied = hook_copies(monkeypatch, store, upload_each_time)
        with pytest.raises(FailedPrecondition, match="kept changing") as err:
            client.create_model_version("raced", f"runs:/{rid}/model")
        assert "register the version again" in err.value.message
        failed = client.get_model_version("raced", 1)
        assert failed.status == ModelVersionStatus.FAILED_REGISTRATION
        assert "'model/model.pkl'" in failed.status_message
        assert copied == ["MLmodel"] + ["model.pkl"] * COPY_ATTEMPTS


def test_upload_that_died_unrecorded_is_finished_before_the_copy_is_accepted(
    stack_settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The run's listing still shows the old record while the path holds the new bytes: only
    tracking's settled record (which finishes the dead upload) tells the copy is of NEW."""
    with served(stack_settings, monkeypatch) as (client, _store):
        rid = logged_model(client)
        place_unrecorded(stack_settings, client, rid, NEW[0], expires_at=0)
        [_, listed] = client.list_artifacts(rid, "model")
        assert listed.sha256 == sha(OLD)
        mv = client.create_model_version("raced", f"runs:/{rid}/model")
        assert mv.status == ModelVersionStatus.READY
        assert_registered_as(client, NEW[0], tmp_path)


def test_registration_waits_out_an_upload_under_way(
    stack_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New bytes in place, their record not yet written: tracking answers "busy" for the path
    until the upload ends (its lease, written 120 s ahead, tells the SDK so); the registration
    waits (on the SDK's clock, faked) and records what the upload placed. A hashed copy (local
    files) is recorded as what it is at once."""
    fake = sdk_time(monkeypatch, FakeTime(then_s=60, then=lambda: expire_leases(stack_settings)))
    with served(stack_settings, monkeypatch) as (client, _store):
        rid = logged_model(client)
        place_unrecorded(stack_settings, client, rid, NEW[0], int(time.time() * 1000) + 120_000)
        client.create_model_version("raced", f"runs:/{rid}/model")
        [_, pkl] = client.list_model_version_artifacts("raced", 1)
        assert pkl.sha256 == sha(NEW[0])
        assert (fake.now >= 60) == checks_records(stack_settings)


@S3_ONLY
def test_upload_under_way_throughout_fails_the_registration(
    stack_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upload still under way after the SDK has waited as long as its lease said, at each
    attempt: the copy cannot be confirmed, and the registration fails saying what to do."""
    fake = sdk_time(monkeypatch, FakeTime())
    with served(stack_settings, monkeypatch) as (client, _store):
        rid = logged_model(client)
        expires_at = int(time.time() * 1000) + 120_000
        lease = place_unrecorded(stack_settings, client, rid, NEW[0], expires_at)
        try:
            with pytest.raises(FailedPrecondition, match="kept changing"):
                client.create_model_version("raced", f"runs:/{rid}/model")
            failed = client.get_model_version("raced", 1)
            assert failed.status == ModelVersionStatus.FAILED_REGISTRATION
            assert fake.now >= COPY_ATTEMPTS * 120
        finally:
            with tracking_store(stack_settings) as store:
                store.drop_placement(lease)


@S3_ONLY
@pytest.mark.parametrize("apart", [False, True], ids=["one-process", "apart"])
def test_registration_waiting_when_the_server_stops_resumes_at_the_next_start(
    stack_settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, apart: bool
) -> None:
    """The registration's copy waits out an upload under way (an hour's lease, on the real clock)
    when the registry stops: in one process with tracking (`modelyard up`), or apart from it, with
    tracking still answering "busy" (a cluster). The stop does not wait out the lease, nor does it
    fail the version: it stays pending, and the next start resumes it and, the upload over,
    records what it placed."""
    waiting = threading.Event()
    sleep = _artifacts._sleep

    def waits(seconds: float) -> None:
        waiting.set()
        sleep(seconds)

    monkeypatch.setattr(_artifacts, "_sleep", waits)
    with contextlib.ExitStack() as stack:
        settings, names = stack_settings, None
        if apart:
            tracker = stack.enter_context(running_server(stack_settings, ("tracking",)))
            registry = RegistrySettings(tracking_uri=tracker.address)
            settings, names = (
                stack_settings.model_copy(update={"registry": registry}),
                ("registry",),
            )
            tracking = stack.enter_context(Client(tracker.address))
        with running_server(settings, names) as server, Client(server.address) as client:
            tracking = tracking if apart else client
            rid = logged_model(tracking)
            place_unrecorded(
                stack_settings, tracking, rid, NEW[0], int(time.time() * 1000) + 3_600_000
            )
            pending = client.create_model_version(
                "raced", f"runs:/{rid}/model", await_creation_for=0
            )
            assert pending.status == ModelVersionStatus.PENDING_REGISTRATION
            assert waiting.wait(timeout=60)  # the copy met the busy path and waits
        expire_leases(stack_settings)  # the upload ends while no registry runs
        with running_server(settings, names) as server, Client(server.address) as client:
            mv = client.wait_for_version("raced", 1, timeout=60)
            assert mv.status == ModelVersionStatus.READY
            assert_registered_as(client, NEW[0], tmp_path)
