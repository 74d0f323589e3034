"""The registry store contract, on every metadata backend."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from modelyard.entities.registry import ModelVersionStatus, Stage
from modelyard.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from modelyard.services.common.db import Database
from modelyard.services.common.filters import parse_filter, parse_order_by
from modelyard.services.registry.app import migrate
from modelyard.services.registry.store.base import StoredFile
from modelyard.services.registry.store.sql import SqlRegistryStore

RUN = "a" * 32


@pytest.fixture
def store(database_url: str) -> Iterator[SqlRegistryStore]:
    db = Database(database_url)
    migrate(db)
    s = SqlRegistryStore(db, "file:///models")
    yield s
    s.close()


def version(store: SqlRegistryStore, name: str = "m", ready: bool = True, user: str = "ann"):
    mv, pending = store.create_model_version(name, f"runs:/{RUN}/model", RUN, "", {}, user)
    if ready:
        store.finish_registration(pending, [StoredFile("MLmodel", 3, "0" * 64)])
    return mv, pending


def events(store: SqlRegistryStore, name: str = "") -> list[tuple[str, int | None]]:
    return [(e.event_type, e.version) for e in store.list_events(name, 0, 1000)]


def test_registered_model_lifecycle(store: SqlRegistryStore) -> None:
    model, model_id = store.create_registered_model(
        "fraud", "detects fraud", {"team": "risk"}, "ann"
    )
    assert store.model_id_of("fraud") == model_id
    assert (model.name, model.description, model.tags, model.user_id) == (
        "fraud",
        "detects fraud",
        {"team": "risk"},
        "ann",
    )
    with pytest.raises(AlreadyExists):
        store.create_registered_model("fraud", "", {}, "bob")
    store.update_registered_model("fraud", "new text", "bob")
    renamed = store.rename_registered_model("fraud", "fraud-v2", "bob")
    assert renamed.description == "new text"
    with pytest.raises(NotFound):
        store.get_registered_model("fraud")
    store.set_registered_model_tag("fraud-v2", "tier", "1", "bob")
    store.delete_registered_model_tag("fraud-v2", "team", "bob")
    assert store.get_registered_model("fraud-v2").tags == {"tier": "1"}
    store.delete_registered_model_tag("fraud-v2", "team", "bob")  # gone: no error, as MLflow
    assert store.get_registered_model("fraud-v2").tags == {"tier": "1"}
    version(store, "fraud-v2")
    deleted_id, locations = store.delete_registered_model("fraud-v2", "bob")
    assert deleted_id == model_id
    assert len(locations) == 1
    assert locations[0].startswith("file:///models/")
    with pytest.raises(NotFound):
        store.get_registered_model("fraud-v2")
    # The model's whole history, asked by either of its names (it is deleted, so each name
    # means the last model called that).
    history = store.list_events("fraud-v2", 0, 100)
    assert store.list_events("fraud", 0, 100) == history
    kinds = [e.event_type for e in history]
    assert kinds == [
        "MODEL_CREATED",
        "MODEL_UPDATED",
        "MODEL_RENAMED",
        "MODEL_TAG_SET",
        "MODEL_TAG_DELETED",
        "VERSION_CREATED",
        "VERSION_READY",
        "MODEL_DELETED",
    ]
    assert {e.user_id for e in history if e.event_type != "VERSION_READY"} == {"ann", "bob"}


def test_versions_number_from_one_and_create_the_model(store: SqlRegistryStore) -> None:
    first, pending = version(store, ready=False)
    assert (first.version, first.status) == (1, ModelVersionStatus.PENDING_REGISTRATION)
    assert first.storage_location.startswith("file:///models/")
    assert store.pending_versions() == [pending]
    assert store.finish_registration(pending, [StoredFile("a", 1, "1" * 64)])
    assert store.get_model_version("m", 1).status == ModelVersionStatus.READY
    assert store.pending_versions() == []
    second, _ = version(store)
    assert second.version == 2
    store.delete_model_version("m", 2, "ann")
    third, _ = version(store)
    assert third.version == 3  # never reused
    with pytest.raises(NotFound):
        store.get_model_version("m", 2)


def test_concurrent_registration_has_no_gap_or_duplicate(store: SqlRegistryStore) -> None:
    numbers: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def register() -> None:
        try:
            mv, _ = store.create_model_version("race", f"runs:/{RUN}/m", RUN, "", {}, "u")
            with lock:
                numbers.append(mv.version)
        except BaseException as exc:  # asserted below
            errors.append(exc)

    threads = [threading.Thread(target=register) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(numbers) == list(range(1, 21))


def test_failed_registration_keeps_the_reason(store: SqlRegistryStore) -> None:
    _, pending = version(store, ready=False)
    store.fail_registration(pending, "source holds no files")
    mv = store.get_model_version("m", 1)
    assert (mv.status, mv.status_message) == (
        ModelVersionStatus.FAILED_REGISTRATION,
        "source holds no files",
    )
    with pytest.raises(FailedPrecondition, match="no files"):
        store.list_version_files("m", 1, "")
    assert store.finish_registration(pending, [])  # too late: stays failed, but still there
    assert store.get_model_version("m", 1).status == ModelVersionStatus.FAILED_REGISTRATION


def test_registration_of_a_deleted_version_says_so(store: SqlRegistryStore) -> None:
    """False: the caller removes the files it copied (the delete removed those already there)."""
    _, pending = version(store, ready=False)
    store.delete_model_version("m", 1, "ann")
    assert not store.finish_registration(pending, [StoredFile("a", 1, "1" * 64)])
    assert not store.fail_registration(pending, "copy failed")
    with pytest.raises(NotFound):
        store.get_model_version("m", 1)


def test_aliases_point_at_one_version(store: SqlRegistryStore) -> None:
    version(store)
    version(store)
    store.set_alias("m", "champion", 1, "ann")
    store.set_alias("m", "champion", 2, "ann")
    assert store.get_version_by_alias("m", "champion").version == 2
    assert store.get_model_version("m", 1).aliases == []
    assert store.get_model_version("m", 2).aliases == ["champion"]
    assert store.get_registered_model("m").aliases == {"champion": 2}
    moved = [e for e in store.list_events("m", 0, 100) if e.event_type == "ALIAS_SET"]
    assert moved[-1].details == {"alias": "champion", "previous_version": "1"}
    with pytest.raises(NotFound):
        store.set_alias("m", "x", 99, "ann")
    store.delete_model_version("m", 2, "ann")  # deleting a version drops its aliases
    with pytest.raises(NotFound):
        store.get_version_by_alias("m", "champion")
    store.delete_alias("m", "champion", "ann")  # already gone: nothing to do, as in MLflow
    with pytest.raises(NotFound):
        store.delete_alias("nope", "champion", "ann")


def test_stages_and_archive_existing(store: SqlRegistryStore) -> None:
    for _ in range(3):
        version(store)
    store.transition_stage("m", 1, Stage.PRODUCTION, False, "ann")
    store.transition_stage("m", 2, Stage.PRODUCTION, False, "ann")
    store.transition_stage("m", 3, Stage.PRODUCTION, True, "ann")
    stages = {v: store.get_model_version("m", v).current_stage for v in (1, 2, 3)}
    assert stages == {1: Stage.ARCHIVED, 2: Stage.ARCHIVED, 3: Stage.PRODUCTION}
    latest = store.get_latest_versions("m", [Stage.PRODUCTION])
    assert [v.version for v in latest] == [3]
    assert {v.current_stage for v in store.get_latest_versions("m", [])} == {
        Stage.PRODUCTION,
        Stage.ARCHIVED,
    }


def test_version_tags_and_description(store: SqlRegistryStore) -> None:
    version(store)
    store.set_model_version_tag("m", 1, "validated", "yes", "ann")
    store.update_model_version("m", 1, "first good one", "ann")
    mv = store.get_model_version("m", 1)
    assert (mv.tags, mv.description) == ({"validated": "yes"}, "first good one")
    store.delete_model_version_tag("m", 1, "validated", "ann")
    assert store.get_model_version("m", 1).tags == {}


def test_search(store: SqlRegistryStore) -> None:
    for name in ("fraud-a", "fraud-b", "churn"):
        store.create_registered_model(
            name, "", {"team": "risk" if "fraud" in name else "growth"}, "u"
        )
        version(store, name)
        version(store, name)
    found = store.search_registered_models(
        parse_filter("name LIKE 'fraud%'"), parse_order_by(["name DESC"]), 10, ""
    )
    assert [m.name for m in found] == ["fraud-b", "fraud-a"]
    assert [
        m.name
        for m in store.search_registered_models(parse_filter("tags.team = 'growth'"), [], 10, "")
    ] == ["churn"]
    page = store.search_registered_models([], parse_order_by(["name ASC"]), 2, "")
    rest = store.search_registered_models([], parse_order_by(["name ASC"]), 2, page.token)
    assert [m.name for m in page] + [m.name for m in rest] == ["churn", "fraud-a", "fraud-b"]
    versions = store.search_model_versions(
        parse_filter("name = 'churn'"), parse_order_by(["version ASC"]), 10, ""
    )
    assert [(v.name, v.version) for v in versions] == [("churn", 1), ("churn", 2)]
    assert (
        len(
            store.search_model_versions(
                parse_filter(f"run_id = '{RUN}' and version > 1"), [], 10, ""
            )
        )
        == 3
    )
    with pytest.raises(InvalidArgument):
        store.search_model_versions(parse_filter("metrics.x > 1"), [], 10, "")


def test_ilike_folds_case_beyond_ascii_on_every_backend(store: SqlRegistryStore) -> None:
    """ILIKE is PostgreSQL's: each character lower-cased, accented and Greek ones too. SQLite's
    own lower() folds ASCII only, so there the first search found nothing."""
    for name in ("MODÈLE-ÉTÉ", "ΣΑΣ-Straße", "other"):
        version(store, name)

    def models(flt: str) -> list[str]:
        return [m.name for m in store.search_registered_models(parse_filter(flt), [], 10, "")]

    def versions(flt: str) -> list[str]:
        return [v.name for v in store.search_model_versions(parse_filter(flt), [], 10, "")]

    assert models("name ILIKE '%modèle-été%'") == ["MODÈLE-ÉTÉ"]
    assert models("name ILIKE '\u03c3\u03b1\u03c3%'") == ["ΣΑΣ-Straße"]  # lower-case Greek
    assert models("name ILIKE '%STRASSE'") == []  # folded one character at a time, as PG does
    assert models("name LIKE '%modèle%'") == []  # LIKE stays case-sensitive
    assert versions("name ILIKE '%MODèLE%'") == ["MODÈLE-ÉTÉ"]
    store.set_model_version_tag("other", 1, "owner", "Zoë", "u")
    assert versions("tags.owner ILIKE 'ZOË'") == ["other"]


def test_files_listing(store: SqlRegistryStore) -> None:
    _, pending = version(store, ready=False)
    store.finish_registration(
        pending, [StoredFile("MLmodel", 1, "a" * 64), StoredFile("data/model.pkl", 2, "b" * 64)]
    )
    assert [f.path for f in store.list_version_files("m", 1, "")] == ["MLmodel", "data/model.pkl"]
    assert [f.path for f in store.list_version_files("m", 1, "data")] == ["data/model.pkl"]
    assert [f.path for f in store.list_version_files("m", 1, "MLmodel")] == ["MLmodel"]
    assert [f.path for f in store.list_version_files("m", 1, "", limit=1)] == ["MLmodel"]
    after = store.list_version_files("m", 1, "", after="MLmodel", limit=1)
    assert [f.path for f in after] == ["data/model.pkl"]
    assert store.list_version_files("m", 1, "data", after="data/model.pkl") == []


def test_events_pages_and_newest_first(store: SqlRegistryStore) -> None:
    version(store)
    store.set_alias("m", "a", 1, "u")
    all_events = store.list_events("m", 0, 100)
    assert [e.event_id for e in all_events] == sorted(e.event_id for e in all_events)
    assert store.list_events("m", 0, 1, newest_first=True)[0].event_id == all_events[-1].event_id
    assert store.last_event_id() == all_events[-1].event_id
    assert store.list_events("m", all_events[1].event_id, 100) == all_events[2:]
    older = store.list_events("m", 0, 2, newest_first=True, before_event_id=all_events[-1].event_id)
    assert older == all_events[-3:-1][::-1]


def test_a_model_created_by_its_first_version_is_stamped_once(
    store: SqlRegistryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clock that moves between reads: the model a version creates, and the version, share one
    time (the model was last updated a tick before it was created)."""
    from modelyard.services.registry.store import sql

    ticks = iter(range(1_000_000, 2_000_000))
    monkeypatch.setattr(sql, "_now", lambda: next(ticks))
    mv, _ = version(store, "stamped")
    model = store.get_registered_model("stamped")
    assert model.creation_timestamp == model.last_updated_timestamp == mv.creation_timestamp
