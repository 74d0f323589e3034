"""Materialization, online lookups and pushes over gRPC, on the SQLite and Redis online stores."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelyard._gen.features.v1 import features_pb2 as pb
from modelyard.convert.features import append_python_values
from modelyard.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from modelyard.features import (
    Bool,
    Bytes,
    Entity,
    FeatureStoreClient,
    FeatureView,
    Field,
    FileSource,
    Float32,
    Float64,
    Int32,
    Int64,
    OnlineResponse,
    String,
    UnixTimestamp,
)
from modelyard.features.client import _arrow_bytes, _ms
from modelyard.services.common.settings import FeaturesSettings, Settings
from modelyard.services.feature_store.online import OnlineRow, open_online_store
from modelyard.services.feature_store.online.base import entity_key, online_name
from tests.conftest import free_port, running_server
from tests.features.repo import NOW, Repo

HOUR = timedelta(hours=1)
NOW_MS = int(NOW.timestamp() * 1000)


# driver_stats' features besides trips, for one pushed row: a push to the offline store sends
# every feature.
_OTHERS = {"conv_rate": [0.5], "city": ["Oslo"]}


def _lookup(store: FeatureStoreClient, ids: Sequence[Any], features=None):
    return store.get_online_features(
        features or ["driver_stats:conv_rate", "driver_stats:trips", "driver_stats:city"],
        [{"driver_id": i} for i in ids],
    )


def test_materialize_then_look_up(store: FeatureStoreClient, repo: Repo) -> None:
    store.apply(repo.objects)
    (done,) = store.materialize(NOW - 100 * HOUR, NOW + HOUR)
    assert (done.feature_view, done.rows) == ("driver_stats", 2)
    response = _lookup(store, [1, 2, 3])
    # Driver 1: the later-created of the two rows an hour ago. Driver 2's row is 72h old, past
    # the one-day TTL. Driver 3 was never seen.
    assert response.to_dict() == {
        "driver_id": [1, 2, 3],
        "conv_rate": [0.35, 0.9, None],
        "trips": [35, 90, None],
        "city": ["Bergen", "Paris", None],
    }
    statuses = response.statuses()
    assert statuses["conv_rate"] == ["PRESENT", "OUTSIDE_MAX_AGE", "NOT_FOUND"]
    times = response.event_timestamps()["trips"]
    assert times == [NOW - HOUR, NOW - 72 * HOUR, None]


def test_packed_event_times_carry_what_a_timestamp_per_value_carries(
    store: FeatureStoreClient, repo: Repo
) -> None:
    """The SDK asks for packed event times; a client that does not gets a Timestamp per value,
    and both read back alike (None where NOT_FOUND, the time where OUTSIDE_MAX_AGE)."""
    store.apply(repo.objects)
    store.materialize(NOW - 100 * HOUR, NOW + HOUR)
    refs = ["driver_stats:conv_rate", "driver_stats:trips"]
    replies = {}
    for packed in (True, False):
        request = pb.GetOnlineFeaturesRequest(
            features=refs, typed_arrays=True, packed_event_times=packed
        )
        append_python_values(request.entities.add(name="driver_id").values, [1, 2, 3])
        replies[packed] = store._stub.GetOnlineFeatures(request)
    _, *packed_columns = replies[True].columns
    _, *message_columns = replies[False].columns
    assert all(len(c.event_time_micros) == 3 and not c.event_timestamps for c in packed_columns)
    assert all(len(c.event_timestamps) == 3 and not c.event_time_micros for c in message_columns)
    expected = [NOW - HOUR, NOW - 72 * HOUR, None]
    for reply in replies.values():
        assert OnlineResponse(reply).event_timestamps() == {
            "conv_rate": expected,
            "trips": expected,
        }


def test_join_keys_come_back_as_python_values_however_they_were_given(
    store: FeatureStoreClient, repo: Repo
) -> None:
    """The SDK reuses the keys it sent when they are plain integers; numpy's come back as the
    server echoed them, plain integers too, and a mixed column as the server read it."""
    store.apply(repo.objects)
    store.materialize(NOW - 100 * HOUR, NOW + HOUR)
    for ids in ([1, 3], [np.int64(1), np.int64(3)], [1, np.int32(3)]):
        found = _lookup(store, ids, ["driver_stats:trips"]).to_dict()
        assert found == {"driver_id": [1, 3], "trips": [35, None]}
        assert [type(i) for i in found["driver_id"]] == [int, int]
        found["driver_id"].append(9)  # the caller's list is a copy, not the one sent
        assert len(ids) == 2


def test_a_window_loads_the_latest_row_inside_it(store: FeatureStoreClient, repo: Repo) -> None:
    store.apply(repo.objects)
    store.materialize(NOW - 10 * HOUR, NOW - 90 * timedelta(minutes=1))
    assert _lookup(store, [1]).to_dict()["conv_rate"] == [0.2]


def test_incremental_continues_where_the_last_window_ended(
    store: FeatureStoreClient, repo: Repo
) -> None:
    store.apply(repo.objects)
    # The first incremental run reaches back one TTL: driver 2's row (72h old) stays out.
    first = store.materialize_incremental(NOW - 90 * timedelta(minutes=1))
    assert first[0].start_time == NOW - 90 * timedelta(minutes=1) - timedelta(days=1)
    assert _lookup(store, [1, 2]).statuses()["trips"] == ["PRESENT", "NOT_FOUND"]
    second = store.materialize_incremental(NOW + HOUR)
    assert second[0].start_time == first[0].end_time
    assert _lookup(store, [1]).to_dict()["trips"] == [35]
    history = store.list_materializations("driver_stats")
    assert [(m.start_time, m.end_time, m.rows) for m in history] == [
        (first[0].start_time, first[0].end_time, 1),
        (second[0].start_time, second[0].end_time, 1),
    ]


def test_latest_only_lists_each_views_run_whose_window_ends_last(
    store: FeatureStoreClient, repo: Repo
) -> None:
    """What a freshness overview reads: one run per view, the latest window (not the latest
    run: an older window loaded again afterwards is not fresher), in one call."""
    other = replace(repo.stats, name="other_stats")
    store.apply([*repo.objects, other])
    store.materialize(NOW - 100 * HOUR, NOW + HOUR, ["driver_stats"])
    store.materialize(NOW - 10 * HOUR, NOW - 3 * HOUR, ["driver_stats"])
    store.materialize(NOW - 10 * HOUR, NOW - 5 * HOUR, ["other_stats"])
    store.materialize(NOW - 5 * HOUR, NOW - 4 * HOUR, ["other_stats"])
    latest = store.list_materializations("", latest_only=True)
    assert [(m.feature_view, m.start_time, m.end_time) for m in latest] == [
        ("driver_stats", NOW - 100 * HOUR, NOW + HOUR),
        ("other_stats", NOW - 5 * HOUR, NOW - 4 * HOUR),
    ]
    assert store.list_materializations("other_stats", latest_only=True) == latest[1:]
    assert len(store.list_materializations("")) == 4
    store.apply([repo.driver, other], partial=False)
    assert store.list_materializations("", latest_only=True) == latest[1:]


def test_an_older_window_does_not_overwrite_newer_values(
    store: FeatureStoreClient, repo: Repo
) -> None:
    store.apply(repo.objects)
    store.materialize(NOW - 100 * HOUR, NOW + HOUR)
    store.materialize(NOW - 10 * HOUR, NOW - 3 * HOUR)
    assert _lookup(store, [1]).to_dict()["conv_rate"] == [0.35]


def test_a_feature_service_and_full_names(store: FeatureStoreClient, repo: Repo) -> None:
    store.apply(repo.objects)
    store.materialize(NOW - 100 * HOUR, NOW + HOUR)
    by_service = store.get_online_features(repo.service, [{"driver_id": 1}]).to_dict()
    assert by_service == {"driver_id": [1], "conv_rate": [0.35], "trips": [35]}
    full = store.get_online_features(
        ["driver_stats:trips"], [{"driver_id": 1}], full_feature_names=True
    ).to_dict()
    assert full == {"driver_id": [1], "driver_stats__trips": [35]}


def test_push_to_online_is_visible_at_once(store: FeatureStoreClient, repo: Repo) -> None:
    store.apply(repo.objects)
    store.materialize(NOW - 100 * HOUR, NOW + HOUR)
    fresh = pd.DataFrame(
        {
            "driver_id": [1, 3, 3],
            "event_timestamp": [NOW, NOW - HOUR, NOW],
            "conv_rate": [0.5, 0.6, 0.7],
            "trips": [50, 60, 70],
            "city": ["Oslo", "Rome", "Rome"],
        }
    )
    assert store.push("driver_stats", fresh) == 3
    values = _lookup(store, [1, 3]).to_dict()
    assert values["conv_rate"] == [0.5, 0.7]  # the newest of driver 3's two rows
    stale = fresh.iloc[:1].assign(event_timestamp=[NOW - 10 * HOUR], conv_rate=[0.0])
    store.push("driver_stats", stale)
    assert _lookup(store, [1]).to_dict()["conv_rate"] == [0.5]  # an older push is ignored
    # Not in the offline log: training sets do not see online-only pushes.
    entity = pd.DataFrame({"driver_id": [3], "event_timestamp": [NOW + HOUR]})
    assert (
        store.get_historical_features(entity, ["driver_stats:trips"]).to_df()["trips"].isna().all()
    )


def test_a_push_of_some_features_keeps_the_others_online(
    store: FeatureStoreClient, repo: Repo
) -> None:
    """As Feast's online stores: the features not sent keep their values, served with the push's
    event time (an entity's row has one); an entity never stored has only the sent ones."""
    store.apply(repo.objects)
    store.materialize(NOW - 100 * HOUR, NOW + HOUR)
    pushed = {"driver_id": [1, 9], "event_timestamp": [NOW, NOW], "trips": [77, 99]}
    store.push("driver_stats", pd.DataFrame(pushed))
    response = _lookup(store, [1, 9])
    assert response.to_dict() == {
        "driver_id": [1, 9],
        "conv_rate": [0.35, None],
        "trips": [77, 99],
        "city": ["Bergen", None],
    }
    assert response.event_timestamps()["conv_rate"] == [NOW, None]
    assert response.statuses()["city"] == ["PRESENT", "NOT_FOUND"]


def test_push_to_the_offline_log_reaches_training_sets(
    store: FeatureStoreClient, repo: Repo
) -> None:
    store.apply(repo.objects)
    pushed = pd.DataFrame(
        {
            "driver_id": [4],
            "event_timestamp": [NOW - HOUR],
            "created": [NOW],
            "conv_rate": [0.44],
            "trips": [44],
            "city": ["Lima"],
        }
    )
    store.push("driver_stats", pushed, to="online_and_offline")
    entity = pd.DataFrame({"driver_id": [4, 1], "event_timestamp": [NOW, NOW]})
    training = store.get_historical_features(entity, ["driver_stats:trips"]).to_df()
    assert list(training["trips"]) == [44, 35]
    assert _lookup(store, [4]).to_dict()["trips"] == [44]


def test_push_keeps_event_times_finer_than_a_millisecond(
    store: FeatureStoreClient, repo: Repo
) -> None:
    """datetime.now() has µs: the event time is served floored to the ms, and of two rows in
    one ms online keeps the later µs, as a training set does."""
    store.apply(repo.objects)
    moment = NOW - HOUR + timedelta(microseconds=1500)

    def push(at: datetime, trips: int) -> None:
        row = {"driver_id": [5], "event_timestamp": [at], **_OTHERS, "trips": [trips]}
        store.push("driver_stats", pd.DataFrame(row), to="online_and_offline")

    push(moment, 1)
    push(moment - timedelta(microseconds=300), 2)  # the same ms, earlier
    push(pd.Timestamp(moment) - pd.Timedelta(nanoseconds=1), 3)  # ns: cut to µs
    response = _lookup(store, [5], ["driver_stats:trips"])
    assert response.to_dict()["trips"] == [1]
    assert response.event_timestamps()["trips"] == [NOW - HOUR + timedelta(milliseconds=1)]
    entity = pd.DataFrame({"driver_id": [5], "event_timestamp": [NOW]})
    training = store.get_historical_features(entity, ["driver_stats:trips"]).to_df()
    assert list(training["trips"]) == [1]


def test_online_breaks_event_time_ties_by_created_time_as_training_sets_do(
    store: FeatureStoreClient, repo: Repo
) -> None:
    store.apply(repo.objects)
    at = NOW - HOUR

    def push(ids: list[int], created: list[datetime], trips: list[int]) -> None:
        rows = {"driver_id": ids, "event_timestamp": [at] * len(ids), "created": created}
        rows |= {"conv_rate": [0.5] * len(ids), "city": ["Oslo"] * len(ids), "trips": trips}
        store.push("driver_stats", pd.DataFrame(rows), "online_and_offline")

    push([6], [NOW], [61])
    push([6], [NOW - HOUR], [60])  # a later push, created earlier: loses
    push([7, 7], [NOW, NOW - HOUR], [71, 70])  # one push: the later created wins
    push([8], [NOW - HOUR], [80])
    no_created = {"driver_id": [8], "event_timestamp": [at], **_OTHERS, "trips": [81]}
    store.push("driver_stats", pd.DataFrame(no_created), "online_and_offline")  # loses
    online = _lookup(store, [6, 7, 8], ["driver_stats:trips"]).to_dict()["trips"]
    entity = pd.DataFrame({"driver_id": [6, 7, 8], "event_timestamp": [NOW] * 3})
    training = store.get_historical_features(entity, ["driver_stats:trips"]).to_df()
    assert online == list(training["trips"]) == [61, 71, 80]
    store.materialize(NOW - 100 * HOUR, NOW + HOUR)  # the source's row of driver 1 stays
    assert _lookup(store, [1], ["driver_stats:trips"]).to_dict()["trips"] == [35]


def test_keys_are_found_however_the_source_or_the_caller_typed_them(
    store: FeatureStoreClient, tmp_path
) -> None:
    """Keys are made their entity's declared type on write and on lookup: online finds the rows
    a training set finds."""
    at = NOW - HOUR
    day = datetime(2024, 5, 1, tzinfo=UTC)
    source = pa.table(
        {
            "f64": [1.0],
            "text": [7],  # a STRING key held as an integer
            "whole": [3.0],  # an INT64 key held as a float
            "day": pa.array([day.replace(tzinfo=None)], pa.timestamp("us")),  # no offset
            "ts": pa.array([at], pa.timestamp("us", tz="UTC")),
            "x": [10],
        }
    )
    pq.write_table(source, tmp_path / "keys.parquet")
    kinds = {"f64": Float64, "text": String, "whole": Int64, "day": UnixTimestamp, "f32": Float32}
    entities = {k: Entity(name=k, join_keys=[Field(k, t)]) for k, t in kinds.items()}
    views = [
        FeatureView(
            name=f"by_{k}",
            entities=[entities[k]],
            schema=[Field("x", Int64)],
            source=FileSource(path=str(tmp_path / "keys.parquet"), timestamp_field="ts"),
        )
        for k in kinds
    ]
    store.apply([*entities.values(), *views])
    store.materialize(NOW - 10 * HOUR, NOW, [f"by_{k}" for k in kinds if k != "f32"])
    store.push("by_f32", pd.DataFrame({"f32": pa.array([0.1], pa.float32()), "ts": [at], "x": [1]}))
    lookups: dict[str, list[Any]] = {
        "f64": [1, 1.0],
        "text": ["7", 7],
        "whole": [3, 3.0],
        "day": [day],
        "f32": [0.1],
    }
    for key, values in lookups.items():
        found = store.get_online_features([f"by_{key}:x"], [{key: v} for v in values])
        assert found.statuses()["x"] == ["PRESENT"] * len(values), key
    for key, value in [("whole", 3.5), ("day", int(day.timestamp())), ("f64", float("nan"))]:
        with pytest.raises(InvalidArgument) as err:
            store.get_online_features([f"by_{key}:x"], [{key: value}])
        assert err.value.field == "entities[0].values" and repr(value) in str(err.value)
    for key, value in [("whole", 3.5), ("day", int(day.timestamp()))]:
        with pytest.raises(InvalidArgument) as err:
            store.push(f"by_{key}", pd.DataFrame({key: [value], "ts": [at], "x": [1]}))
        assert err.value.field == key


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("1", id="digits"),  # stored as driver 1
        pytest.param(True, id="bool"),  # stored as driver 1, over its row
        pytest.param(NOW, id="timestamp"),  # stored as its µs since 1970
    ],
)
def test_a_push_refuses_the_keys_lookups_refuse(
    store: FeatureStoreClient, repo: Repo, key: Any
) -> None:
    """Pushed keys went through Arrow's cast to the key's type, which takes what lookups refuse:
    a push of driver True replaced driver 1's row online and offline."""
    store.apply(repo.objects)
    store.materialize(NOW - 10 * HOUR, NOW)
    rows = pd.DataFrame({"driver_id": [key], "event_timestamp": [NOW], **_OTHERS, "trips": [5]})
    with pytest.raises(InvalidArgument) as err:
        store.push("driver_stats", rows, "online_and_offline")
    assert err.value.field == "driver_id" and "INT64" in str(err.value)
    assert _lookup(store, [1], ["driver_stats:trips"]).to_dict()["trips"] == [35]
    entity = pd.DataFrame({"driver_id": [1], "event_timestamp": [NOW]})
    training = store.get_historical_features(entity, ["driver_stats:trips"]).to_df()
    assert training["trips"].tolist() == [35]


def test_a_null_key_is_no_entitys(store: FeatureStoreClient, repo: Repo, tmp_path) -> None:
    """A row without its key finds nothing, as in a training set's join: not the entity whose
    key reads 'None', and not an error about a value the caller never sent."""
    store.apply(repo.objects)
    store.materialize(NOW - 10 * HOUR, NOW)
    found = _lookup(store, [None, 1], ["driver_stats:trips"])
    assert found.to_dict() == {"driver_id": [None, 1], "trips": [None, 35]}
    assert found.statuses() == {"trips": ["NOT_FOUND", "PRESENT"]}
    user = Entity(name="user", join_keys=[Field("name", String)])
    scores = FeatureView(
        name="scores",
        entities=[user],
        schema=[Field("score", Int64)],
        source=FileSource(path=str(tmp_path / "none.parquet"), timestamp_field="ts"),
    )
    store.apply([user, scores])
    store.push("scores", pd.DataFrame({"name": ["None", "al"], "ts": [NOW] * 2, "score": [6, 1]}))
    found = store.get_online_features(["scores:score"], [{"name": None}, {"name": "al"}])
    assert found.to_dict() == {"name": [None, "al"], "score": [None, 1]}
    assert found.statuses() == {"score": ["NOT_FOUND", "PRESENT"]}


@pytest.mark.parametrize("online_store_uri", ["sqlite"], indirect=True)
@pytest.mark.parametrize("key", [2**63, np.uint64(2**64 - 1), -(2**63) - 1])
def test_a_key_beyond_int64_is_refused_naming_the_column_and_row(
    store: FeatureStoreClient, repo: Repo, key: Any
) -> None:
    """An entity key beyond int64 (a hashed id as uint64, say) failed in the SDK with
    protobuf's bare ValueError ('Value out of range: 9223372036854775808'), naming neither
    the column nor the row."""
    store.apply(repo.objects)
    with pytest.raises(InvalidArgument) as err:
        store.get_online_features(["driver_stats:trips"], [{"driver_id": 1}, {"driver_id": key}])
    assert err.value.field == "driver_id"
    assert "entity row 1: 'driver_id'" in str(err.value) and "64-bit" in str(err.value)


def test_a_frame_larger_than_a_message_is_pushed_whole(repo: Repo, tmp_path) -> None:
    """A push was one message: a frame over the server's limit failed RESOURCE_EXHAUSTED with
    gRPC's 'larger than max' and nothing pushed. It goes in several pushes now."""
    settings = Settings(home=tmp_path / "home", port=0, grace_period=0, max_message_mb=4)
    rows = 3000
    frame = pd.DataFrame(
        {
            "driver_id": range(rows),
            "event_timestamp": [NOW] * rows,
            "conv_rate": [0.5] * rows,
            "trips": range(rows),
            "city": [f"{i:04d}" * 1000 for i in range(rows)],  # 4 KB each: 12 MB in all
        }
    )
    with (
        running_server(settings, ("features",)) as server,
        FeatureStoreClient(server.address) as store,
    ):
        store.apply(repo.objects)
        assert store.push("driver_stats", frame, to="online_and_offline") == rows
        found = store.get_online_features(
            ["driver_stats:city"], [{"driver_id": i} for i in (0, rows - 1)]
        )
        assert found.to_dict()["city"] == ["0000" * 1000, f"{rows - 1:04d}" * 1000]
        training = store.get_historical_features(
            pd.DataFrame({"driver_id": [rows - 1], "event_timestamp": [NOW]}),
            ["driver_stats:city"],
        ).to_df()
        assert training["city"].tolist() == [f"{rows - 1:04d}" * 1000]


def test_infinities_are_served_as_training_sets_hold_them(
    store: FeatureStoreClient, repo: Repo
) -> None:
    store.apply(repo.objects)
    rates = [math.inf, -math.inf, 0.5]
    rows = {"driver_id": [5, 6, 7], "event_timestamp": [NOW - HOUR] * 3, "conv_rate": rates}
    rows |= {"trips": [5, 6, 7], "city": ["Oslo"] * 3}
    store.push("driver_stats", pd.DataFrame(rows), to="online_and_offline")
    response = _lookup(store, [5, 6, 7], ["driver_stats:conv_rate"])
    assert response.to_dict()["conv_rate"] == rates
    assert response.statuses()["conv_rate"] == ["PRESENT"] * 3
    entity = pd.DataFrame({"driver_id": [5, 6, 7], "event_timestamp": [NOW] * 3})
    training = store.get_historical_features(entity, ["driver_stats:conv_rate"]).to_df()
    assert list(training["conv_rate"]) == rates


def test_push_rejects_columns_the_view_lacks(store: FeatureStoreClient, repo: Repo) -> None:
    store.apply(repo.objects)
    bad = pd.DataFrame({"driver_id": [1], "event_timestamp": [NOW], "speed": [3.0]})
    with pytest.raises(InvalidArgument) as err:
        store.push("driver_stats", bad)
    assert err.value.field == "speed"
    with pytest.raises(InvalidArgument) as err:
        store.push("driver_stats", bad.drop(columns=["event_timestamp", "speed"]))
    assert err.value.field == "event_timestamp"
    with pytest.raises(NotFound):
        store.push("nope", bad)


def test_a_push_without_features_is_refused(store: FeatureStoreClient, repo: Repo) -> None:
    """It stored nothing but a newer event time: driver 2's day-old values were served as
    fresh (PRESENT, not OUTSIDE_MAX_AGE)."""
    store.apply(repo.objects)
    store.materialize(NOW - 100 * HOUR, NOW + HOUR)
    rows = pd.DataFrame({"driver_id": [2], "event_timestamp": [NOW]})
    with pytest.raises(InvalidArgument) as err:
        store.push("driver_stats", rows)
    assert err.value.field == "conv_rate" and "'trips'" in str(err.value)
    assert _lookup(store, [2]).statuses()["trips"] == ["OUTSIDE_MAX_AGE"]


def test_a_push_to_the_offline_store_must_send_every_feature(
    store: FeatureStoreClient, repo: Repo
) -> None:
    """As Feast's write_to_offline_store: a training set takes a row whole, so the features not
    sent read as null from the pushed row on, while online keeps their values."""
    store.apply(repo.objects)
    store.materialize(NOW - 100 * HOUR, NOW + HOUR)
    rows = pd.DataFrame({"driver_id": [1], "event_timestamp": [NOW], "trips": [77]})
    for to in ("offline", "online_and_offline"):
        with pytest.raises(InvalidArgument) as err:
            store.push("driver_stats", rows, to=to)
        assert err.value.field == "conv_rate"
        assert "'conv_rate', 'city'" in str(err.value) and "online only" in str(err.value)
    assert _lookup(store, [1], ["driver_stats:trips"]).to_dict()["trips"] == [35]
    entity = pd.DataFrame({"driver_id": [1], "event_timestamp": [NOW + HOUR]})
    training = store.get_historical_features(entity, ["driver_stats:conv_rate"]).to_df()
    assert list(training["conv_rate"]) == [0.35]


def test_offline_only_views_cannot_be_materialized(store: FeatureStoreClient, repo: Repo) -> None:
    store.apply([repo.driver, replace(repo.stats, online=False)])
    with pytest.raises(FailedPrecondition) as err:
        store.materialize(NOW - HOUR, NOW, ["driver_stats"])
    assert "online=True" in str(err.value)
    assert store.materialize(NOW - HOUR, NOW) == []  # all online views: none


def test_a_materialization_refused_for_one_view_loads_none(
    store: FeatureStoreClient, repo: Repo
) -> None:
    """Views were loaded and recorded one by one until one was refused: the refusal was the
    answer, and the views before it were loaded without a word."""
    store.apply([*repo.objects, replace(repo.stats, name="offline_stats", online=False)])
    refused: list[tuple[list[str], type[Exception]]] = [
        (["driver_stats", "nope"], NotFound),
        (["driver_stats", "offline_stats"], FailedPrecondition),
    ]
    for views, error in refused:
        with pytest.raises(error):
            store.materialize(NOW - 100 * HOUR, NOW, views)
    assert store.list_materializations("driver_stats") == []
    assert _lookup(store, [1]).statuses()["trips"] == ["NOT_FOUND"]


def test_offline_only_views_are_neither_pushed_to_nor_read_online(
    store: FeatureStoreClient, repo: Repo
) -> None:
    store.apply([repo.driver, replace(repo.stats, online=False)])
    rows = pd.DataFrame({"driver_id": [1], "event_timestamp": [NOW], **_OTHERS, "trips": [5]})
    for to in ("online", "online_and_offline"):
        with pytest.raises(FailedPrecondition) as err:
            store.push("driver_stats", rows, to=to)
        assert err.value.resource_name == "driver_stats" and "online=True" in str(err.value)
    assert store.push("driver_stats", rows, to="offline") == 1
    with pytest.raises(FailedPrecondition) as err:
        _lookup(store, [1])
    assert err.value.resource_name == "driver_stats" and "online=True" in str(err.value)


def test_a_feature_added_after_rows_were_stored_is_not_found_for_them(
    store: FeatureStoreClient, repo: Repo
) -> None:
    store.apply(repo.objects)
    store.materialize(NOW - 100 * HOUR, NOW + HOUR)
    grown = replace(repo.stats, schema=(*repo.stats.schema, Field("rating", Float64)))
    store.apply([repo.driver, grown, repo.service])
    pushed = {"driver_id": [9], "event_timestamp": [NOW], "rating": [4.5]}
    store.push("driver_stats", pd.DataFrame(pushed))
    response = _lookup(store, [1, 9, 3], ["driver_stats:trips", "driver_stats:rating"])
    assert response.to_dict() == {
        "driver_id": [1, 9, 3],
        "trips": [35, None, None],
        "rating": [None, 4.5, None],
    }
    assert response.statuses() == {
        "trips": ["PRESENT", "NOT_FOUND", "NOT_FOUND"],  # driver 9's push sent no trips
        "rating": ["NOT_FOUND", "PRESENT", "NOT_FOUND"],
    }
    assert response.event_timestamps()["rating"] == [None, NOW, None]


def test_push_names_a_column_sent_twice(store: FeatureStoreClient, repo: Repo) -> None:
    store.apply(repo.objects)
    at = pa.array([NOW], pa.timestamp("us", tz="UTC"))
    table = pa.Table.from_arrays(
        [pa.array([1]), at, pa.array([1]), pa.array([2])],
        names=["driver_id", "event_timestamp", "trips", "trips"],
    )
    request = pb.PushRequest(
        feature_view="driver_stats", arrow_rows=_arrow_bytes(table), to_online=True
    )
    with pytest.raises(InvalidArgument) as err:
        store._t.call(store._stub.Push, request)
    assert err.value.field == "trips" and "'trips'" in str(err.value)


def test_a_schema_may_list_the_timestamp_field(store: FeatureStoreClient, repo: Repo) -> None:
    """As Feast lets it: the feature is the event time itself, online and offline."""
    at = NOW - HOUR
    listed = replace(
        repo.stats, schema=(*repo.stats.schema, Field("event_timestamp", UnixTimestamp))
    )
    store.apply([repo.driver, listed])
    rows = {"driver_id": [4], "event_timestamp": [at], **_OTHERS, "trips": [4]}
    store.push("driver_stats", pd.DataFrame(rows), to="online_and_offline")
    online = _lookup(store, [4], ["driver_stats:trips", "driver_stats:event_timestamp"])
    assert online.to_dict() == {"driver_id": [4], "trips": [4], "event_timestamp": [at]}
    entity = pd.DataFrame({"driver_id": [4], "when": [NOW]})
    training = store.get_historical_features(
        entity, ["driver_stats:event_timestamp"], event_timestamp_column="when"
    ).to_df()
    assert list(training["event_timestamp"]) == [at]
    typed_otherwise = replace(
        repo.stats, schema=(*repo.stats.schema, Field("event_timestamp", Int64))
    )
    with pytest.raises(InvalidArgument) as err:
        store.apply([repo.driver, typed_otherwise])
    assert "UNIX_TIMESTAMP" in str(err.value) and str(err.value.field).endswith("schema[3].dtype")


def test_deleting_a_view_clears_its_online_rows(store: FeatureStoreClient, repo: Repo) -> None:
    store.apply(repo.objects)
    store.materialize(NOW - 100 * HOUR, NOW + HOUR)
    store.apply([repo.driver], partial=False)
    store.apply(repo.objects)
    assert _lookup(store, [1]).statuses()["trips"] == ["NOT_FOUND"]


def test_lookups_name_what_is_wrong(store: FeatureStoreClient, repo: Repo) -> None:
    store.apply(repo.objects)
    with pytest.raises(InvalidArgument) as err:
        _lookup(store, [1], ["driver_stats:speed"])
    assert err.value.field == "features" and "'speed'" in str(err.value)
    with pytest.raises(NotFound) as missing:
        _lookup(store, [1], ["trucks:speed"])
    assert missing.value.resource_name == "trucks"
    with pytest.raises(InvalidArgument) as err:
        store.get_online_features(["driver_stats:trips"], [{"driver_id": "one"}])
    assert err.value.field == "entities[0].values" and "INT64" in str(err.value)
    with pytest.raises(InvalidArgument) as err:
        store.get_online_features(["driver_stats:trips"], [])
    assert err.value.field == "entities"
    with pytest.raises(InvalidArgument) as err:
        store.get_online_features(["driver_stats:trips"], [{"customer_id": 1}])
    assert err.value.field == "entities" and "'driver_id'" in str(err.value)
    with pytest.raises(InvalidArgument) as err:
        store.get_online_features(
            ["driver_stats:trips"], [{"driver_id": i} for i in range(100_000)]
        )
    assert err.value.field == "entities" and "10000" in str(err.value)
    with pytest.raises(InvalidArgument) as err:
        store.materialize(NOW, NOW - HOUR)
    assert err.value.field == "start_time"


def test_every_feature_type_comes_back_as_it_went_in(
    store: FeatureStoreClient, repo: Repo, tmp_path
) -> None:
    """Materialized from Parquet, read back both ways the contract offers: typed arrays (what
    the SDK asks for) and a Value per row (what other clients get by default)."""
    moment = NOW - 2 * HOUR
    data = pd.DataFrame(
        {
            "driver_id": [1, 2],
            "event_timestamp": [NOW - HOUR, NOW - HOUR],
            "ratio": pd.array([0.25, None], dtype="Float32"),
            "laps": pd.array([7, None], dtype="Int32"),
            "active": pd.array([True, None], dtype="boolean"),
            "badge": [b"\x00\xff", None],
            "last_seen": [moment, None],
            "note": ["late", None],
        }
    )
    path = tmp_path / "typed.parquet"
    data.to_parquet(path)
    typed = FeatureView(
        name="typed",
        entities=[repo.driver],
        ttl=timedelta(days=1),
        schema=[
            Field(name="ratio", dtype=Float32),
            Field(name="laps", dtype=Int32),
            Field(name="active", dtype=Bool),
            Field(name="badge", dtype=Bytes),
            Field(name="last_seen", dtype=UnixTimestamp),
            Field(name="note", dtype=String),
        ],
        source=FileSource(path=str(path), timestamp_field="event_timestamp"),
    )
    store.apply([repo.driver, typed])
    store.materialize(NOW - 10 * HOUR, NOW)
    refs = [f"typed:{f.name}" for f in typed.schema]
    expected = {
        "driver_id": [1, 2, 3],
        "ratio": [0.25, None, None],
        "laps": [7, None, None],
        "active": [True, None, None],
        "badge": [b"\x00\xff", None, None],
        "last_seen": [moment, None, None],
        "note": ["late", None, None],
    }
    response = store.get_online_features(refs, [{"driver_id": i} for i in (1, 2, 3)])
    assert response.to_dict() == expected
    assert response.statuses()["laps"] == ["PRESENT", "PRESENT", "NOT_FOUND"]

    for typed_arrays in (True, False):
        request = pb.GetOnlineFeaturesRequest(features=refs, typed_arrays=typed_arrays)
        append_python_values(request.entities.add(name="driver_id").values, [1, 2, 3])
        reply = store._stub.GetOnlineFeatures(request)
        key, *features = reply.columns
        assert len(key.values) == 3 and not key.HasField("array")  # keys come back as sent
        assert all(c.HasField("array") == typed_arrays for c in features)
        assert all(len(c.values) == (0 if typed_arrays else 3) for c in features)
        assert OnlineResponse(reply).to_dict() == expected


def test_a_feature_added_after_offline_pushes_is_null_in_their_rows(
    store: FeatureStoreClient, repo: Repo
) -> None:
    """The push log's first file predates the new feature: it used to give the whole log its
    schema, and every read of the view failed on the missing column."""
    slim = replace(repo.stats, schema=tuple(f for f in repo.stats.schema if f.name != "city"))
    store.apply([repo.driver, slim])
    old = pd.DataFrame(
        {"driver_id": [4], "event_timestamp": [NOW - HOUR], "conv_rate": [0.4], "trips": [44]}
    )
    store.push("driver_stats", old, to="offline")
    store.apply([repo.stats])  # city is back, and in the source
    features = ["driver_stats:trips", "driver_stats:city"]

    def training(ids: list[int]) -> dict[str, list]:
        entity = pd.DataFrame({"driver_id": ids, "event_timestamp": [NOW] * len(ids)})
        frame = store.get_historical_features(entity, features).to_df()
        return frame[["trips", "city"]].astype(object).where(frame.notna(), None).to_dict("list")

    assert training([1, 4]) == {"trips": [35, 44], "city": ["Bergen", None]}
    assert store.materialize(NOW - 10 * HOUR, NOW)[0].rows == 2
    # Files pushed since hold the feature: old and new files read together.
    store.push("driver_stats", old.assign(driver_id=[5], trips=[55], city=["Lima"]), to="offline")
    assert training([1, 4, 5]) == {"trips": [35, 44, 55], "city": ["Bergen", None, "Lima"]}


def test_a_feature_named_like_the_engines_time_column_keeps_its_values(
    store: FeatureStoreClient, repo: Repo
) -> None:
    """Materialization's event time column was `event_time_ms`: a feature of that name was
    stored as the event time."""
    rows = repo.rows.assign(event_time_ms=repo.rows["trips"] * 1000)
    rows.to_parquet(repo.path)
    view = replace(repo.stats, schema=(*repo.stats.schema, Field("event_time_ms", Int64)))
    store.apply([repo.driver, view])
    store.materialize(NOW - 10 * HOUR, NOW)
    found = _lookup(store, [1], ["driver_stats:event_time_ms", "driver_stats:trips"])
    assert found.to_dict()["event_time_ms"] == [35_000]
    assert found.event_timestamps()["trips"] == [NOW - HOUR]


def test_a_view_created_again_starts_without_the_old_ones_rows(
    store: FeatureStoreClient, repo: Repo
) -> None:
    """Deleting a view deleted its online rows only: its pushed offline rows and its
    materialization windows came back with a new view of the same name."""
    store.apply(repo.objects)
    pushed = pd.DataFrame(
        {"driver_id": [4], "event_timestamp": [NOW - HOUR], **_OTHERS, "trips": [44]}
    )
    store.push("driver_stats", pushed, to="online_and_offline")
    store.materialize_incremental(NOW)
    store.apply([repo.driver], partial=False)
    store.apply(repo.objects)
    entity = pd.DataFrame({"driver_id": [4, 1], "event_timestamp": [NOW, NOW]})
    training = store.get_historical_features(entity, ["driver_stats:trips"]).to_df()
    assert list(training["trips"].replace({float("nan"): None})) == [None, 35]
    assert store.list_materializations("driver_stats") == []
    # Incremental runs start afresh (one TTL back), not from the old view's last window.
    again = store.materialize_incremental(NOW)
    assert again[0].start_time == NOW - timedelta(days=1)
    assert _lookup(store, [4, 1]).to_dict()["trips"] == [None, 35]


def test_a_window_includes_its_end_and_the_next_incremental_run_starts_after_it(
    store: FeatureStoreClient, repo: Repo, tmp_path
) -> None:
    """As Feast's materialize(start_date, end_date): both ends included, to the ms (a row later
    in the end's ms too); an incremental run then takes what came after, nothing twice."""
    start, end = NOW - 2 * HOUR, NOW - HOUR
    at = {
        10: start,
        11: end,
        12: end + timedelta(microseconds=500),
        13: end + timedelta(milliseconds=1),
    }
    path = tmp_path / "boundary.parquet"
    pq.write_table(
        pa.table(
            {
                "driver_id": list(at),
                "ts": pa.array(list(at.values()), pa.timestamp("us", tz="UTC")),
                "trips": list(at),
            }
        ),
        path,
    )
    view = FeatureView(
        name="boundary",
        entities=[repo.driver],
        schema=[Field("trips", Int64)],
        source=FileSource(path=str(path), timestamp_field="ts"),
    )
    store.apply([repo.driver, view])
    assert store.materialize(start, end, ["boundary"])[0].rows == 3
    found = store.get_online_features(["boundary:trips"], [{"driver_id": i} for i in at])
    assert found.to_dict()["trips"] == [10, 11, 12, None]
    (after,) = store.materialize_incremental(NOW, ["boundary"])
    assert (after.start_time, after.rows) == (end, 1)
    assert store.materialize_incremental(NOW, ["boundary"])[0].rows == 0
    found = store.get_online_features(["boundary:trips"], [{"driver_id": 13}])
    assert found.to_dict()["trips"] == [13]
    assert store.materialize(end, end, ["boundary"])[0].rows == 2  # one instant: its ms
    with pytest.raises(InvalidArgument) as err:
        store.materialize(end, start, ["boundary"])
    assert err.value.field == "start_time" and "included" in str(err.value)


def test_a_window_end_is_sent_to_its_exact_millisecond(
    store: FeatureStoreClient, repo: Repo, tmp_path
) -> None:
    """The client took ms through float maths: an end half a ms before 1970 went out as 1970's
    first ms (truncated toward zero), so materialize loaded a row after the end; a time far
    ahead with 999 µs was rounded up a ms."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    end = epoch - timedelta(microseconds=500)
    path = tmp_path / "epoch.parquet"
    at = pa.array([epoch - timedelta(milliseconds=1), epoch], pa.timestamp("us", tz="UTC"))
    pq.write_table(pa.table({"driver_id": [1, 2], "ts": at, "trips": [1, 2]}), path)
    view = FeatureView(
        name="epoch",
        entities=[repo.driver],
        schema=[Field("trips", Int64)],
        source=FileSource(path=str(path), timestamp_field="ts"),
    )
    store.apply([repo.driver, view])
    (run,) = store.materialize(epoch - HOUR, end, ["epoch"])
    assert run.rows == 1 and run.end_time == epoch - timedelta(milliseconds=1)
    far = datetime(3000, 6, 1, 12, 0, 0, 999, tzinfo=UTC)
    assert _ms(far) == _ms(far.replace(microsecond=0))


def _settings(tmp_path: Path, online_store_uri: str) -> Settings:
    """A feature store's settings; servers given the same `tmp_path` share its database."""
    features = FeaturesSettings(online_store_uri=online_store_uri)
    return Settings(home=tmp_path / "home", port=0, grace_period=0, features=features)


def _redis_down() -> str:
    """A Redis on a closed loopback port: one that cannot be reached."""
    return f"redis://127.0.0.1:{free_port()}/0"


@contextmanager
def _online_store_down(repo: Repo, tmp_path: Path) -> Iterator[FeatureStoreClient]:
    """A feature store holding `repo`'s definitions whose online store (a Redis on a closed
    loopback port) cannot be reached."""

    up = _settings(tmp_path, f"sqlite:///{tmp_path / 'online.db'}")
    with running_server(up, ("features",)) as server, FeatureStoreClient(server.address) as store:
        store.apply(repo.objects)
    down = _settings(tmp_path, _redis_down())
    with (
        running_server(down, ("features",)) as server,
        FeatureStoreClient(server.address) as store,
    ):
        yield store


def test_writes_to_a_redis_that_is_down_are_unavailable(repo: Repo, tmp_path: Path) -> None:
    """Push and materialize failed INTERNAL when the online store's Redis could not be reached:
    UNAVAILABLE says to retry."""
    with _online_store_down(repo, tmp_path) as store:
        rows = pd.DataFrame({"driver_id": [1], "event_timestamp": [NOW], "trips": [5]})
        for write in (
            lambda: store.push("driver_stats", rows),
            lambda: store.materialize(NOW - 100 * HOUR, NOW),
        ):
            with pytest.raises(Unavailable) as err:
                write()
            assert "Redis" in str(err.value)


def test_views_are_deleted_and_created_again_while_redis_is_down(
    repo: Repo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Deleting a view while Redis was down committed the delete and answered UNAVAILABLE, and
    creating one under a deleted name scanned all of Redis for rows the delete left, so failed
    too. A created view has a generation of its own, which no earlier rows are under: creating
    needs no online store, and a delete that cannot drop the rows succeeds and logs them."""
    with _online_store_down(repo, tmp_path) as store:
        with caplog.at_level(logging.WARNING, "modelyard.services.feature_store"):
            steps = store.apply([repo.driver], partial=False)
        assert ("delete", "feature_view", "driver_stats") in {
            (s.action, s.kind, s.name) for s in steps
        }
        (logged,) = [r.getMessage() for r in caplog.records if "driver_stats" in r.getMessage()]
        assert "could not be dropped" in logged and "UNLINK" in logged
        created = {(s.action, s.name) for s in store.apply(repo.objects)}
        assert ("create", "driver_stats") in created
        with pytest.raises(Unavailable):  # what the view holds online: Redis must answer
            _lookup(store, [1])


@pytest.mark.redis
def test_online_rows_a_delete_could_not_drop_are_dropped_once_redis_is_back(
    repo: Repo, tmp_path: Path, redis_url: str
) -> None:
    """A delete that could not reach Redis only logged the rows it left, which stayed for
    good. It keeps them as a cleanup to do, retried after later applies and at startup."""
    row = pd.DataFrame({"driver_id": [1], "event_timestamp": [NOW], "trips": [5]})
    online = open_online_store(redis_url)
    left = []

    def delete_while_redis_is_down(up: FeatureStoreClient, down: FeatureStoreClient) -> None:
        up.apply(repo.objects)
        up.push("driver_stats", row)
        generation = up.get_definition("feature_view", "driver_stats")[1]
        left.append(online_name("driver_stats", generation))
        down.apply([repo.driver], partial=False)
        assert online.read(left[-1], [entity_key([1])])[0] is not None

    try:
        with (
            running_server(_settings(tmp_path, redis_url), ("features",)) as one,
            running_server(_settings(tmp_path, _redis_down()), ("features",)) as two,
            FeatureStoreClient(one.address) as up,
            FeatureStoreClient(two.address) as down,
        ):
            delete_while_redis_is_down(up, down)
            up.apply(repo.objects)  # a later apply where Redis is up drops them
            assert online.read(left[0], [entity_key([1])])[0] is None
            delete_while_redis_is_down(up, down)
        with running_server(_settings(tmp_path, redis_url), ("features",)):  # at startup
            assert online.read(left[1], [entity_key([1])])[0] is None
    finally:
        online.close()


def test_lookups_in_a_redis_that_is_down_are_unavailable(repo: Repo, tmp_path: Path) -> None:
    """A lookup failed INTERNAL when the online store's Redis could not be reached, where
    writes answer UNAVAILABLE: a lookup says the same, and to retry."""
    with _online_store_down(repo, tmp_path) as store:
        with pytest.raises(Unavailable) as err:
            _lookup(store, [1])
        assert "Redis cannot be reached" in str(err.value) and "retry" in str(err.value)


def test_a_new_view_does_not_serve_online_rows_a_deleted_one_left(
    store: FeatureStoreClient, repo: Repo, online_store_uri: str
) -> None:
    """A view's online rows are dropped after its delete commits; some may stay (the store was
    unreachable) or come after (a push that read the view before the delete). A view created
    again under the name has a generation of its own and never reads them; it needs no scan of
    the online store to be created."""
    store.apply(repo.objects)
    deleted = online_name("driver_stats", store.get_definition("feature_view", "driver_stats")[1])
    store.apply([repo.driver], partial=False)
    store.apply(repo.objects)
    left = open_online_store(online_store_uri)
    try:  # as a delete that could not reach the online store, or a late write, leaves them
        for name in (deleted, "driver_stats"):  # the deleted generation; the layout before them
            left.write(name, [OnlineRow(entity_key([1]), {"trips": 99}, NOW_MS)])
        left.write("driver_statsx", [OnlineRow(entity_key([1]), {"trips": 7}, NOW_MS)])
        assert _lookup(store, [1]).statuses()["trips"] == ["NOT_FOUND"]
        store.push(
            "driver_stats", pd.DataFrame({"driver_id": [1], "event_timestamp": [NOW], "trips": [5]})
        )
        assert _lookup(store, [1]).to_dict()["trips"] == [5]
        # Deleting it drops its own generation's rows only, not those of a view whose name it
        # begins, nor another generation's.
        store.apply([repo.driver], partial=False)
        assert left.read("driver_statsx", [entity_key([1])])[0] is not None
        assert left.read(deleted, [entity_key([1])])[0] is not None
    finally:
        for name in ("driver_statsx", deleted, "driver_stats"):
            left.delete_view(name)
        left.close()


def test_a_write_to_a_view_another_replica_deleted_is_refused(
    repo: Repo, tmp_path: Path, online_store_uri: str
) -> None:
    """Definitions are cached (5 s by default), so a replica that had read a view went on
    accepting pushes to it after another replica deleted it, and wrote them where a view
    created again under its name read them. A push or materialization reads the view from the
    database: a deleted one is refused NOT_FOUND, and one created again is written to anew."""
    features = FeaturesSettings(online_store_uri=online_store_uri, definitions_cache_seconds=3600)
    settings = Settings(home=tmp_path / "home", port=0, grace_period=0, features=features)
    row = pd.DataFrame({"driver_id": [1], "event_timestamp": [NOW], "trips": [5]})
    with (
        running_server(settings, ("features",)) as one,
        running_server(settings, ("features",)) as two,
        FeatureStoreClient(one.address) as here,
        FeatureStoreClient(two.address) as there,
    ):
        here.apply(repo.objects)
        there.push("driver_stats", row)  # `there` has the view cached now
        assert _lookup(there, [1]).to_dict()["trips"] == [5]
        here.apply([repo.driver], partial=False)
        for write in (
            lambda: there.push("driver_stats", row),
            lambda: there.materialize(NOW - 100 * HOUR, NOW, ["driver_stats"]),
        ):
            with pytest.raises(NotFound) as err:
                write()
            assert err.value.resource_name == "driver_stats"
        here.apply(repo.objects)
        there.push("driver_stats", row.assign(trips=[6]))
        assert _lookup(here, [1]).to_dict()["trips"] == [6]


def test_an_offline_push_that_lands_after_its_view_was_created_again_is_not_read(
    store: FeatureStoreClient, repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pushed offline rows were kept by view name, and creating a view under a deleted one's
    name cleared that name's: a push that had read the deleted view and wrote its rows after
    the clear put them in the new view's training sets. They are kept under the generation the
    push read, which the new view does not read."""
    store.apply(repo.objects)
    reached, go = threading.Event(), threading.Event()
    write_table = pq.write_table

    def held(*args: Any, **kwargs: Any) -> None:  # the server writing the pushed rows' file
        if not reached.is_set():
            reached.set()
            assert go.wait(60)
        write_table(*args, **kwargs)

    monkeypatch.setattr(pq, "write_table", held)
    row = pd.DataFrame({"driver_id": [77], "event_timestamp": [NOW], "trips": [5], **_OTHERS})
    with ThreadPoolExecutor(1) as pool:
        pushed = pool.submit(store.push, "driver_stats", row, to="offline")
        assert reached.wait(60)
        store.apply([repo.driver], partial=False)
        store.apply(repo.objects)
        go.set()
        assert pushed.result() == 1  # it read the view before the delete
    entities = pd.DataFrame({"driver_id": [77], "event_timestamp": [NOW]})
    found = store.get_historical_features(entities, ["driver_stats:trips"]).to_df()
    assert found["trips"].isna().all()
    store.push("driver_stats", row.assign(trips=[6]), to="offline")  # the new view's own
    found = store.get_historical_features(entities, ["driver_stats:trips"]).to_df()
    assert found["trips"].tolist() == [6]


def test_a_window_ending_far_ahead_is_refused(store: FeatureStoreClient, repo: Repo) -> None:
    """A window to 9999-12-31 was recorded, and every incremental run after it recorded a
    window from 9999 back to now with no rows, answering OK."""
    store.apply(repo.objects)
    with pytest.raises(InvalidArgument) as err:
        store.materialize(NOW - HOUR, NOW + timedelta(days=3650))
    assert err.value.field == "end_time"
    with pytest.raises(InvalidArgument) as err:
        store.materialize_incremental(NOW + timedelta(days=2))
    assert err.value.field == "end_time"
    assert store.list_materializations("driver_stats") == []
    # Within a day ahead: allowed (clocks differ); an incremental run ending before it cannot
    # go on, and says so rather than record a window that runs backwards.
    ahead = store.materialize_incremental(NOW + 12 * HOUR)[0].end_time
    with pytest.raises(FailedPrecondition) as refused:
        store.materialize_incremental(NOW)
    assert refused.value.resource_name == "driver_stats"
    assert ahead.isoformat() in str(refused.value) and "start_time" in str(refused.value)
    assert store.materialize_incremental(ahead)[0].rows == 0  # the same end: nothing to do


def test_a_push_whose_offline_write_fails_says_where_its_rows_are(
    store: FeatureStoreClient, repo: Repo, feature_server
) -> None:
    """A push to both stores writes online first (a retry of it is idempotent there); when the
    offline write then failed, the error said only what the offline store refused, not that
    the rows were served online already nor how to finish the push."""
    store.apply(repo.objects)
    root = Path(feature_server.settings.artifact_root.removeprefix("file://"))
    generation = store.get_definition("feature_view", "driver_stats")[1]
    blocked = root / "features" / "push" / online_name("driver_stats", generation)
    blocked.parent.mkdir(parents=True)
    blocked.write_bytes(b"")  # a file where the view's pushed rows go: every write there fails
    row = pd.DataFrame({"driver_id": [1], "event_timestamp": [NOW], "trips": [5], **_OTHERS})
    with pytest.raises(FailedPrecondition) as err:
        store.push("driver_stats", row, to="online_and_offline")
    message = str(err.value)
    assert "written to the online store" in message and "not to the offline store" in message
    assert "to_offline" in message or "offline only" in message
    assert _lookup(store, [1]).to_dict()["trips"] == [5]  # online has them, as it says
    blocked.unlink()
    store.push("driver_stats", row, to="offline")  # what it says to do
    found = store.get_historical_features(
        pd.DataFrame({"driver_id": [1], "event_timestamp": [NOW]}), ["driver_stats:trips"]
    )
    assert found.to_df()["trips"].tolist() == [5]
