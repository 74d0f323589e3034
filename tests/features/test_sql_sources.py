"""SQL sources (PostgreSQL, SQLite): what the database is asked, not only what comes back."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pandas as pd
import pytest
import sqlalchemy
from sqlalchemy import create_engine, event, text

from modelyard._gen.features.v1 import features_pb2 as pb
from modelyard._gen.features.v1.features_pb2_grpc import FeatureStoreServiceStub
from modelyard.convert.common import ms_to_timestamp
from modelyard.errors import FailedPrecondition, InvalidArgument
from modelyard.features import FeatureStoreClient, FileSource, SqlSource
from modelyard.services.common.server import ModelyardServer
from modelyard.services.feature_store.offline import sql_sources
from tests.features.repo import NOW, Repo, driver_rows

HOUR = timedelta(hours=1)


def _rows_with_old_ones() -> pd.DataFrame:
    """The repository's rows and two far older: driver 3's only row, and one of driver 1's."""
    old = pd.DataFrame(
        {
            "driver_id": [3, 1],
            "event_timestamp": [NOW - 400 * HOUR, NOW - 300 * HOUR],
            "created": [NOW - 400 * HOUR, NOW - 300 * HOUR],
            "conv_rate": [0.5, 0.05],
            "trips": [7, 1],
            "city": ["Rome", "Oslo"],
        }
    )
    return pd.concat([driver_rows(), old], ignore_index=True)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A SQLAlchemy URL of a database holding `_rows_with_old_ones` as table driver_window
    (times as ISO text on SQLite, which has no time type)."""
    rows = _rows_with_old_ones()
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'warehouse.db'}"
        for column in ("event_timestamp", "created"):
            rows[column] = rows[column].map(lambda t: t.isoformat())
    else:
        url = request.getfixturevalue("postgres_url")
        url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(url)
    rows.to_sql("driver_window", engine, index=False)
    engine.dispose()
    return url


class _Statements:
    """The statements (and parameters) every SQLAlchemy engine in this process sends that read
    table driver_window: the server runs in the test's process."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    def __call__(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if "driver_window" in statement:
            self.sent.append((statement, parameters))


@pytest.fixture
def statements() -> Iterator[_Statements]:
    seen = _Statements()
    event.listen(sqlalchemy.Engine, "before_cursor_execute", seen)
    yield seen
    event.remove(sqlalchemy.Engine, "before_cursor_execute", seen)


def _event_times(url: str, statement: str, parameters: Any) -> list[pd.Timestamp]:
    """The event times of the rows `statement` gives when run as it was sent."""
    engine = create_engine(url)
    try:
        conn = engine.raw_connection()
        try:
            cursor = conn.cursor()
            cursor.execute(statement, parameters)
            names = [d[0] for d in cursor.description]
            times = [row[names.index("event_timestamp")] for row in cursor.fetchall()]
        finally:
            conn.close()
    finally:
        engine.dispose()
    return sorted(pd.Timestamp(t).tz_convert("UTC") for t in times)


@pytest.mark.parametrize("online_store_uri", ["sqlite"], indirect=True)
@pytest.mark.parametrize("query", ["driver_window", "SELECT * FROM driver_window -- all\n;"])
def test_the_time_window_is_read_in_the_database(
    store: FeatureStoreClient, repo: Repo, warehouse: str, statements: _Statements, query: str
) -> None:
    """A SQL source was read whole (every row it ever held, sent to the server) for each
    materialization and training set, however narrow its window: the window's bounds are now a
    WHERE on the timestamp column, with bound parameters."""
    source = SqlSource(warehouse, query, created_timestamp_column="created")
    store.apply([repo.driver, replace(repo.stats, source=source)])

    store.materialize(NOW - 100 * HOUR, NOW)
    online = store.get_online_features(
        ["driver_stats:trips"], [{"driver_id": d} for d in (1, 2, 3)]
    ).to_dict()
    assert online["trips"] == [35, 90, None]  # driver 3's only row is 400 hours old
    (statement, parameters) = statements.sent[-1]
    read = _event_times(warehouse, statement, parameters)
    assert read and all(NOW - 100 * HOUR <= t <= NOW for t in read)
    assert len(read) == len(driver_rows())

    # Entity rows at NOW and NOW - 1 hour with a TTL of a day need rows from a day before the
    # earliest until the latest: driver 1's four of the last five hours.
    statements.sent.clear()
    entities = pd.DataFrame({"driver_id": [1, 3], "event_timestamp": [NOW, NOW - HOUR]})
    training = store.get_historical_features(entities, ["driver_stats:trips"]).to_df()
    assert [None if pd.isna(t) else int(t) for t in training["trips"]] == [35, None]
    (statement, parameters) = statements.sent[-1]
    read = _event_times(warehouse, statement, parameters)
    assert len(read) == 4 and all(NOW - 25 * HOUR <= t <= NOW for t in read)


@pytest.mark.parametrize("online_store_uri", ["sqlite"], indirect=True)
def test_a_text_time_that_is_no_time_is_still_reported(
    store: FeatureStoreClient, repo: Repo, tmp_path: Path
) -> None:
    """The window leaves a row whose time SQLite cannot read in the read, which fails naming it
    as before, rather than dropping it without a word."""
    db = tmp_path / "warehouse.db"
    with sqlite3.connect(db) as conn:
        rows = driver_rows()
        for column in ("event_timestamp", "created"):
            rows[column] = rows[column].map(lambda t: t.isoformat())
        rows.loc[0, "event_timestamp"] = "yesterday-ish"
        rows.to_sql("driver_window", conn, index=False)
    source = SqlSource(f"sqlite:///{db}", "driver_window", created_timestamp_column="created")
    store.apply([repo.driver, replace(repo.stats, source=source)])
    with pytest.raises(Exception, match="yesterday-ish"):
        store.materialize(NOW - 100 * HOUR, NOW)


@pytest.mark.parametrize("online_store_uri", ["sqlite"], indirect=True)
@pytest.mark.parametrize("scale", [1, 1000], ids=["seconds", "milliseconds"])
def test_epoch_numbers_as_times_are_refused_naming_the_fix(
    store: FeatureStoreClient, repo: Repo, tmp_path: Path, scale: int
) -> None:
    """A SQLite source holding its times as epoch numbers was read whole (the window's predicate
    reads only text) and then failed in DuckDB's words ('Unimplemented type for cast (BIGINT ->
    TIMESTAMP WITH TIME ZONE)'), naming neither the view's column nor a fix. It is refused
    naming the column and the query that reads it as times, which then works."""
    db = tmp_path / "warehouse.db"
    with sqlite3.connect(db) as conn:
        rows = driver_rows()
        for column in ("event_timestamp", "created"):
            rows[column] = [int(t.timestamp()) * scale for t in rows[column]]
        rows.to_sql("driver_epochs", conn, index=False)
    source = SqlSource(f"sqlite:///{db}", "driver_epochs", created_timestamp_column="created")
    store.apply([repo.driver, replace(repo.stats, source=source)])
    entities = pd.DataFrame({"driver_id": [1], "event_timestamp": [NOW]})
    for call in (
        lambda: store.materialize(NOW - 100 * HOUR, NOW),
        lambda: store.get_historical_features(entities, ["driver_stats:trips"]).to_df(),
    ):
        with pytest.raises(FailedPrecondition) as err:
            call()
        assert err.value.resource_name == "driver_stats"
        assert "'event_timestamp' holds numbers" in str(err.value)
        assert "datetime(event_timestamp, 'unixepoch')" in str(err.value)

    seconds = "" if scale == 1 else " / 1000"
    query = (
        f"SELECT driver_id, datetime(event_timestamp{seconds}, 'unixepoch') AS event_timestamp, "
        f"datetime(created{seconds}, 'unixepoch') AS created, conv_rate, trips, city "
        "FROM driver_epochs"
    )
    fixed = SqlSource(f"sqlite:///{db}", query, created_timestamp_column="created")
    store.apply([repo.driver, replace(repo.stats, source=fixed)])
    training = store.get_historical_features(entities, ["driver_stats:trips"]).to_df()
    assert training["trips"].tolist() == [35]


@pytest.mark.postgres
@pytest.mark.parametrize("online_store_uri", ["sqlite"], indirect=True)
def test_a_source_query_stops_when_its_call_ends(
    feature_server: ModelyardServer, store: FeatureStoreClient, repo: Repo, postgres_url: str
) -> None:
    """A client that gave up on a materialization left the source's query running in
    PostgreSQL (here waiting on a lock, as a slow query would run) for as long as it took: the
    backend's statement is now cancelled when the call ends."""
    url = postgres_url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(url)
    driver_rows().to_sql("driver_locked", engine, index=False)
    source = SqlSource(url, "driver_locked", created_timestamp_column="created")
    store.apply([repo.driver, replace(repo.stats, source=source)])
    waiting = text(
        "SELECT count(*) FROM pg_locks WHERE relation = 'driver_locked'::regclass AND NOT granted"
    )

    def reads_waiting(conn: sqlalchemy.Connection, expected: int) -> None:
        deadline = time.monotonic() + 30
        while conn.execute(waiting).scalar() != expected:
            assert time.monotonic() < deadline, f"not {expected} reads waiting after 30 s"
            time.sleep(0.05)  # polling PostgreSQL's own view of its locks

    request = pb.MaterializeRequest(
        feature_views=["driver_stats"],
        start_time=ms_to_timestamp(int((NOW - 100 * HOUR).timestamp() * 1000)),
        end_time=ms_to_timestamp(int(NOW.timestamp() * 1000)),
    )
    with engine.connect() as holder, engine.connect() as observer:
        holder.execute(text("LOCK TABLE driver_locked IN ACCESS EXCLUSIVE MODE"))  # to rollback
        with grpc.insecure_channel(feature_server.address) as channel:
            future = FeatureStoreServiceStub(channel).Materialize.future(request, timeout=60)
            reads_waiting(observer, 1)
            future.cancel()
            reads_waiting(observer, 0)  # while the lock is still held
        holder.rollback()
    engine.dispose()
    assert store.materialize(NOW - 100 * HOUR, NOW)[0].rows == 2


@pytest.mark.parametrize("online_store_uri", ["sqlite"], indirect=True)
def test_a_colon_in_the_query_is_the_querys_own(
    store: FeatureStoreClient, repo: Repo, warehouse: str
) -> None:
    """SQLAlchemy took ':tag' and ':until' in the view's query for parameters of its own: a
    query matching text with a colon failed as missing a parameter value."""
    query = (
        "SELECT *, ':until' AS note FROM driver_window "
        "WHERE city NOT LIKE '%:tag%' AND ' :x' <> ':y'"
    )
    source = SqlSource(warehouse, query, created_timestamp_column="created")
    store.apply([repo.driver, replace(repo.stats, source=source)])
    store.materialize(NOW - 100 * HOUR, NOW)
    online = store.get_online_features(["driver_stats:trips"], [{"driver_id": 1}]).to_dict()
    assert online["trips"] == [35]
    entities = pd.DataFrame({"driver_id": [1], "event_timestamp": [NOW]})
    training = store.get_historical_features(entities, ["driver_stats:trips"]).to_df()
    assert training["trips"].tolist() == [35]


@pytest.mark.parametrize("online_store_uri", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "warehouse", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_query_giving_a_column_twice_is_refused(
    store: FeatureStoreClient, repo: Repo, warehouse: str
) -> None:
    """The rows were read into a map by column name: of two columns named alike (a join's
    SELECT a.*, b.*), the last was kept without a word, and here every driver had 0 trips.
    (SQLite names the second 'trips:1' itself.)"""
    query = "SELECT driver_window.*, 0 AS trips FROM driver_window"
    source = SqlSource(warehouse, query, created_timestamp_column="created")
    store.apply([repo.driver, replace(repo.stats, source=source)])
    entities = pd.DataFrame({"driver_id": [1], "event_timestamp": [NOW]})
    for call in (
        lambda: store.materialize(NOW - 100 * HOUR, NOW),
        lambda: store.get_historical_features(entities, ["driver_stats:trips"]).to_df(),
    ):
        with pytest.raises(FailedPrecondition) as err:
            call()
        assert err.value.resource_name == "driver_stats" and "'trips'" in str(err.value)


@pytest.mark.postgres
@pytest.mark.parametrize("online_store_uri", ["sqlite"], indirect=True)
@pytest.mark.parametrize("warehouse", ["postgres"], indirect=True)
def test_a_sql_sources_password_is_never_answered(
    store: FeatureStoreClient, repo: Repo, warehouse: str
) -> None:
    """GetDefinition and ListDefinitions gave the source's URL, password included, to whoever
    may READ the view. They answer it masked; a definition applied back as it was answered
    keeps the stored password, and a masked URL that is not the stored one is refused."""
    url = sqlalchemy.make_url(warehouse).set(password="s3cret")
    secret_url = url.render_as_string(hide_password=False)
    source = SqlSource(secret_url, "driver_window", created_timestamp_column="created")
    store.apply([repo.driver, replace(repo.stats, source=source)])

    answered = store.get_feature_view("driver_stats")
    assert isinstance(answered.source, SqlSource)
    assert "s3cret" not in answered.source.url
    assert answered.source.url == url.render_as_string(hide_password=True)
    (listed,) = [v for v in store.list_feature_views() if v.name == "driver_stats"]
    assert listed.source == answered.source

    # Applied back as answered (a description added): the password stays the stored one.
    store.apply([repo.driver, replace(answered, description="trips per driver")])
    store.materialize(NOW - 100 * HOUR, NOW)
    assert store.get_online_features(["driver_stats:trips"], [{"driver_id": 1}]).to_dict()[
        "trips"
    ] == [35]

    elsewhere = url.set(database="other").render_as_string(hide_password=True)
    with pytest.raises(InvalidArgument, match="password masked") as err:
        store.apply(
            [repo.driver, replace(answered, source=replace(answered.source, url=elsewhere))]
        )
    assert err.value.field == "definitions[1].feature_view.source.url"


@pytest.mark.parametrize("online_store_uri", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "warehouse", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_epoch_numbers_in_postgresql_are_refused_naming_the_column(
    store: FeatureStoreClient, repo: Repo, warehouse: str
) -> None:
    """A PostgreSQL source whose event time is an epoch number failed in the database's words
    on the window's own wrapper ('cannot cast type bigint to timestamp with time zone; LINE 3:
    ) AS __source WHERE CAST(...)'), a query the view's owner never wrote, with advice on file
    paths. It is refused naming the view, the column and the query that reads it as times,
    which then works."""
    epochs = (
        "SELECT driver_id, CAST(extract(epoch FROM event_timestamp) AS bigint) AS "
        "event_timestamp, created, conv_rate, trips, city FROM driver_window"
    )
    source = SqlSource(warehouse, epochs, created_timestamp_column="created")
    store.apply([repo.driver, replace(repo.stats, source=source)])
    entities = pd.DataFrame({"driver_id": [1], "event_timestamp": [NOW]})
    for call in (
        lambda: store.materialize(NOW - 100 * HOUR, NOW),
        lambda: store.get_historical_features(entities, ["driver_stats:trips"]).to_df(),
    ):
        with pytest.raises(FailedPrecondition) as err:
            call()
        assert err.value.resource_name == "driver_stats"
        assert "'event_timestamp' holds numbers" in str(err.value)
        assert "to_timestamp(event_timestamp) AS event_timestamp" in str(err.value)
        assert "__source" not in str(err.value)

    fixed = f"SELECT driver_id, to_timestamp(event_timestamp) AS event_timestamp, created, \
conv_rate, trips, city FROM ({epochs}) AS epochs"
    source = SqlSource(warehouse, fixed, created_timestamp_column="created")
    store.apply([repo.driver, replace(repo.stats, source=source)])
    assert store.get_historical_features(entities, ["driver_stats:trips"]).to_df()[
        "trips"
    ].tolist() == [35]


@pytest.mark.parametrize("online_store_uri", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "warehouse", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
@pytest.mark.parametrize(
    ("event_time", "said"),
    [
        ("event_timestamp > created AS event_timestamp", "is of type boolean"),
        ("CAST(event_timestamp AS time) AS event_timestamp", "is of type time without"),
        ("created AS made", "gives no column 'event_timestamp', the view's timestamp_field"),
    ],
    ids=["boolean", "time-of-day", "missing"],
)
def test_a_time_column_postgresql_cannot_read_as_a_time_is_named(
    store: FeatureStoreClient, repo: Repo, warehouse: str, event_time: str, said: str
) -> None:
    """Likewise a time column of a type that is no time, or none at all: PostgreSQL's error
    on the window's wrapper named the wrapper's cast; the column is named instead."""
    query = f"SELECT driver_id, {event_time}, created, conv_rate, trips, city FROM driver_window"
    source = SqlSource(warehouse, query, created_timestamp_column="created")
    store.apply([repo.driver, replace(repo.stats, source=source)])
    with pytest.raises(FailedPrecondition) as err:
        store.materialize(NOW - 100 * HOUR, NOW)
    assert err.value.resource_name == "driver_stats"
    assert said in str(err.value) and "__source" not in str(err.value)


@pytest.mark.parametrize("online_store_uri", ["sqlite"], indirect=True)
def test_a_time_column_of_another_type_is_named(
    store: FeatureStoreClient, repo: Repo, tmp_path: Path
) -> None:
    """A file source's time column of a type DuckDB cannot cast to a time (a boolean here)
    failed as a source that 'could not be read', with advice on paths and S3 settings."""
    rows = driver_rows()
    rows["created"] = True
    path = tmp_path / "flags.parquet"
    rows.to_parquet(path)
    source = FileSource(
        path=str(path), timestamp_field="event_timestamp", created_timestamp_column="created"
    )
    store.apply([repo.driver, replace(repo.stats, source=source)])
    with pytest.raises(FailedPrecondition) as err:
        store.materialize(NOW - 100 * HOUR, NOW)
    assert err.value.resource_name == "driver_stats"
    assert "time column 'created' is of type BOOLEAN" in str(err.value)
    assert "could not be read" not in str(err.value)


@pytest.mark.parametrize("online_store_uri", ["sqlite"], indirect=True)
def test_a_source_larger_than_a_batch_reads_as_in_one_batch(
    store: FeatureStoreClient, repo: Repo, warehouse: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SQL source streams to DuckDB a batch at a time: seven rows in batches of two give the
    training set and the online values that one batch gives."""
    source = SqlSource(warehouse, "driver_window", created_timestamp_column="created")
    store.apply([repo.driver, replace(repo.stats, source=source)])
    entities = pd.DataFrame(
        {"driver_id": [1, 2, 3, 1], "event_timestamp": [NOW, NOW, NOW, NOW - 299 * HOUR]}
    )
    features = ["driver_stats:conv_rate", "driver_stats:trips", "driver_stats:city"]

    def read() -> tuple[dict[str, list], int, dict[str, list]]:
        frame = store.get_historical_features(entities, features).to_df()
        training = frame.astype(object).where(frame.notna(), None).to_dict("list")
        (run,) = store.materialize(NOW - 500 * HOUR, NOW, ["driver_stats"])
        rows = [{"driver_id": i} for i in (1, 2, 3)]
        return training, run.rows, store.get_online_features(features, rows).to_dict()

    whole = read()
    assert whole[0]["trips"] == [35, None, None, 1] and whole[1] == 3  # 1: an hour old
    monkeypatch.setattr(sql_sources, "_SQL_BATCH_ROWS", 2)
    assert read() == whole


@pytest.mark.parametrize("online_store_uri", ["sqlite"], indirect=True)
def test_a_stream_takes_its_column_types_from_the_rows_that_have_them(
    store: FeatureStoreClient, repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite types each value, not a column: the stream's schema, fixed before the first
    batch, is read from the batches ahead; a float feature's whole numbers first take fractions
    later, a feature null for longer takes its declared type, a column the view does not read
    may hold anything, and a column whose values change kind is named."""
    db = tmp_path / "warehouse.db"
    at = (NOW - HOUR).isoformat()
    rows: list[tuple[Any, ...]] = [
        (1, at, 1, 10, None, 1),
        (2, at, 2, 20, None, 2),
        (3, at, 0.5, 30, None, "x"),
    ]
    rows += [(i, at, 1.5, i * 10, None, None) for i in range(4, 9)]
    rows += [(9, at, 2.5, 90, "Rome", "y"), (10, at, 2.5, 100, "Rome", "z")]
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (driver_id, event_timestamp, conv_rate, trips, city, note)")
        conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)", rows)
    conn.close()
    source = SqlSource(f"sqlite:///{db}", "t")
    store.apply([repo.driver, replace(repo.stats, source=source)])
    monkeypatch.setattr(sql_sources, "_SQL_BATCH_ROWS", 2)
    entities = pd.DataFrame({"driver_id": [1, 3, 9], "event_timestamp": [NOW] * 3})
    frame = store.get_historical_features(
        entities, ["driver_stats:conv_rate", "driver_stats:city"]
    ).to_df()
    assert frame["conv_rate"].tolist() == [1.0, 0.5, 2.5]
    assert frame["city"].tolist()[2] == "Rome"
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO t VALUES (?, ?, 1.5, 'many', 'Oslo', 0)", [(10, at), (11, at)]
        )
    conn.close()
    with pytest.raises(FailedPrecondition) as err:
        store.materialize(NOW - 10 * HOUR, NOW)
    assert "'trips' holds string values after int64 ones" in str(err.value)
