"""Declarative apply over gRPC on SQLite and PostgreSQL: plans, versions, refused changes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from functools import partial
from pathlib import Path

import pytest

from modelyard.errors import FailedPrecondition, InvalidArgument, NotFound
from modelyard.features import (
    Bool,
    Entity,
    FeatureService,
    FeatureStoreClient,
    FeatureView,
    Field,
    FileSource,
    Float32,
    Float64,
    Int64,
    SqlSource,
    String,
)
from modelyard.services.common.settings import FeaturesSettings, Settings
from tests.conftest import running_server
from tests.features.repo import Repo, make_repo
from tests.registry.test_write_races import race


@pytest.fixture
def settings_for(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        home=tmp_path / "home",
        port=0,
        grace_period=0,
        backend_store_uri=database_url,
        features=FeaturesSettings(online_store_uri=f"sqlite:///{tmp_path / 'online.db'}"),
    )


@pytest.fixture
def fs(settings_for: Settings) -> Iterator[FeatureStoreClient]:
    with running_server(settings_for, ("features",)) as server:
        client = FeatureStoreClient(server.address)
        yield client
        client.close()


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return make_repo(tmp_path / "repo")


def _plan(steps) -> list[tuple[str, str, str]]:
    return [(s.action, s.kind, s.name) for s in steps]


def test_apply_creates_then_reports_unchanged(fs: FeatureStoreClient, repo: Repo) -> None:
    created = fs.apply(repo.objects)
    assert sorted(_plan(created)) == [
        ("create", "entity", "driver"),
        ("create", "feature_service", "driver_model"),
        ("create", "feature_view", "driver_stats"),
    ]
    assert {s.action for s in fs.apply(repo.objects)} == {"unchanged"}
    view = fs.get_feature_view("driver_stats")
    assert view == repo.stats  # every attribute survives the round trip
    assert fs.get_feature_service("driver_model") == repo.service
    assert fs.list_entities() == [repo.driver]


def test_dry_run_changes_nothing(fs: FeatureStoreClient, repo: Repo) -> None:
    plan = fs.plan(repo.objects)
    assert {s.action for s in plan} == {"create"}
    assert fs.list_feature_views() == []
    with pytest.raises(NotFound) as err:
        fs.get_feature_view("driver_stats")
    assert err.value.resource_type == "feature_view"


def test_updates_are_versioned_and_old_versions_readable(
    fs: FeatureStoreClient, repo: Repo
) -> None:
    fs.apply(repo.objects)
    longer = replace(repo.stats, ttl=timedelta(days=2))
    widened = replace(longer, schema=(*longer.schema, Field("rating", Float32)))
    steps = {s.name: s for s in fs.apply([widened])}
    assert steps["driver_stats"].action == "update"
    assert "+feature rating" in steps["driver_stats"].changes
    assert any(c.startswith("ttl:") for c in steps["driver_stats"].changes)
    current, version = fs.get_definition("feature_view", "driver_stats")
    assert version == 2 and current == widened
    old, old_version = fs.get_definition("feature_view", "driver_stats", version=1)
    assert old_version == 1 and old == repo.stats
    with pytest.raises(NotFound):
        fs.get_definition("feature_view", "driver_stats", version=9)


def test_changing_a_feature_type_in_place_is_refused(fs: FeatureStoreClient, repo: Repo) -> None:
    fs.apply(repo.objects)
    retyped = replace(
        repo.stats,
        schema=tuple(Field(f.name, String) if f.name == "trips" else f for f in repo.stats.schema),
    )
    with pytest.raises(FailedPrecondition) as err:
        fs.apply([retyped])
    assert "'trips'" in str(err.value) and "INT64" in str(err.value) and "STRING" in str(err.value)
    assert "new name" in str(err.value)  # tells the user what to do instead
    assert fs.get_feature_view("driver_stats") == repo.stats  # nothing changed


def test_changing_join_keys_is_refused(fs: FeatureStoreClient, repo: Repo) -> None:
    fs.apply(repo.objects)
    with pytest.raises(FailedPrecondition) as err:
        fs.apply([Entity(name="driver", join_keys=["driver_uuid"], value_type=String)])
    assert err.value.resource_name == "driver"


def test_full_apply_deletes_what_the_file_lacks(fs: FeatureStoreClient, repo: Repo) -> None:
    extra = Entity(name="customer", join_keys=["customer_id"])
    fs.apply([*repo.objects, extra])
    plan = fs.apply(repo.objects, partial=False)
    assert ("delete", "entity", "customer") in _plan(plan)
    assert [e.name for e in fs.list_entities()] == ["driver"]


def test_a_view_in_use_by_a_service_cannot_be_deleted(fs: FeatureStoreClient, repo: Repo) -> None:
    fs.apply(repo.objects)
    with pytest.raises(FailedPrecondition) as err:
        fs.apply([repo.driver, repo.service], partial=False)
    assert err.value.resource_name == "driver_stats"
    assert "driver_model" in str(err.value)
    assert fs.get_feature_view("driver_stats") == repo.stats


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (
            lambda r: [r.driver, replace(r.stats, entities=("nobody",))],
            "definitions[1].feature_view.entities",
        ),
        (lambda r: [r.driver, replace(r.stats, schema=())], "definitions[1].feature_view.schema"),
        (
            lambda r: [r.driver, replace(r.stats, name="bad name!")],
            "definitions[1].feature_view.name",
        ),
        (lambda r: [r.driver, r.driver], "definitions[1].entity.name"),
        (
            lambda r: [r.driver, r.stats, FeatureService("s", [r.stats[["nope"]]])],
            "definitions[2].feature_service.projections[0].features",
        ),
        (
            lambda r: [FeatureService("s", [r.stats])],
            "definitions[0].feature_service.projections[0].feature_view",
        ),
        # Sources the readers cannot open are refused when applied, not when first read.
        (
            lambda r: [r.driver, replace(r.stats, source=FileSource("gs://bucket/x.parquet"))],
            "definitions[1].feature_view.source.file.path",
        ),
        (
            lambda r: [r.driver, replace(r.stats, source=FileSource("s3:///x.parquet"))],
            "definitions[1].feature_view.source.file.path",
        ),
        (
            lambda r: [r.driver, replace(r.stats, source=FileSource("s3://[bucket/x.parquet"))],
            "definitions[1].feature_view.source.file.path",
        ),
        (
            lambda r: [
                r.driver,
                replace(r.stats, source=FileSource(str(r.path), file_format="orc")),
            ],
            "definitions[1].feature_view.source.file.file_format",
        ),
        (
            lambda r: [r.driver, replace(r.stats, source=SqlSource("not a url", "t"))],
            "definitions[1].feature_view.source.sql.url",
        ),
        (
            lambda r: [r.driver, replace(r.stats, source=SqlSource("nosuchdb://h/d", "t"))],
            "definitions[1].feature_view.source.sql.url",
        ),
        (
            lambda r: [r.driver, replace(r.stats, source=SqlSource("mysql://h/d", "t"))],
            "definitions[1].feature_view.source.sql.url",
        ),
        (
            lambda r: [r.driver, replace(r.stats, source=SqlSource("sqlite:///f.db", " "))],
            "definitions[1].feature_view.source.sql.query",
        ),
        # A feature given twice by a service: lookups could never give both.
        (
            lambda r: [r.driver, r.stats, FeatureService("s", [r.stats[["trips"]]] * 2)],
            "definitions[2].feature_service.projections[1].features",
        ),
        (
            lambda r: [r.driver, r.stats, FeatureService("s", [r.stats, r.stats[["city"]]])],
            "definitions[2].feature_service.projections[1].features",
        ),
        (
            lambda r: [Entity(name="e", join_keys=[Field("a", Int64), Field("a", String)])],
            "definitions[0].entity.join_keys[1].name",
        ),
        # Names of the engine's own working columns (`__ts`, `__row`, ...) are no features.
        (
            lambda r: [r.driver, replace(r.stats, schema=(*r.stats.schema, Field("__ts", Int64)))],
            "definitions[1].feature_view.schema[3].name",
        ),
        (
            lambda r: [Entity(name="e", join_keys=["__row"], value_type=Int64)],
            "definitions[0].entity.join_keys[0].name",
        ),
    ],
)
def test_definitions_that_do_not_hold_together(
    fs: FeatureStoreClient, repo: Repo, bad, field
) -> None:
    with pytest.raises(InvalidArgument) as err:
        fs.apply(bad(repo))
    assert err.value.field == field
    assert fs.list_entities() == []  # all or nothing


def test_definitions_refuse_values_of_the_wrong_kind_where_they_are_written(repo: Repo) -> None:
    """A str for join_keys made one key per character (d, r, i, v, e, r, _, i, d), and a type
    name, a path for a source or seconds for a ttl failed later as a bug (KeyError,
    AttributeError): each is refused when the definition is made, saying what to write."""
    with pytest.raises(TypeError, match=r"join_keys=\['driver_id'\]"):
        Entity(name="driver", join_keys="driver_id")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dtype 'float' is not a feature type; use one of INT32"):
        Field("x", "float")  # type: ignore[arg-type]
    assert Field("x", "float64").dtype == Float64  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="source is a FileSource or SqlSource, not str"):
        replace(repo.stats, source=str(repo.path))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"ttl is a timedelta .* not int 3600"):
        replace(repo.stats, ttl=3600)  # type: ignore[arg-type]


def test_join_keys_listed_in_the_schema_are_not_features(
    fs: FeatureStoreClient, repo: Repo
) -> None:
    feast_style = replace(repo.stats, schema=(Field("driver_id", Int64), *repo.stats.schema))
    fs.apply([repo.driver, feast_style])
    assert fs.get_feature_view("driver_stats").feature_names == ["conv_rate", "trips", "city"]


def test_definitions_survive_a_restart(settings_for: Settings, repo: Repo) -> None:
    with (
        running_server(settings_for, ("features",)) as server,
        FeatureStoreClient(server.address) as fs,
    ):
        fs.apply(repo.objects)
        fs.apply([replace(repo.stats, online=False)])
    with (
        running_server(settings_for, ("features",)) as server,
        FeatureStoreClient(server.address) as fs,
    ):
        assert fs.get_definition("feature_view", "driver_stats")[1] == 2
        assert fs.get_feature_view("driver_stats").online is False
        assert fs.get_feature_service("driver_model") == repo.service


def test_list_rejects_an_unknown_kind(fs: FeatureStoreClient) -> None:
    with pytest.raises(InvalidArgument) as err:
        fs._list("table")
    assert err.value.field == "kind"


def test_view_named_in_a_service_must_exist_in_the_registry_or_request(
    fs: FeatureStoreClient, repo: Repo
) -> None:
    fs.apply([repo.driver, repo.stats])
    other = FeatureView(
        name="driver_daily",
        entities=[repo.driver],
        schema=[Field("km", Float32)],
        source=repo.stats.source,
    )
    steps = fs.apply([other, FeatureService("both", [repo.stats, other])])
    assert sorted(_plan(steps)) == [
        ("create", "feature_service", "both"),
        ("create", "feature_view", "driver_daily"),
    ]


def test_definition_lookups_are_cached_per_replica(database_url: str, repo: Repo) -> None:
    """Lookups answer from memory (definitions change rarely); this replica's applies show at
    once, another replica's after `definitions_cache_seconds`."""
    from modelyard.services.common.db import Database
    from modelyard.services.feature_store.app import migrate
    from modelyard.services.feature_store.store.sql import SqlFeatureStore

    db = Database(database_url)
    migrate(db)
    here, other, uncached = (SqlFeatureStore(db, s) for s in (3600, 3600, 0))
    assert here.find("entity", "driver") is None and other.find("entity", "driver") is None
    here.apply([repo.driver], [], "alice")
    assert here.find("entity", "driver").definition == repo.driver  # its own apply: at once
    assert other.find("entity", "driver") is None  # still within the other replica's cache
    assert uncached.find("entity", "driver").definition == repo.driver
    db.dispose()


def test_a_service_stored_with_a_feature_twice_serves_it_once(
    fs: FeatureStoreClient, settings_for: Settings, repo: Repo
) -> None:
    """Apply refuses such a service now; one stored before (written here past the checks) gives
    each feature once, where every lookup through it failed."""
    from modelyard.services.common.db import Database
    from modelyard.services.feature_store.store.sql import SqlFeatureStore

    fs.apply(repo.objects)
    fs.push("driver_stats", repo.rows.tail(1))
    twice = FeatureService("twice", [repo.stats[["trips"]], repo.stats[["trips", "city"]]])
    db = Database(settings_for.database_url)
    SqlFeatureStore(db, 0).apply([twice], [], "alice")
    db.dispose()
    found = fs.get_online_features("twice", [{"driver_id": 2}]).to_dict()
    assert found == {"driver_id": [2], "trips": [90], "city": ["Paris"]}
    with pytest.raises(InvalidArgument, match="'driver_stats:trips' is asked for twice"):
        fs.get_online_features(["driver_stats:trips"] * 2, [{"driver_id": 2}])


def _without(view: FeatureView, feature: str) -> FeatureView:
    return replace(view, schema=tuple(f for f in view.schema if f.name != feature))


def test_a_partial_apply_cannot_drop_a_feature_a_service_uses(
    fs: FeatureStoreClient, repo: Repo
) -> None:
    """Only the services in the request were checked: the apply succeeded, and the service
    then failed every call."""
    fs.apply(repo.objects)
    with pytest.raises(FailedPrecondition) as err:
        fs.apply([_without(repo.stats, "trips")])
    assert err.value.resource_name == "driver_stats"
    assert "'trips'" in str(err.value) and "'driver_model'" in str(err.value)
    assert fs.get_feature_view("driver_stats") == repo.stats
    slim = _without(repo.stats, "trips")  # with the service changed in the same apply: fine
    fs.apply([slim, FeatureService("driver_model", [slim[["conv_rate"]]])])
    assert fs.get_feature_view("driver_stats") == slim


def test_a_full_apply_cannot_delete_an_entity_a_view_it_keeps_uses(
    fs: FeatureStoreClient, repo: Repo
) -> None:
    """Checked against the entities before the apply, the view passed and its entity was
    deleted; applying the same file again was then refused."""
    fs.apply(repo.objects)
    with pytest.raises(FailedPrecondition) as err:
        fs.apply([repo.stats, repo.service], partial=False)
    assert (err.value.resource_type, err.value.resource_name) == ("entity", "driver")
    assert "'driver_stats'" in str(err.value)
    assert fs.list_entities() == [repo.driver]
    assert {s.action for s in fs.apply(repo.objects, partial=False)} == {"unchanged"}


def test_a_feature_dropped_and_added_back_keeps_its_type(
    fs: FeatureStoreClient, repo: Repo
) -> None:
    """Only the current definition was compared: dropping a feature and adding it back under
    another type let rows stored before be read as the new type (a STRING as BOOL True)."""
    fs.apply([repo.driver, repo.stats])
    without = _without(repo.stats, "city")
    fs.apply([without])
    retyped = replace(repo.stats, schema=(*without.schema, Field("city", Bool)))
    with pytest.raises(FailedPrecondition) as err:
        fs.apply([retyped])
    message = str(err.value)
    assert "'city'" in message and "STRING" in message and "BOOL" in message
    assert "new name" in message  # what to do instead
    assert fs.get_feature_view("driver_stats") == without
    fs.apply([repo.stats])  # back as it was: fine
    # A view deleted (its rows with it) and created again has no past.
    fs.apply([repo.driver], partial=False)
    assert ("create", "feature_view", "driver_stats") in _plan(fs.apply([repo.driver, retyped]))


def test_concurrent_applies_all_succeed(settings_for: Settings, repo: Repo) -> None:
    """Applies at once of one new view, then of changes to it. On PostgreSQL each computed the
    same next version outside any lock and most failed INTERNAL on the primary key."""
    calls = 8
    with running_server(settings_for, ("features",)) as server:
        clients = [FeatureStoreClient(server.address) for _ in range(calls)]
        try:
            clients[0].apply([repo.driver])
            for n in range(3):
                for phase in ("create", "update"):
                    views = [
                        replace(repo.stats, name=f"v{n}", description=f"{phase} {i}")
                        for i in range(calls)
                    ]
                    outcomes = race(
                        [partial(c.apply, [v]) for c, v in zip(clients, views, strict=True)]
                    )
                    assert outcomes == {"OK": calls}
                # Every apply changed the description: one version each, the first a create.
                assert clients[0].get_definition("feature_view", f"v{n}")[1] == 2 * calls
                assert clients[0].get_definition("feature_view", f"v{n}", version=1)
        finally:
            for c in clients:
                c.close()


def test_views_defined_before_generations_keep_their_online_rows(
    database_url: str, online_store_uri: str, tmp_path: Path, repo: Repo
) -> None:
    """Views get a generation in their online keys; those defined before it (migrated) have
    generation 0, the keys their rows are stored under, so they keep serving them; one deleted
    and created again gets a generation of its own, past those rows."""
    from sqlalchemy import insert

    from modelyard.services.common.db import Database
    from modelyard.services.common.db.migrations import upgrade
    from modelyard.services.feature_store.app import MIGRATIONS
    from modelyard.services.feature_store.online import OnlineRow, open_online_store
    from modelyard.services.feature_store.online.base import entity_key
    from modelyard.services.feature_store.store.schema import definitions
    from modelyard.services.feature_store.store.sql import _spec

    db = Database(database_url)
    upgrade(db, "features", MIGRATIONS, "0001")  # as the release before generations left it
    with db.engine.begin() as conn:
        for kind, d in (("entity", repo.driver), ("feature_view", repo.stats)):
            row = {"version": 1, "spec": _spec(d), "user_id": "alice", "update_time": 0}
            conn.execute(insert(definitions).values(kind=kind, name=d.name, **row))
    db.dispose()
    online = open_online_store(online_store_uri)
    online.write("driver_stats", [OnlineRow(entity_key([1]), {"trips": 99}, 0)])
    features = FeaturesSettings(online_store_uri=online_store_uri)
    settings = Settings(
        home=tmp_path / "home",
        port=0,
        grace_period=0,
        backend_store_uri=database_url,
        features=features,
    )
    try:
        with running_server(settings, ("features",)) as server:
            fs = FeatureStoreClient(server.address)
            lookup = partial(fs.get_online_features, ["driver_stats:trips"], [{"driver_id": 1}])
            assert lookup().to_dict()["trips"] == [99]
            fs.apply([repo.driver], partial=False)
            fs.apply([repo.driver, repo.stats])
            assert lookup().statuses()["trips"] == ["NOT_FOUND"]
            fs.close()
    finally:
        online.delete_view("driver_stats")
        online.close()


def test_a_run_of_a_view_deleted_meanwhile_is_not_recorded(database_url: str, repo: Repo) -> None:
    """A materialization recorded its run after loading the rows, whatever happened to the
    view meanwhile: a run of a deleted view was kept as the start of incremental runs of one
    created again under its name. It is recorded only if the view is still the generation
    the run loaded."""
    from modelyard.services.common.db import Database
    from modelyard.services.feature_store.app import migrate
    from modelyard.services.feature_store.store.sql import MaterializationRecord, SqlFeatureStore

    db = Database(database_url)
    migrate(db)
    store = SqlFeatureStore(db, 0)
    store.apply([repo.driver, repo.stats], [], "alice")
    loaded = store.find("feature_view", "driver_stats")
    store.apply([], [("feature_view", "driver_stats")], "alice")
    store.apply([repo.stats], [], "alice")
    again = store.find("feature_view", "driver_stats")
    assert loaded is not None and again is not None and again.generation > loaded.generation
    run = MaterializationRecord("driver_stats", 0, 1000, 2, 1000)
    assert not store.record_materialization(run, loaded.generation)
    assert store.materializations("driver_stats") == []
    assert store.record_materialization(run, again.generation)
    assert store.materializations("driver_stats") == [run]
    db.dispose()
