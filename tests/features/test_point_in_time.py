"""Training sets against a naive reference: for every entity row, the latest feature row at or
before its time, within the TTL, ties on event time broken by the latest created time."""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelyard.errors import InvalidArgument
from modelyard.features import (
    Entity,
    FeatureStoreClient,
    FeatureView,
    Field,
    FileSource,
    Float32,
    Float64,
    Int64,
    String,
)
from tests.features.repo import NOW, Repo

BASE = datetime(2026, 1, 1, tzinfo=UTC)


def _feature_rows(rng: random.Random, keys: list[Any], key_name: str, n: int) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    for i in range(n):
        ts = BASE + timedelta(seconds=rng.randrange(0, 50_000))
        if i % 7 == 0 and rows:  # share an event time with an earlier row of the same key
            ts = rows[-1]["event_timestamp"]
            key = rows[-1][key_name]
        else:
            key = rng.choice(keys)
        rows.append(
            {
                key_name: key,
                "event_timestamp": ts,
                # Distinct created times so the tie-break has one right answer.
                "created": BASE + timedelta(seconds=100_000 + i),
                "value": rng.random(),
                "count": rng.randrange(1000),
            }
        )
    rng.shuffle(rows)
    return pd.DataFrame(rows)


def _reference(
    entity_rows: pd.DataFrame,
    features: pd.DataFrame,
    key_name: str,
    columns: list[str],
    ttl: timedelta | None,
) -> list[dict[str, Any]]:
    """The textbook definition, one entity row at a time."""
    by_key: dict[Any, list[dict[str, Any]]] = {}
    for row in features.to_dict("records"):
        by_key.setdefault(row[key_name], []).append(row)
    out = []
    for entity in entity_rows.to_dict("records"):
        t = entity["event_timestamp"]
        candidates = [
            r
            for r in by_key.get(entity[key_name], [])
            if r["event_timestamp"] <= t and (ttl is None or r["event_timestamp"] >= t - ttl)
        ]
        best = max(candidates, key=lambda r: (r["event_timestamp"], r.get("created")), default=None)
        out.append({c: (best[c] if best else None) for c in columns})
    return out


def _plain(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and pd.isna(value)) else value


@pytest.mark.parametrize("online_store_uri", ["sqlite"], indirect=True)
def test_matches_the_naive_reference(store: FeatureStoreClient, tmp_path: Path) -> None:
    rng = random.Random(20261123)
    drivers = list(range(1, 31))
    cities = ["oslo", "bergen", "paris", "lima"]
    driver_rows = _feature_rows(rng, drivers, "driver_id", 3000)
    # Without a created column a shared event time has no right answer: keep one row of each.
    city_rows = (
        _feature_rows(rng, cities, "city", 800)
        .drop(columns=["created"])
        .drop_duplicates(["city", "event_timestamp"])
    )
    driver_rows.to_parquet(tmp_path / "drivers.parquet")
    city_rows.to_csv(tmp_path / "cities.csv", index=False)

    driver = Entity(name="driver", join_keys=["driver_id"], value_type=Int64)
    city = Entity(name="city", join_keys=[Field("city", String)])
    ttl = timedelta(hours=3)
    driver_view = FeatureView(
        name="driver_activity",
        entities=[driver],
        schema=[Field("value", Float64), Field("count", Int64)],
        source=FileSource(str(tmp_path / "drivers.parquet"), created_timestamp_column="created"),
        ttl=ttl,
    )
    city_view = FeatureView(  # no TTL, CSV, no created column
        name="city_weather",
        entities=[city],
        schema=[Field("value", Float64), Field("count", Int64)],
        source=FileSource(str(tmp_path / "cities.csv"), file_format="csv"),
    )
    store.apply([driver, city, driver_view, city_view])

    entity_rows = []
    feature_times = list(driver_rows["event_timestamp"])
    for i in range(4000):
        if i % 5 == 0:  # exactly at a feature row's time, or exactly at the TTL's edge
            when = rng.choice(feature_times) + (ttl if i % 10 == 0 else timedelta(0))
        else:
            when = BASE + timedelta(seconds=rng.randrange(-1000, 60_000))
        entity_rows.append(
            {
                "driver_id": rng.choice([*drivers, 999]),
                "city": rng.choice([*cities, "nowhere"]),
                "event_timestamp": when,
                "label": i,
            }
        )
    entity_df = pd.DataFrame(entity_rows)

    result = store.get_historical_features(
        entity_df,
        [f"{view}:{f}" for view in ("driver_activity", "city_weather") for f in ("value", "count")],
        full_feature_names=True,
    ).to_df()

    assert list(result["label"]) == list(range(4000))  # entity rows keep their order
    drivers_expected = _reference(entity_df, driver_rows, "driver_id", ["value", "count"], ttl)
    cities_expected = _reference(entity_df, city_rows, "city", ["value", "count"], None)
    mismatches = []
    for i, got in enumerate(result.to_dict("records")):
        expected = {
            "driver_activity__value": drivers_expected[i]["value"],
            "driver_activity__count": drivers_expected[i]["count"],
            "city_weather__value": cities_expected[i]["value"],
            "city_weather__count": cities_expected[i]["count"],
        }
        actual = {k: _plain(got[k]) for k in expected}
        if actual != expected:
            mismatches.append((i, entity_rows[i], expected, actual))
    assert not mismatches, f"{len(mismatches)} rows differ, first: {mismatches[:3]}"
    # The data exercised every case: found, outside the TTL, unknown entity, at the edge.
    found = sum(e["value"] is not None for e in drivers_expected)
    assert 0 < found < len(entity_rows)


@pytest.mark.parametrize("online_store_uri", ["sqlite"], indirect=True)
def test_a_feature_service_and_output_parquet(store: FeatureStoreClient, repo, tmp_path) -> None:
    store.apply(repo.objects)
    entity_df = pd.DataFrame(
        {
            "driver_id": [1, 1, 2, 3],
            "event_timestamp": [NOW, NOW - timedelta(hours=3), NOW - timedelta(hours=71), NOW],
        }
    )
    output = tmp_path / "home" / "artifacts" / "training-sets" / "a.parquet"
    job = store.get_historical_features(entity_df, repo.service, output_uri=output.as_uri())
    df = job.to_df()
    assert list(df.columns) == ["driver_id", "event_timestamp", "conv_rate", "trips"]
    # NOW: the later-created of the two rows an hour ago; 3h ago: the row 5h ago; driver 2 at
    # 71h ago: the row 72h ago (within a day); driver 3: nothing.
    assert [_plain(v) for v in df["conv_rate"]] == [0.35, 0.1, 0.9, None]
    assert [_plain(v) for v in df["trips"]] == [35, 10, 90, None]
    written = pd.read_parquet(output)
    pd.testing.assert_frame_equal(written, df)
    assert job.output_uri is not None and job.output_uri.endswith("training-sets/a.parquet")
    assert job.summary is not None  # to_df() ran the job, whose reply carries the summary
    assert job.summary.output_sha256 == hashlib.sha256(output.read_bytes()).hexdigest()
    assert job.summary.rows == 4


@pytest.mark.parametrize("online_store_uri", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("entity_rows", "field", "said"),
    [
        (
            pd.DataFrame({"driver_id": [1, 2], "event_timestamp": ["notatime", "x"]}),
            "event_timestamp_column",
            "notatime",
        ),
        (
            pd.DataFrame({"driver_id": [1, 2], "event_timestamp": [1, 2]}),
            "event_timestamp_column",
            "not times",
        ),
        (
            pd.DataFrame({"driver_id": ["1", "a"], "event_timestamp": [NOW, NOW]}),
            "driver_id",
            "holds VARCHAR values",
        ),
        (
            pd.DataFrame({"driver_id": [1.0, 2.5], "event_timestamp": [NOW, NOW]}),
            "driver_id",
            "holds 2.5",
        ),
        # True joined driver 1 (False driver 0), where online lookups refuse a bool key.
        (
            pd.DataFrame({"driver_id": [True], "event_timestamp": [NOW]}),
            "driver_id",
            "holds BOOLEAN values",
        ),
        # A column the features would add again, and the engine's own working names.
        (
            pd.DataFrame({"driver_id": [1], "event_timestamp": [NOW], "trips": [5]}),
            "entities",
            "already have a column 'trips'",
        ),
        (
            pd.DataFrame({"driver_id": [1], "event_timestamp": [NOW], "__event_ts": [5]}),
            "entities",
            "'__event_ts'",
        ),
        # Arrow allows two columns of one name; the engine renamed the second driver_id_1.
        (
            pa.table([[1], [2], [NOW]], names=["driver_id", "driver_id", "event_timestamp"]),
            "entities",
            "two columns named 'driver_id'",
        ),
        # A column without a name came back named 'v2' (the engine's name for it).
        (
            pa.table([[1], [NOW], [3]], names=["driver_id", "event_timestamp", ""]),
            "entities",
            "a column with no name",
        ),
    ],
)
def test_entity_rows_that_cannot_be_joined_are_the_callers_to_fix(
    store: FeatureStoreClient,
    repo: Repo,
    entity_rows: pd.DataFrame | pa.Table,
    field: str,
    said: str,
) -> None:
    """Times that are not times, keys of the wrong type, columns that would clash: INVALID_ARGUMENT
    naming the column, not an error blamed on the source or the server."""
    store.apply(repo.objects)
    with pytest.raises(InvalidArgument) as err:
        store.get_historical_features(entity_rows, ["driver_stats:trips"]).to_df()
    assert err.value.field == field and said in str(err.value)
    # A whole float is a key of an integer entity, as online: driver 1's latest trips.
    ok = pd.DataFrame({"driver_id": [1.0], "event_timestamp": [NOW]})
    assert store.get_historical_features(ok, ["driver_stats:trips"]).to_df()["trips"].tolist() == [
        35
    ]


@pytest.mark.parametrize("online_store_uri", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "key",
    [
        pytest.param("1", id="digits"),  # joined driver 1 offline
        pytest.param(1.5, id="fraction"),  # gave no value offline, without a word
        pytest.param(NOW, id="timestamp"),
        pytest.param(1e19, id="beyond-int64"),
    ],
)
def test_online_and_offline_refuse_the_same_keys(
    store: FeatureStoreClient, repo: Repo, key: Any
) -> None:
    """The training join cast entity keys to the source's type, so it took keys online lookups
    refuse ('1' or 1.5 for an INT64 entity): a model was trained on rows it is never served.
    Both now take a key as its entity's declared type, and refuse the same ones naming it."""
    store.apply(repo.objects)
    store.materialize(NOW - timedelta(hours=100), NOW)
    with pytest.raises(InvalidArgument) as online:
        store.get_online_features(["driver_stats:trips"], [{"driver_id": key}])
    assert "'driver_id'" in str(online.value)
    rows = pd.DataFrame({"driver_id": [key], "event_timestamp": [NOW]})
    with pytest.raises(InvalidArgument) as offline:
        store.get_historical_features(rows, ["driver_stats:trips"]).to_df()
    assert offline.value.field == "driver_id" and "INT64" in str(offline.value)


@pytest.mark.parametrize("online_store_uri", ["sqlite"], indirect=True)
def test_entity_rows_all_without_their_key_get_no_values(
    store: FeatureStoreClient, repo: Repo
) -> None:
    """A null key is no entity's: a training set gives such a row no values, as online lookups
    do. Where every row lacked its key (a column of None, typed NULL), the rows were refused
    instead: 'holds "NULL" values, which are not keys of type INT64'."""
    store.apply(repo.objects)
    rows = pd.DataFrame({"driver_id": [None, None], "event_timestamp": [NOW, NOW], "y": [0, 1]})
    training = store.get_historical_features(rows, ["driver_stats:trips"]).to_df()
    assert training["y"].tolist() == [0, 1]
    assert training["driver_id"].isna().all() and training["trips"].isna().all()


@pytest.mark.parametrize("online_store_uri", ["sqlite"], indirect=True)
def test_a_float32_key_is_taken_as_online_takes_it(store: FeatureStoreClient, tmp_path) -> None:
    """0.1 is a FLOAT32 key online (narrowed to the nearest float32), so an online lookup of 0.1
    finds the source's float32 0.1; the training join compared it as DOUBLE (0.1 against
    0.100000001) and gave no value. It must neither refuse it for changing in the cast."""
    path = tmp_path / "f32.parquet"
    keys = pa.array([0.5, 0.1], pa.float32())
    pq.write_table(pa.table({"k": keys, "ts": pa.array([NOW] * 2), "x": [5, 2]}), path)
    entity = Entity(name="f", join_keys=[Field("k", Float32)])
    view = FeatureView(
        name="by_f32",
        entities=[entity],
        schema=[Field("x", Int64)],
        source=FileSource(path=str(path), timestamp_field="ts"),
    )
    store.apply([entity, view])
    rows = pd.DataFrame({"k": [0.5, 0.1], "event_timestamp": [NOW] * 2})
    training = store.get_historical_features(rows, ["by_f32:x"]).to_df()
    assert training["x"].tolist() == [5, 2]
