"""Concurrent registry writes on one model, over real gRPC, on SQLite and PostgreSQL: each call
ends OK or with a clear status (never INTERNAL), and the model ends consistent.

Every round starts its calls together at a barrier, so they overlap on every backend; SQLite
serializes writers anyway, PostgreSQL is where the row locks of concurrent writes meet.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from modelyard import Client
from modelyard.entities.registry import Stage
from modelyard.errors import NotFound
from modelyard.services.common.artifacts import ArtifactStore, open_artifact_store
from modelyard.services.common.settings import S3Settings, Settings
from modelyard.services.registry import app as registry_app
from modelyard.services.registry.service import RegistryService
from modelyard.services.registry.store.base import PendingVersion
from modelyard.services.registry.store.sql import SqlRegistryStore
from tests.conftest import running_server
from tests.races import race
from tests.registry.test_api import logged_model

ROUNDS = 6
CALLS = 32


def test_concurrent_transitions_archiving_the_others_all_succeed(db_client: Client) -> None:
    """32 transitions to Production over versions 1-4, each archiving the others: PostgreSQL
    failed 19-23 of them with a deadlock (INTERNAL) when each locked its own version first."""
    src = f"runs:/{logged_model(db_client)}/model"
    for _ in range(4):
        db_client.create_model_version("m", src)
    for _ in range(ROUNDS):
        outcomes = race(
            [
                partial(
                    db_client.transition_model_version_stage,
                    "m",
                    1 + i % 4,
                    Stage.PRODUCTION,
                    archive_existing_versions=True,
                )
                for i in range(CALLS)
            ]
        )
        assert outcomes == {"OK": CALLS}
        production = db_client.get_latest_versions("m", [Stage.PRODUCTION])
        assert len(production) == 1
        others = [db_client.get_model_version("m", v) for v in range(1, 5)]
        assert [v.current_stage for v in others].count(Stage.PRODUCTION) == 1


def test_concurrent_writes_of_every_kind_on_one_model_all_succeed(db_client: Client) -> None:
    """Aliases, tags, descriptions, stages and new versions of one model, all at once."""
    src = f"runs:/{logged_model(db_client)}/model"
    for _ in range(4):
        db_client.create_model_version("m", src)
    writes: list[Callable[[int], object]] = [
        lambda i: db_client.set_registered_model_alias("m", "champion", 1 + i % 4),
        lambda i: db_client.set_model_version_tag("m", 1 + i % 4, "k", str(i)),
        lambda i: db_client.set_registered_model_tag("m", "k", str(i)),
        lambda i: db_client.update_model_version("m", 1 + i % 4, f"d{i}"),
        lambda i: db_client.update_registered_model("m", f"d{i}"),
        lambda i: db_client.transition_model_version_stage(
            "m", 1 + i % 4, Stage.STAGING, archive_existing_versions=True
        ),
        lambda i: db_client.create_model_version("m", src, await_creation_for=0),
        lambda i: db_client.transition_model_version_stage("m", 1 + i % 4, Stage.PRODUCTION),
    ]
    for _ in range(ROUNDS):
        outcomes = race([partial(writes[i % len(writes)], i) for i in range(CALLS)])
        assert outcomes == {"OK": CALLS}
    assert len(db_client.get_latest_versions("m", [Stage.STAGING])) <= 1


@pytest.mark.parametrize("change", ["delete", "rename"])
def test_new_versions_racing_a_delete_or_rename_of_their_model(
    db_client: Client, change: str
) -> None:
    """CreateModelVersion while the model is deleted or renamed: PostgreSQL failed some with
    INTERNAL (NoResultFound: the model looked up by name was gone when its counter was bumped).
    Each call now takes effect before the change (its version goes with the model) or after it
    (a new model of that name, numbered from 1); none is lost or numbered twice."""
    src = f"runs:/{logged_model(db_client)}/model"
    for n in range(ROUNDS):
        name, renamed = f"m{n}", f"m{n}-renamed"
        db_client.create_model_version(name, src)
        first: Callable[[], object] = (
            partial(db_client.delete_registered_model, name)
            if change == "delete"
            else partial(db_client.rename_registered_model, name, renamed)
        )
        create = partial(db_client.create_model_version, name, src, await_creation_for=0)
        outcomes = race([first] + [create] * (CALLS - 1))
        assert outcomes == {"OK": CALLS}
        after = versions_of(db_client, name)
        assert after == list(range(1, len(after) + 1))
        if change == "rename":
            before = versions_of(db_client, renamed)
            assert before == list(range(1, len(before) + 1))
            assert len(before) + len(after) == CALLS  # the first version, and 31 new ones


def test_new_versions_taking_every_rpc_thread_still_reach_tracking(
    database_url: str, tmp_path: Path
) -> None:
    """Each CreateModelVersion asks tracking, served by the same process under `modelyard up`,
    about its run. With as many concurrent creates as the server has RPC threads, their tracking
    calls queued behind them: on PostgreSQL the delete and rename races above spent 30 s of
    their ~40 s so (released only when serving's event watch ended its stream), and 32 creates
    after a few registrations failed DEADLINE_EXCEEDED. Now a call waiting on its own server
    lends its thread: all succeed, here at the client's first deadline."""
    settings = Settings(
        home=tmp_path,
        port=0,
        grace_period=0,
        backend_store_uri=database_url,
        core_workers=1,
        max_workers=2,
    )
    with (
        running_server(settings, ("tracking", "registry")) as server,
        Client(server.address, timeout=30) as client,
    ):
        src = f"runs:/{logged_model(client)}/model"
        create = partial(client.create_model_version, "m", src, await_creation_for=0)
        assert race([create] * 4) == {"OK": 4}
        assert versions_of(client, "m") == [1, 2, 3, 4]


def versions_of(client: Client, name: str) -> list[int]:
    return sorted(v.version for v in client.search_model_versions(f"name = '{name}'"))


@contextlib.contextmanager
def served(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Client, ArtifactStore, threading.Event]]:
    """A client of a full server on `database_url`, the registry's artifact store (to hook its
    copies), and an event set once a registration has run to its end."""
    opened: list[ArtifactStore] = []
    registered = threading.Event()

    def open_and_keep(root_uri: str, s3: S3Settings | None = None) -> ArtifactStore:
        opened.append(open_artifact_store(root_uri, s3))
        return opened[-1]

    register = RegistryService._register

    def register_then_tell(service: RegistryService, pending: PendingVersion) -> None:
        register(service, pending)
        registered.set()

    monkeypatch.setattr(registry_app, "open_artifact_store", open_and_keep)
    monkeypatch.setattr(RegistryService, "_register", register_then_tell)
    settings = Settings(home=tmp_path, port=0, grace_period=0, backend_store_uri=database_url)
    with running_server(settings) as server, Client(server.address) as client:
        [store] = opened
        yield client, store, registered


@pytest.mark.parametrize("when", ["during-a-copy", "between-copies"])
def test_version_deleted_while_its_files_are_copied(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    when: str,
) -> None:
    """An expected race: the registration logs it at INFO without a traceback (it was an ERROR
    with one, for the FileNotFoundError of a copy whose temporary file the delete removed), and
    leaves no file behind (a copy made after the delete used to stay, unreachable)."""
    caplog.set_level(logging.INFO, logger="modelyard.services.registry")
    with served(database_url, tmp_path, monkeypatch) as (client, store, registered):
        deleting = threading.Event()

        def delete_first(target: str) -> None:
            """Delete the version just before model.pkl is renamed into place (during a copy),
            or before it is copied at all (between copies)."""
            if target.endswith("/model.pkl") and not deleting.is_set():
                deleting.set()
                client.delete_model_version("d", 1)

        hooked = "_replace" if when == "during-a-copy" else "copy"
        original = getattr(store, hooked)

        def hook(*args: Any) -> None:
            delete_first(str(args[1]))  # copy(src, dst), _replace(tmp, final, key)
            original(*args)

        monkeypatch.setattr(store, hooked, hook)
        mv = client.create_model_version(
            "d", f"runs:/{logged_model(client)}/model", await_creation_for=0
        )
        assert registered.wait(timeout=60)
        assert deleting.is_set()
        with pytest.raises(NotFound):
            client.get_model_version("d", 1)
    stored = Path(mv.storage_location.removeprefix("file://"))
    assert not [p for p in stored.rglob("*") if p.is_file()]
    ours = [r for r in caplog.records if r.name.startswith("modelyard.services.registry")]
    assert not [r for r in ours if r.levelno >= logging.ERROR or r.exc_info], ours
    assert any("was deleted while its files were copied" in r.getMessage() for r in ours)


@pytest.mark.parametrize("write", ["create", "rename", "update"])
def test_a_write_answers_with_what_it_wrote_when_another_follows_at_once(
    db_client: Client, monkeypatch: pytest.MonkeyPatch, write: str
) -> None:
    """Another caller renames the model the moment the write commits. The write read its answer
    afterwards, by name, in a transaction of its own: a create, rename or description update
    that had taken effect answered NOT_FOUND. It now answers with the model it wrote."""
    db_client.create_registered_model("before")
    after_commit: list[Callable[[SqlRegistryStore], object]] = []
    write_transaction = SqlRegistryStore._write

    @contextlib.contextmanager
    def write_then_another(store: SqlRegistryStore) -> Iterator[Any]:
        with write_transaction(store) as conn:
            yield conn
        while after_commit:  # popped first: the other write's own transaction runs no hook
            after_commit.pop()(store)

    monkeypatch.setattr(SqlRegistryStore, "_write", write_then_another)
    if write == "update":
        db_client.rename_registered_model("before", "m")
    after_commit.append(lambda store: store.rename_registered_model("m", "moved", "other"))
    if write == "create":
        model = db_client.create_registered_model("m", description="d")
    elif write == "rename":
        model = db_client.rename_registered_model("before", "m")
    else:
        model = db_client.update_registered_model("m", "d")
    assert not after_commit  # the other write ran, between the write's commit and its answer
    assert model.name == "m"
    assert db_client.get_registered_model("moved").name == "moved"


def test_a_download_reads_the_file_and_its_location_from_one_model(
    db_client: Client, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The model is renamed and another takes its name just after the download has looked the
    version up. The download read the file's record and the version's storage location in two
    lookups by name, so it served the other model's bytes under this one's sha256 (the client
    refused them). It now reads both of the model it looked up, in one read."""
    old = logged_model(db_client, {"MLmodel": b"m", "model.pkl": b"old" * 100})
    new = logged_model(db_client, {"MLmodel": b"m", "model.pkl": b"new" * 100})
    db_client.create_model_version("m", f"runs:/{old}/model")
    db_client.create_model_version("n", f"runs:/{new}/model")
    swaps: list[Callable[[SqlRegistryStore], object]] = [
        lambda store: store.rename_registered_model("m", "m-old", "other"),
        lambda store: store.rename_registered_model("n", "m", "other"),
    ]
    looked_up = SqlRegistryStore._version

    def swap_after_the_lookup(store: SqlRegistryStore, *args: Any, **kwargs: Any) -> Any:
        found = looked_up(store, *args, **kwargs)
        renames, swaps[:] = list(swaps), []
        for rename in renames:
            rename(store)
        return found

    monkeypatch.setattr(SqlRegistryStore, "_version", swap_after_the_lookup)
    target = db_client.download_model_version_file("m", 1, "model.pkl", tmp_path)
    assert not swaps
    assert target.read_bytes() == b"old" * 100
