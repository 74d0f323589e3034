"""The offline engine's use of DuckDB across retrievals."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from modelyard.errors import ResourceExhausted
from modelyard.features import (
    Entity,
    FeatureStoreClient,
    FeatureView,
    Field,
    FileSource,
    Float64,
    Int64,
    String,
)
from modelyard.services.common.settings import FeaturesSettings, Settings
from tests.conftest import running_server
from tests.features.repo import NOW, Repo


@pytest.mark.parametrize("online_store_uri", ["sqlite"], indirect=True)
def test_retrievals_share_one_database_each_on_a_connection_of_its_own(
    store: FeatureStoreClient, repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every training set and every view materialized opened a DuckDB database of its own, at
    75-120 ms each (most of a materialization of 1,000 entities). They now connect to one; each
    still has its own tables, so retrievals running together get their own rows."""
    opened: list[object] = []
    real_connect = duckdb.connect

    def counted(*args: object, **kwargs: object) -> duckdb.DuckDBPyConnection:
        opened.append(args)
        return real_connect(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(duckdb, "connect", counted)
    store.apply(repo.objects)
    for _ in range(2):
        assert store.materialize(NOW - timedelta(hours=100), NOW)[0].rows == 2

    def trips(driver: int) -> list[object]:
        rows = pd.DataFrame({"driver_id": [driver] * 50, "event_timestamp": [NOW] * 50})
        training = store.get_historical_features(rows, ["driver_stats:trips"]).to_df()
        return [None if pd.isna(t) else int(t) for t in training["trips"]]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(trips, [1, 2, 3, 1] * 3))
    assert results == [[35] * 50, [None] * 50, [None] * 50, [35] * 50] * 3
    assert len(opened) <= 1  # the first retrieval of the process opens the database


_BIG_ROWS = 2_000_000


def _big_view(directory: Path) -> tuple[Entity, FeatureView]:
    """A view of 100,000 keys with 20 rows each, 2M rows in all."""
    rows = _BIG_ROWS
    frame = pd.DataFrame(
        {
            "k": np.arange(rows) % 100_000,
            "ts": pd.Timestamp(NOW - timedelta(hours=1)) + pd.to_timedelta(np.arange(rows), "us"),
            "f": np.arange(rows, dtype=np.float64),
            "s": ["x" * 50] * rows,
        }
    )
    frame.to_parquet(directory / "big.parquet")
    entity = Entity(name="e", join_keys=["k"], value_type=Int64)
    view = FeatureView(
        "big",
        [entity],
        [Field("f", Float64), Field("s", String)],
        FileSource(str(directory / "big.parquet"), "ts"),
    )
    return entity, view


def _limited(tmp_path: Path, memory_limit: str) -> Settings:
    features = FeaturesSettings(duckdb_memory_limit=memory_limit, duckdb_threads=1)
    return Settings(home=tmp_path / "home", port=0, grace_period=0, features=features)


def test_a_join_larger_than_the_memory_limit_spills_under_the_home(tmp_path: Path) -> None:
    """DuckDB took up to 80% of the machine's RAM and spilled into `.tmp` in the server's
    working directory; features.duckdb_memory_limit caps it, and the join spills under the
    home (or features.duckdb_temp_directory)."""
    entity, view = _big_view(tmp_path)
    with (
        running_server(_limited(tmp_path, "100MB"), ("features",)) as server,
        FeatureStoreClient(server.address) as store,
    ):
        store.apply([entity, view])
        (run,) = store.materialize(NOW - timedelta(hours=2), NOW)
        assert run.rows == 100_000
        found = store.get_online_features(["big:f"], [{"k": 7}]).to_dict()
        assert found["f"] == [_BIG_ROWS - 100_000 + 7]  # each key's latest row
        spilled = list((tmp_path / "home" / "duckdb-tmp").glob("duckdb_temp_*"))
        assert spilled


def test_a_join_that_does_not_fit_even_spilled_is_resource_exhausted(tmp_path: Path) -> None:
    """DuckDB's out of memory error was an INTERNAL error, with nothing for the caller to do."""
    entity, view = _big_view(tmp_path)
    with (
        running_server(_limited(tmp_path, "10MB"), ("features",)) as server,
        FeatureStoreClient(server.address) as store,
    ):
        store.apply([entity, view])
        with pytest.raises(ResourceExhausted) as err:
            store.materialize(NOW - timedelta(hours=2), NOW)
        assert err.value.resource_name == "big"
        assert "features.duckdb_memory_limit" in str(err.value)


def test_a_training_set_that_does_not_fit_even_spilled_is_resource_exhausted(
    tmp_path: Path, repo: Repo
) -> None:
    """The view's join fits in 20 MB; ordering 500,000 entity rows of 100 bytes back as sent
    does not, and failed INTERNAL."""
    with (
        running_server(_limited(tmp_path, "20MB"), ("features",)) as server,
        FeatureStoreClient(server.address) as store,
    ):
        store.apply(repo.objects)
        rows = 500_000
        entities = pd.DataFrame(
            {"driver_id": [1] * rows, "event_timestamp": [NOW] * rows, "pad": ["y" * 100] * rows}
        )
        with pytest.raises(ResourceExhausted) as err:
            store.get_historical_features(entities, ["driver_stats:trips"]).to_df()
        assert "features.duckdb_memory_limit" in str(err.value)
