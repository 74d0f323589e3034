"""The offline engine's use of DuckDB across retrievals."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import duckdb
import pandas as pd
import pytest

from modelyard.features import FeatureStoreClient
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
