"""Acknowledged pushes survive a crash: kill -9 the server mid-push, restart, look them all up,
online and in a training set (which a half-written push-log file left behind would break)."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from modelyard.errors import DeadlineExceeded, ModelyardError, Unavailable
from modelyard.features import FeatureStoreClient
from tests.conftest import free_port
from tests.features.repo import NOW, make_repo
from tests.server_process import crash, restarted, to_crash

FIRST_ID = 1000  # apart from the source's drivers


@pytest.mark.slow
def test_acknowledged_pushes_survive_kill(tmp_path: Path, database_url: str) -> None:
    port = free_port()
    with to_crash(tmp_path / "home", port, database_url, tmp_path / "first.log") as proc:
        repo = make_repo(tmp_path / "repo")
        store = FeatureStoreClient(f"127.0.0.1:{port}")
        store.apply(repo.objects)
        acknowledged: list[int] = []
        enough = threading.Event()
        ended: list[ModelyardError] = []

        def push_forever() -> None:
            i = 0
            while True:
                row = pd.DataFrame(
                    {
                        "driver_id": [FIRST_ID + i],
                        "event_timestamp": [NOW],
                        "conv_rate": [i / 1000],
                        "trips": [i],
                        "city": [f"city {i}"],
                    }
                )
                try:
                    store.push("driver_stats", row, to="online_and_offline")
                except ModelyardError as exc:
                    ended.append(exc)  # the server is gone: this push was never acknowledged
                    return
                acknowledged.append(i)
                if i == 40:
                    enough.set()
                i += 1

        writer = threading.Thread(target=push_forever)
        writer.start()
        assert enough.wait(120), f"the server never acknowledged 40 pushes: {ended}"
        crash(proc)
    writer.join(60)
    assert not writer.is_alive()
    assert len(ended) == 1 and isinstance(ended[0], (Unavailable, DeadlineExceeded)), ended
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
    assert len(acknowledged) > 40
