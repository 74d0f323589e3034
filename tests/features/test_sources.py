"""Sources on the real S3 server and in SQL databases; output Parquet and pushes on S3."""

from __future__ import annotations

import hashlib
import io
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from minio import Minio
from sqlalchemy import create_engine

from modelyard.errors import FailedPrecondition, InvalidArgument
from modelyard.features import (
    Bool,
    FeatureStoreClient,
    FeatureView,
    Field,
    FileSource,
    Int32,
    SqlSource,
)
from modelyard.features.definitions import DataSource
from modelyard.services.common.artifacts.s3 import make_client
from modelyard.services.common.settings import FeaturesSettings, S3Settings, Settings
from tests.conftest import S3_BUCKET, running_server
from tests.features.repo import NOW, Repo, driver_rows, make_repo

ENTITIES = pd.DataFrame({"driver_id": [1, 2, 3], "event_timestamp": [NOW, NOW, NOW]})
# At NOW: driver 1's latest (created later) row; driver 2's row is older than the TTL.
EXPECTED_TRIPS = [35, None, None]


def _trips(df: pd.DataFrame) -> list:
    return [None if pd.isna(v) else int(v) for v in df["trips"]]


def _minio(s3: S3Settings) -> Minio:
    return make_client(s3)


@pytest.fixture
def s3_platform(s3_server: S3Settings, tmp_path: Path) -> Iterator[tuple[FeatureStoreClient, str]]:
    root = f"s3://{S3_BUCKET}/{tmp_path.name}"
    settings = Settings(
        home=tmp_path / "home",
        port=0,
        grace_period=0,
        artifact_uri=f"{root}/artifacts",
        s3=s3_server,
        features=FeaturesSettings(online_store_uri=f"sqlite:///{tmp_path / 'online.db'}"),
    )
    with (
        running_server(settings, ("features",)) as server,
        FeatureStoreClient(server.address) as fs,
    ):
        yield fs, root


@pytest.mark.s3
def test_parquet_on_s3(s3_platform, s3_server: S3Settings, tmp_path: Path) -> None:
    fs, root = s3_platform  # the server has created the bucket
    repo = make_repo(tmp_path / "repo")
    data = repo.path.read_bytes()
    key = f"{root.removeprefix(f's3://{S3_BUCKET}/')}/sources/driver_stats.parquet"
    _minio(s3_server).put_object(S3_BUCKET, key, io.BytesIO(data), len(data))
    stats = _with_source(
        repo, FileSource(f"s3://{S3_BUCKET}/{key}", created_timestamp_column="created")
    )
    fs.apply([repo.driver, stats])
    assert (
        _trips(fs.get_historical_features(ENTITIES, ["driver_stats:trips"]).to_df())
        == EXPECTED_TRIPS
    )

    # The training set written to the S3 artifact root, and a push to the offline log there.
    job = fs.get_historical_features(
        ENTITIES,
        ["driver_stats:trips"],
        output_uri=f"{root}/artifacts/training-sets/train.parquet",
    )
    job.to_arrow()
    written = (
        _minio(s3_server)
        .get_object(
            S3_BUCKET,
            key.replace("sources/driver_stats.parquet", "artifacts/training-sets/train.parquet"),
        )
        .read()
    )
    assert hashlib.sha256(written).hexdigest() == job.summary.output_sha256
    assert _trips(pd.read_parquet(io.BytesIO(written))) == EXPECTED_TRIPS

    fs.push(
        "driver_stats",
        pd.DataFrame(
            {
                "driver_id": [3],
                "event_timestamp": [NOW],
                "created": [NOW],
                "conv_rate": [0.7],
                "trips": [7],
                "city": ["Oslo"],
            }
        ),
        to="offline",
    )
    assert _trips(fs.get_historical_features(ENTITIES, ["driver_stats:trips"]).to_df()) == [
        35,
        None,
        7,
    ]


@pytest.mark.s3
def test_output_outside_the_training_sets_area_is_refused(s3_platform) -> None:
    """The server writes outputs with its own credentials: never over a run's artifacts, a
    registered model or pushed rows, which share the artifact store."""
    fs, root = s3_platform
    area = f"{root}/artifacts/training-sets"
    for elsewhere in (
        "s3://another-bucket/train.parquet",
        f"{root}/artifacts/1/0123456789abcdef0123456789abcdef/artifacts/model/model.pkl",
        f"{root}/artifacts/training-sets-not/train.parquet",
        f"{area}/../1/model.pkl",
        area,
    ):
        with pytest.raises(InvalidArgument) as err:
            fs.get_historical_features(
                ENTITIES, ["driver_stats:trips"], output_uri=elsewhere
            ).to_arrow()
        assert err.value.field == "output_uri"
        assert f"{area}/train.parquet" in str(err.value)  # where it may go instead


def _with_source(repo: Repo, source: DataSource) -> FeatureView:
    return replace(repo.stats, source=source)


@pytest.mark.parametrize("online_store_uri", ["sqlite"], indirect=True)
def test_sql_table_on_sqlite(store: FeatureStoreClient, repo: Repo, tmp_path: Path) -> None:
    db = tmp_path / "warehouse.db"
    with sqlite3.connect(db) as conn:
        rows = driver_rows()
        # SQLite has no timestamp type: store ISO text, as warehouses exported to SQLite do.
        for column in ("event_timestamp", "created"):
            rows[column] = rows[column].map(lambda t: t.isoformat())
        rows.to_sql("driver_stats", conn, index=False)
    stats = _with_source(
        repo, SqlSource(f"sqlite:///{db}", "driver_stats", created_timestamp_column="created")
    )
    store.apply([repo.driver, stats])
    assert (
        _trips(store.get_historical_features(ENTITIES, ["driver_stats:trips"]).to_df())
        == EXPECTED_TRIPS
    )
    store.materialize(NOW - pd.Timedelta(hours=100), NOW)
    assert store.get_online_features(["driver_stats:trips"], [{"driver_id": 1}]).to_dict()[
        "trips"
    ] == [35]


@pytest.mark.parametrize("online_store_uri", ["sqlite"], indirect=True)
def test_a_sql_query_of_any_form_runs_as_written(
    store: FeatureStoreClient, repo: Repo, tmp_path: Path
) -> None:
    """A query that did not start with SELECT was taken for a table name and run as 'SELECT *
    FROM <query>': a WITH query or one after a comment failed as a syntax error. Only a table
    name (qualified or quoted too) is read whole."""
    db = tmp_path / "warehouse.db"
    with sqlite3.connect(db) as conn:
        rows = driver_rows()
        for column in ("event_timestamp", "created"):
            rows[column] = rows[column].map(lambda t: t.isoformat())
        rows.to_sql("Driver Stats", conn, index=False)
    for query in (
        'WITH recent AS (SELECT * FROM "Driver Stats") SELECT * FROM recent',
        '-- the drivers\' stats\nSELECT * FROM "Driver Stats"',
        ' main."Driver Stats" ',
    ):
        source = SqlSource(f"sqlite:///{db}", query, created_timestamp_column="created")
        store.apply([repo.driver, _with_source(repo, source)])
        training = store.get_historical_features(ENTITIES, ["driver_stats:trips"]).to_df()
        assert _trips(training) == EXPECTED_TRIPS, query


@pytest.mark.parametrize("online_store_uri", ["sqlite"], indirect=True)
def test_a_sql_source_with_no_rows_yet_gives_no_values(
    store: FeatureStoreClient, repo: Repo, tmp_path: Path
) -> None:
    """The rows were read as a list of dicts: none gave a table with no columns, and training
    sets and materialization failed ("must have at least one column")."""
    db = tmp_path / "warehouse.db"
    with sqlite3.connect(db) as conn:
        driver_rows().head(0).to_sql("driver_stats", conn, index=False)
    stats = _with_source(
        repo, SqlSource(f"sqlite:///{db}", "driver_stats", created_timestamp_column="created")
    )
    store.apply([repo.driver, stats])
    training = store.get_historical_features(ENTITIES, ["driver_stats:trips"]).to_df()
    assert _trips(training) == [None, None, None]
    assert store.materialize(NOW - pd.Timedelta(hours=100), NOW)[0].rows == 0


@pytest.mark.parametrize("online_store_uri", ["sqlite"], indirect=True)
def test_a_csv_source_with_no_rows_yet_gives_no_values(
    store: FeatureStoreClient, repo: Repo, tmp_path: Path
) -> None:
    """A CSV file holding only its header, whose names could be values ('f' reads as false), was
    sniffed as a row of data in columns column0...: every training set and materialize failed,
    the source 'lacking' column driver_id."""
    path = tmp_path / "flags.csv"
    path.write_text("driver_id,event_timestamp,f\n")
    flags = FeatureView(
        "flags", [repo.driver], [Field("f", Bool)], FileSource(str(path), file_format="csv")
    )
    store.apply([repo.driver, flags])
    training = store.get_historical_features(ENTITIES, ["flags:f"]).to_df()
    assert training["f"].isna().all()
    assert store.materialize(NOW - pd.Timedelta(hours=100), NOW)[0].rows == 0


@pytest.mark.parametrize("online_store_uri", ["sqlite"], indirect=True)
def test_a_directory_of_files_is_read_with_the_columns_of_all(
    store: FeatureStoreClient, repo: Repo, tmp_path: Path
) -> None:
    """A directory source took its columns from its first file: a feature that later files
    (partitions written after it was added) hold failed every read as missing from the
    source. Files without it give nulls; an int column beside a float one reads as float."""
    rows = driver_rows()
    parts = tmp_path / "parts"
    parts.mkdir()
    rows.iloc[:4].drop(columns=["city"]).to_parquet(parts / "2026-01-01.parquet")
    later = rows.iloc[4:].assign(conv_rate=[1])  # driver 2: conv_rate held as an integer
    later.to_parquet(parts / "2026-01-02.parquet")
    stats = _with_source(repo, FileSource(str(parts), created_timestamp_column="created"))
    store.apply([repo.driver, stats])
    entity_rows = pd.DataFrame({"driver_id": [1, 2], "event_timestamp": [NOW, NOW]})
    features = ["driver_stats:city", "driver_stats:conv_rate", "driver_stats:trips"]
    training = store.get_historical_features(entity_rows, features).to_df()
    # Driver 1's latest row is in the file without city; driver 2's is older than the TTL.
    assert training["city"].isna().all() and _trips(training) == [35, None]
    old = store.get_historical_features(
        pd.DataFrame({"driver_id": [2], "event_timestamp": [NOW - pd.Timedelta(hours=71)]}),
        features,
    ).to_df()
    assert old[["city", "conv_rate", "trips"]].values.tolist() == [["Paris", 1.0, 90]]


@pytest.mark.postgres
@pytest.mark.parametrize("online_store_uri", ["sqlite"], indirect=True)
def test_sql_query_on_postgres(store: FeatureStoreClient, repo: Repo, postgres_url: str) -> None:
    url = postgres_url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(url)
    driver_rows().to_sql("driver_stats_pg", engine, index=False)
    engine.dispose()
    query = "SELECT * FROM driver_stats_pg WHERE trips < 1000"
    stats = _with_source(repo, SqlSource(url, query, created_timestamp_column="created"))
    store.apply([repo.driver, stats])
    assert (
        _trips(store.get_historical_features(ENTITIES, ["driver_stats:trips"]).to_df())
        == EXPECTED_TRIPS
    )


@pytest.mark.postgres
@pytest.mark.parametrize("online_store_uri", ["sqlite"], indirect=True)
def test_a_sql_source_only_reads(store: FeatureStoreClient, repo: Repo, postgres_url: str) -> None:
    """The view's query runs in a read-only transaction: a SELECT with a side effect (taking a
    sequence's next value) is refused by the database and changes nothing."""
    url = postgres_url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(url)
    driver_rows().to_sql("driver_stats_ro", engine, index=False)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE SEQUENCE probe_seq")
    query = "SELECT *, nextval('probe_seq') AS n FROM driver_stats_ro"
    store.apply([repo.driver, _with_source(repo, SqlSource(url, query))])
    with pytest.raises(FailedPrecondition) as err:
        store.get_historical_features(ENTITIES, ["driver_stats:trips"]).to_arrow()
    assert "read-only transaction" in str(err.value)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT is_called FROM probe_seq").scalar() is False
    engine.dispose()


@pytest.mark.parametrize("online_store_uri", ["sqlite"], indirect=True)
def test_a_missing_source_file_names_the_view(
    store: FeatureStoreClient, repo: Repo, tmp_path
) -> None:
    stats = _with_source(repo, FileSource(str(tmp_path / "nowhere.parquet")))
    store.apply([repo.driver, stats])
    with pytest.raises(FailedPrecondition) as err:
        store.get_historical_features(ENTITIES, ["driver_stats:trips"]).to_arrow()
    assert err.value.resource_name == "driver_stats" and "nowhere.parquet" in str(err.value)


def _broken_sources(tmp_path: Path) -> dict[str, tuple[DataSource, str]]:
    """Sources whose reading fails, with what the error must say."""
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"not parquet at all")
    bad_time = tmp_path / "bad_time.csv"
    bad_time.write_text(
        "driver_id,event_timestamp,created,conv_rate,trips,city\n1,notatime,notatime,0.1,3,x\n"
    )
    # Text where the view declares numbers: refused at the read, not stored for lookups to trip on.
    wrong_kind = tmp_path / "wrong_kind.parquet"
    driver_rows().assign(trips="many").to_parquet(wrong_kind)
    # A fraction where the view declares integers: DuckDB's cast alone would round it.
    fraction = tmp_path / "fraction.parquet"
    driver_rows().assign(trips=lambda rows: rows["trips"] + 0.5).to_parquet(fraction)
    return {
        "corrupt parquet": (FileSource(str(corrupt)), "magic bytes"),
        "text for numbers": (FileSource(str(wrong_kind)), "'many' to INT64"),
        "fraction for integers": (FileSource(str(fraction)), "holds 10.5, which is not an integer"),
        "unparsable time": (FileSource(str(bad_time), file_format="csv"), "notatime"),
        "missing table": (SqlSource(f"sqlite:///{tmp_path / 'empty.db'}", "nowhere"), "nowhere"),
        # Port 1 on loopback: nothing listens there.
        "unreachable database": (
            SqlSource("postgresql+psycopg://127.0.0.1:1/warehouse", "stats"),
            "Connection refused",
        ),
    }


@pytest.mark.parametrize("online_store_uri", ["sqlite"], indirect=True)
def test_an_int32_feature_refuses_values_beyond_its_range(
    store: FeatureStoreClient, repo: Repo, tmp_path: Path
) -> None:
    """Read as INT64 they reached the online store, which then answered INT32 lookups with them."""
    path = tmp_path / "big.parquet"
    driver_rows().assign(trips=lambda rows: rows["trips"] + 2**40).to_parquet(path)
    schema = tuple(replace(f, dtype=Int32) if f.name == "trips" else f for f in repo.stats.schema)
    store.apply([repo.driver, replace(repo.stats, source=FileSource(str(path)), schema=schema)])
    with pytest.raises(FailedPrecondition) as err:
        store.materialize(NOW - pd.Timedelta(hours=100), NOW)
    assert "out of range for the destination type INT32" in str(err.value)
    assert store.get_online_features(["driver_stats:trips"], [{"driver_id": 1}]).to_dict() == {
        "driver_id": [1],
        "trips": [None],
    }


@pytest.mark.parametrize("online_store_uri", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "broken",
    [
        "corrupt parquet",
        "text for numbers",
        "fraction for integers",
        "unparsable time",
        "missing table",
        "unreachable database",
    ],
)
def test_a_source_that_cannot_be_read_fails_the_call_naming_the_view(
    store: FeatureStoreClient, repo: Repo, tmp_path: Path, broken: str
) -> None:
    """Its owner can fix it, the server cannot: FAILED_PRECONDITION with the reader's own words,
    for a training set and for a materialization alike (never INTERNAL)."""
    source, said = _broken_sources(tmp_path)[broken]
    store.apply([repo.driver, _with_source(repo, source)])
    for call in (
        lambda: store.get_historical_features(ENTITIES, ["driver_stats:trips"]).to_arrow(),
        lambda: store.materialize(NOW - pd.Timedelta(hours=100), NOW),
    ):
        with pytest.raises(FailedPrecondition) as err:
            call()
        assert err.value.resource_name == "driver_stats"
        assert "could not be read" in str(err.value) and said in str(err.value)


def test_an_object_store_it_cannot_reach_fails_the_call_naming_the_view(
    repo: Repo, tmp_path: Path
) -> None:
    """pyarrow's S3 file system raises OSError (here: nothing listens at the endpoint), which
    reached the client as INTERNAL; the README's own feature view (s3://lake/...) on a server
    without S3 did that."""
    settings = Settings(
        home=tmp_path / "home",
        port=0,
        grace_period=0,
        s3=S3Settings(endpoint="http://127.0.0.1:1", access_key="key", secret_key="secret"),
        features=FeaturesSettings(online_store_uri=f"sqlite:///{tmp_path / 'online.db'}"),
    )
    with (
        running_server(settings, ("features",)) as server,
        FeatureStoreClient(server.address) as store,
    ):
        store.apply([repo.driver, _with_source(repo, FileSource("s3://lake/stats.parquet"))])
        for call in (
            lambda: store.get_historical_features(ENTITIES, ["driver_stats:trips"]).to_arrow(),
            lambda: store.materialize(NOW - pd.Timedelta(hours=100), NOW),
        ):
            with pytest.raises(FailedPrecondition) as err:
                call()
            assert err.value.resource_name == "driver_stats"
            assert "could not be read" in str(err.value) and "127.0.0.1:1" in str(err.value)
            assert "MODELYARD_S3__ENDPOINT" in str(err.value)


@pytest.mark.parametrize("online_store_uri", ["sqlite"], indirect=True)
def test_a_source_that_does_not_exist_says_the_server_reads_it(
    store: FeatureStoreClient, repo: Repo
) -> None:
    """A relative path is the server's, not the caller's: the refusal said only "does not
    exist", though the file was right there in the caller's directory."""
    store.apply([repo.driver, _with_source(repo, FileSource("driver_stats_nowhere.parquet"))])
    with pytest.raises(FailedPrecondition) as err:
        store.materialize(NOW - pd.Timedelta(hours=100), NOW)
    assert err.value.resource_name == "driver_stats"
    assert "does not exist" in str(err.value) and "a path on the server" in str(err.value)


@pytest.mark.parametrize("online_store_uri", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("dropped", "role"),
    [
        ("trips", "a feature of its schema"),
        ("event_timestamp", "its timestamp_field"),
        ("created", "its created_timestamp_column"),
        ("driver_id", "a join key of its entities"),
    ],
)
@pytest.mark.parametrize("kind", ["parquet", "sqlite"])
def test_a_source_lacking_a_column_names_it(
    store: FeatureStoreClient, repo: Repo, tmp_path: Path, dropped: str, role: str, kind: str
) -> None:
    """A source without a column the view reads failed with DuckDB's binder error on the
    statement the feature store builds around the source ('LINE 1: ...REATE OR REPLACE TEMP
    VIEW src AS SELECT "driver_id", CAST(...'), which its owner never wrote. The column is
    named, with what it is to the view and the columns the source has."""
    rows = driver_rows().drop(columns=[dropped])
    if kind == "parquet":
        rows.to_parquet(tmp_path / "stats.parquet")
        source: DataSource = FileSource(
            str(tmp_path / "stats.parquet"), "event_timestamp", created_timestamp_column="created"
        )
    else:
        for column in {"event_timestamp", "created"} - {dropped}:
            rows[column] = rows[column].map(lambda t: t.isoformat())
        with sqlite3.connect(tmp_path / "w.db") as conn:
            rows.to_sql("stats", conn, index=False)
        source = SqlSource(f"sqlite:///{tmp_path / 'w.db'}", "stats", "event_timestamp", "created")
    store.apply([repo.driver, _with_source(repo, source)])
    for call in (
        lambda: store.get_historical_features(ENTITIES, ["driver_stats:trips"]).to_arrow(),
        lambda: store.materialize(NOW - pd.Timedelta(hours=100), NOW),
    ):
        with pytest.raises(FailedPrecondition) as err:
            call()
        assert err.value.resource_name == "driver_stats"
        assert f"has no column {dropped!r}, {role}" in str(err.value)
        assert "'conv_rate'" in str(err.value) and "TEMP VIEW" not in str(err.value)


@pytest.mark.parametrize("online_store_uri", ["sqlite"], indirect=True)
def test_epoch_numbers_are_named_whatever_the_columns_case(
    store: FeatureStoreClient, repo: Repo, tmp_path: Path
) -> None:
    """DuckDB reads the view's 'event_timestamp' from a source's 'Event_Timestamp' (names
    match without regard to case), but the check for epoch numbers looked the name up as
    written: such a column of numbers failed with DuckDB's 'Unimplemented type for cast
    (BIGINT -> TIMESTAMP WITH TIME ZONE)' and advice on paths and S3 settings."""
    rows = driver_rows()
    rows["event_timestamp"] = [int(t.timestamp()) for t in rows["event_timestamp"]]
    rows.rename(columns={"event_timestamp": "Event_Timestamp"}).to_parquet(tmp_path / "x.parquet")
    source = FileSource(str(tmp_path / "x.parquet"), created_timestamp_column="created")
    store.apply([repo.driver, _with_source(repo, source)])
    with pytest.raises(FailedPrecondition) as err:
        store.materialize(NOW - pd.Timedelta(hours=100), NOW)
    assert "time column 'event_timestamp' holds numbers" in str(err.value)
