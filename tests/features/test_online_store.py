"""Online store suite, run on SQLite and on the real Redis server."""

from __future__ import annotations

import math
import socket
import sqlite3
import threading
import uuid
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pytest
import redis

from modelyard.errors import FailedPrecondition, InvalidArgument, Unavailable
from modelyard.services.feature_store.online import open_online_store
from modelyard.services.feature_store.online.base import (
    OnlineRow,
    OnlineStore,
    entity_key,
    row_order,
    row_orders,
)
from modelyard.services.feature_store.online.redis import RedisOnlineStore


@pytest.fixture
def online(online_store_uri: str) -> Iterator[OnlineStore]:
    store = open_online_store(online_store_uri)
    yield store
    store.close()


def test_entity_keys_are_stable_and_typed() -> None:
    assert entity_key([1, "a"]) == entity_key([1, "a"])
    assert entity_key([1]) != entity_key(["1"])
    assert entity_key([1, 2]) != entity_key([2, 1])


def test_read_returns_what_was_written_in_key_order(online: OnlineStore) -> None:
    rows = [OnlineRow(entity_key([i]), {"x": i * 1.5, "name": f"n{i}"}, 1000 + i) for i in range(5)]
    assert online.write("view", rows) == 5
    keys = [entity_key([i]) for i in (4, 0, 99, 2)]
    assert online.read("view", keys) == [
        ({"x": 6.0, "name": "n4"}, 1004),
        ({"x": 0.0, "name": "n0"}, 1000),
        None,
        ({"x": 3.0, "name": "n2"}, 1002),
    ]


def test_views_do_not_share_rows(online: OnlineStore) -> None:
    online.write("a", [OnlineRow(entity_key([1]), {"x": 1}, 10)])
    online.write("b", [OnlineRow(entity_key([1]), {"x": 2}, 10)])
    assert online.read("a", [entity_key([1])]) == [({"x": 1}, 10)]
    assert online.read("b", [entity_key([1])]) == [({"x": 2}, 10)]


def test_an_older_write_never_replaces_a_newer_value(online: OnlineStore) -> None:
    key = entity_key([7])
    online.write("view", [OnlineRow(key, {"x": "new"}, 2000)])
    online.write("view", [OnlineRow(key, {"x": "old"}, 1000)])
    assert online.read("view", [key]) == [({"x": "new"}, 2000)]
    online.write("view", [OnlineRow(key, {"x": "newer"}, 3000)])
    assert online.read("view", [key]) == [({"x": "newer"}, 3000)]


def test_a_tie_in_event_time_goes_to_the_later_microsecond_then_created_time(
    online: OnlineStore,
) -> None:
    """The order training sets take rows in: event time to the µs, then created time (a row
    with one beats a row without), and a row equal in both replaces the stored one."""
    key = entity_key([1])

    def write(value: str, event_us: int, created_us: int | None) -> None:
        online.write("view", [OnlineRow(key, {"x": value}, *row_order(event_us, created_us))])

    write("a", 1_000_500, None)
    write("earlier µs", 1_000_400, 5)
    assert online.read("view", [key]) == [({"x": "a"}, 1000)]
    write("created", 1_000_500, -(10**15))  # before 1970, still beats no created time
    write("no created", 1_000_500, None)
    assert online.read("view", [key]) == [({"x": "created"}, 1000)]
    write("created later", 1_000_500, 7)
    write("created earlier", 1_000_500, 6)
    write("the same, later", 1_000_500, 7)
    assert online.read("view", [key]) == [({"x": "the same, later"}, 1000)]


def test_a_partial_write_keeps_the_features_it_does_not_send(online: OnlineStore) -> None:
    """As Feast's stores: a push of some features updates those; the row takes the write's event
    time (one per row), an older partial write drops whole, and a sent null is stored."""
    key, fresh = entity_key([1]), entity_key([2])
    online.write("view", [OnlineRow(key, {"x": 1.5, "y": "a", "z": math.nan}, 1000)])
    online.write(
        "view",
        [OnlineRow(key, {"x": 2.5}, 2000, "5"), OnlineRow(fresh, {"y": "b"}, 7)],
        partial=True,
    )
    ((values, at), only_sent) = online.read("view", [key, fresh])  # type: ignore[misc]
    assert math.isnan(values.pop("z"))
    assert (values, at, only_sent) == ({"x": 2.5, "y": "a"}, 2000, ({"y": "b"}, 7))
    online.write("view", [OnlineRow(key, {"y": "older"}, 2000, "4")], partial=True)
    online.write("view", [OnlineRow(key, {"y": None, "z": 0.0}, 2000, "5")], partial=True)
    assert online.read("view", [key]) == [({"x": 2.5, "y": None, "z": 0.0}, 2000)]


def test_concurrent_partial_writers_each_keep_their_feature(online: OnlineStore) -> None:
    """Writers of different features at one time (a tie goes to the write) each merge over the
    others' latest values, none over values another replaced meanwhile."""
    key = entity_key([1])

    def write(feature: str) -> None:
        for i in range(100):
            online.write("view", [OnlineRow(key, {feature: i}, 5)], partial=True)

    threads = [threading.Thread(target=write, args=(f"f{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert online.read("view", [key]) == [({f"f{i}": 99 for i in range(4)}, 5)]


def test_event_times_are_floored_to_the_millisecond() -> None:
    assert row_order(1_999, None)[0] == 1
    assert row_order(-1_500, None)[0] == -2  # the earlier ms, as DuckDB's epoch_ms
    assert row_order(-1_500, None) < row_order(-1_400, None) < row_order(-1_000, None)


def test_row_orders_of_a_column_are_each_rows_row_order() -> None:
    """Materialize orders a view's rows a column at a time: as row_order orders each, for times
    before 1970, on the ms, without a created time, and created before year 1 (no fixed width)."""
    events = [1_999, -1_500, -1_000, 0, 1_700_000_000_123_456, -62_135_596_800_000_000]
    for created in (
        [None] * len(events),
        [7, None, -(10**15), 0, 1_700_000_000_999_999, 253_402_300_799_999_999],
        [-62_135_596_800_000_001, None, 1, 2, 3, 4],
    ):
        times, tiebreaks = row_orders(pa.array(events, pa.int64()), pa.array(created, pa.int64()))
        expected = [row_order(e, c) for e, c in zip(events, created, strict=True)]
        assert list(zip(times, tiebreaks, strict=True)) == expected
    assert row_orders(pa.array(events, pa.int64()), None)[1] == [
        row_order(e, None)[1] for e in events
    ]


def test_many_rows_of_one_key_in_a_write_keep_the_latest(online: OnlineStore) -> None:
    """A write goes to the store in parts (Redis: many rows a script call); the order among a
    key's rows holds across them, and the rows of other keys are each kept."""
    key = entity_key([1])
    rows = [OnlineRow(key, {"x": i}, 1000 + (i % 7), f"{i:03d}") for i in range(1200)]
    rows += [OnlineRow(entity_key([i]), {"x": -i}, 5) for i in range(2, 1300)]
    assert online.write("view", rows) == len(rows)
    best = max(rows[:1200], key=lambda r: r.order)
    assert online.read("view", [key, entity_key([2]), entity_key([1299])]) == [
        (best.values, best.event_time_ms),
        ({"x": -2}, 5),
        ({"x": -1299}, 5),
    ]


def test_rows_stored_before_tiebreaks_read_and_give_way(online_store_uri: str) -> None:
    """Rows written by the release before tiebreaks (SQLite: no tiebreak column; Redis:
    "<ms>|<json>") still read, and a row of the same event time replaces them."""
    key = entity_key([1])
    if online_store_uri.startswith("sqlite"):
        with sqlite3.connect(online_store_uri.removeprefix("sqlite:///")) as conn:
            conn.execute(
                "CREATE TABLE online_features (view TEXT NOT NULL, entity_key TEXT NOT NULL, "
                "feature_values TEXT NOT NULL, event_time INTEGER NOT NULL, "
                "PRIMARY KEY (view, entity_key)) WITHOUT ROWID"
            )
            conn.execute(
                "INSERT INTO online_features VALUES ('view', ?, '{\"x\": \"old\"}', 1000)", (key,)
            )
        conn.close()
    online = open_online_store(online_store_uri)
    try:
        if isinstance(online, RedisOnlineStore):
            online._redis.set(online._key("view", key), b'1000|{"x": "old"}')
        assert online.read("view", [key]) == [({"x": "old"}, 1000)]
        online.write("view", [OnlineRow(key, {"x": "older"}, *row_order(999_999, 1))])
        assert online.read("view", [key]) == [({"x": "old"}, 1000)]
        online.write("view", [OnlineRow(key, {"x": "new"}, *row_order(1_000_000, None))])
        assert online.read("view", [key]) == [({"x": "new"}, 1000)]
        if isinstance(online, RedisOnlineStore):
            online._redis.set(online._key("view", key), b'1000|{"x": "old"}')
            online.write("view", [OnlineRow(key, {"y": 1}, *row_order(1_000_000, None))], True)
            assert online.read("view", [key]) == [({"x": "old", "y": 1}, 1000)]
    finally:
        online.close()


def test_null_values_round_trip(online: OnlineStore) -> None:
    key = entity_key(["k"])
    online.write("view", [OnlineRow(key, {"x": None, "y": True}, 5)])
    assert online.read("view", [key]) == [({"x": None, "y": True}, 5)]


def test_nan_and_infinities_round_trip(online: OnlineStore) -> None:
    """JSON holds none of them; they come back as they went in, not as nulls."""
    key = entity_key(["k"])
    stored = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "none": None, "text": "inf"}
    online.write("view", [OnlineRow(key, {**stored, "np": np.float32("-inf")}, 5)])
    ((values, _),) = online.read("view", [key])  # type: ignore[misc]
    assert math.isnan(values.pop("nan"))
    assert values == {
        "inf": math.inf,
        "-inf": -math.inf,
        "none": None,
        "text": "inf",
        "np": -math.inf,
    }


def test_many_keys_in_one_read(online: OnlineStore) -> None:
    rows = [OnlineRow(entity_key([i]), {"x": i}, i) for i in range(2500)]
    online.write("view", rows)
    found = online.read("view", [entity_key([i]) for i in range(3000)])
    assert [f[0]["x"] if f else None for f in found] == [*range(2500), *[None] * 500]


def test_delete_view_removes_only_that_view(online: OnlineStore) -> None:
    online.write("gone", [OnlineRow(entity_key([i]), {"x": i}, 1) for i in range(1200)])
    online.write("kept", [OnlineRow(entity_key([1]), {"x": 1}, 1)])
    online.delete_view("gone")
    assert online.read("gone", [entity_key([i]) for i in range(1200)]) == [None] * 1200
    assert online.read("kept", [entity_key([1])]) == [({"x": 1}, 1)]


def test_concurrent_writers_keep_the_newest(online: OnlineStore) -> None:
    key = entity_key([1])

    def write(start: int) -> None:
        for t in range(start, 400, 4):
            online.write("view", [OnlineRow(key, {"t": t}, t)])

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert online.read("view", [key]) == [({"t": 399}, 399)]


def test_unknown_scheme_is_refused_with_the_setting_named() -> None:
    with pytest.raises(InvalidArgument) as err:
        open_online_store("memcached://127.0.0.1")
    assert err.value.field == "features.online_store_uri"


@pytest.mark.redis
def test_rows_of_the_older_hash_layout_are_replaced_on_write(
    redis_server: str, redis_url: str
) -> None:
    """Modelyard kept Redis rows as hashes before; materializing after an upgrade overwrites
    them instead of failing, and until then they read as not found."""
    online = open_online_store(redis_url)
    assert isinstance(online, RedisOnlineStore)
    key = entity_key([7])
    raw = redis.Redis.from_url(redis_server)
    try:
        raw.hset(online._key("view", key), mapping={"v": '{"x": 1.0}', "t": 5})
        assert online.read("view", [key]) == [None]
        assert online.write("view", [OnlineRow(key, {"x": 2.0}, 1)]) == 1
        assert online.read("view", [key]) == [({"x": 2.0}, 1)]
    finally:
        online.close()
        raw.close()


def test_a_prefix_with_glob_characters_deletes_only_its_own_keys(redis_url: str) -> None:
    """delete_view matched keys by `prefix:view:*` with the prefix as a glob: a deployment whose
    prefix is "team-*" deleted the view's rows of every other "team-..." deployment."""
    base = redis_url.rsplit("?prefix=", 1)[1]
    mine = RedisOnlineStore(f"{redis_url}-*")
    theirs = RedisOnlineStore(f"{redis_url}-b")
    try:
        row = OnlineRow(entity_key([1]), {"x": 1}, 10)
        mine.write("v", [row])
        theirs.write("v", [row])
        mine.delete_view("v")
        assert mine.read("v", [row.entity_key]) == [None]
        assert theirs.read("v", [row.entity_key]) == [({"x": 1}, 10)]
        assert theirs.prefix == f"{base}-b"
    finally:
        theirs.delete_view("v")
        mine.close()
        theirs.close()


def test_a_redis_that_never_answers_is_unavailable_not_a_hang(redis_server: str) -> None:
    """redis-py waits forever for an answer unless told: a Redis that accepts connections and
    never answers held each lookup until the caller's deadline. The store sets timeouts (the
    URI's own win), and their expiry is UNAVAILABLE."""
    default = RedisOnlineStore(redis_server)
    kwargs = default._redis.connection_pool.connection_kwargs
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (5.0, 5.0)
    default.close()
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts (backlog), never answers
        port = silent.getsockname()[1]
        store = RedisOnlineStore(f"redis://127.0.0.1:{port}/0?socket_timeout=0.2")
        try:
            with pytest.raises(Unavailable, match="cannot be reached"):
                store.read("v", [entity_key([1])])
        finally:
            store.close()


def test_credentials_redis_refuses_are_the_operators_to_fix(redis_server: str) -> None:
    """A wrong user or password was UNAVAILABLE "retry once it is back", which no retry cures: it
    is FAILED_PRECONDITION naming the setting."""
    host = redis_server.split("://", 1)[1]
    store = RedisOnlineStore(f"redis://nobody-{uuid.uuid4().hex[:6]}:wrong@{host}")
    try:
        with pytest.raises(FailedPrecondition) as err:
            store.read("v", [entity_key([1])])
        assert err.value.field == "features.online_store_uri"
    finally:
        store.close()
