"""Acknowledged pushes survive a crash: kill -9 the server mid-push, restart, look them all up,
online and in a training set (which a half-written push-log file left behind would break)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from modelyard.features import FeatureStoreClient
from tests.conftest import free_port
from tests.features.repo import NOW, make_repo
from tests.server_process import crash_amid, restarted, to_crash

FIRST_ID = 1000  # apart from the source's drivers


@pytest.mark.slow
def test_acknowledged_pushes_survive_kill(tmp_path: Path, database_url: str) -> None:
    port = free_port()
    with to_crash(tmp_path / "home", port, database_url, tmp_path / "first.log") as proc:
        repo = make_repo(tmp_path / "repo")
        store = FeatureStoreClient(f"127.0.0.1:{port}")
        store.apply(repo.objects)

        def push(i: int) -> None:
            row = {"driver_id": [FIRST_ID + i], "event_timestamp": [NOW], "trips": [i]}
            row |= {"conv_rate": [i / 1000], "city": [f"city {i}"]}
            store.push("driver_stats", pd.DataFrame(row), to="online_and_offline")

        acknowledged = crash_amid(proc, push, 40)
    store.close()

    ids = [FIRST_ID + i for i in acknowledged]
    with (
        restarted(tmp_path / "home", port, database_url) as address,
        FeatureStoreClient(address) as after,
    ):
        online = after.get_online_features(
            ["driver_stats:trips", "driver_stats:city"], [{"driver_id": d} for d in ids]
        ).to_dict()
        entities = pd.DataFrame({"driver_id": ids, "event_timestamp": NOW + timedelta(hours=1)})
        offline = after.get_historical_features(entities, ["driver_stats:trips"]).to_df()
    assert online["trips"] == acknowledged
    assert online["city"] == [f"city {i}" for i in acknowledged]
    by_driver = dict(zip(offline["driver_id"], offline["trips"], strict=True))
    assert [by_driver[d] for d in ids] == acknowledged
