"""A driver feature repository on disk and a running feature store to apply it to."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from modelyard.features import (
    Entity,
    FeatureService,
    FeatureStoreClient,
    FeatureView,
    Field,
    FileSource,
    Float64,
    Int64,
    String,
)
from modelyard.services.common.server import ModelyardServer
from modelyard.services.common.settings import FeaturesSettings, Settings
from tests.conftest import running_server

# Whole seconds: every backend keeps them exactly.
NOW = datetime.now(UTC).replace(microsecond=0)


@dataclass
class Repo:
    """Definitions over driver_stats.parquet: driver 1 fresh, 2 stale (older than the TTL), 3
    never seen; two rows for driver 1 share an event time and differ in created time."""

    path: Path
    rows: pd.DataFrame
    driver: Entity
    stats: FeatureView
    service: FeatureService

    @property
    def objects(self) -> list:
        return [self.driver, self.stats, self.service]


def driver_rows() -> pd.DataFrame:
    hour = timedelta(hours=1)
    return pd.DataFrame(
        {
            "driver_id": [1, 1, 1, 1, 2],
            "event_timestamp": [
                NOW - 5 * hour,
                NOW - 2 * hour,
                NOW - hour,
                NOW - hour,
                NOW - 72 * hour,
            ],
            "created": [
                NOW - 5 * hour,
                NOW - 2 * hour,
                NOW - hour,
                NOW - hour + timedelta(minutes=5),
                NOW - 72 * hour,
            ],
            "conv_rate": [0.1, 0.2, 0.3, 0.35, 0.9],
            "trips": [10, 20, 30, 35, 90],
            "city": ["Oslo", "Oslo", "Oslo", "Bergen", "Paris"],
        }
    )


def make_repo(directory: Path) -> Repo:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "driver_stats.parquet"
    rows = driver_rows()
    rows.to_parquet(path)
    driver = Entity(name="driver", join_keys=["driver_id"], value_type=Int64)
    stats = FeatureView(
        name="driver_stats",
        entities=[driver],
        ttl=timedelta(days=1),
        schema=[
            Field(name="conv_rate", dtype=Float64),
            Field(name="trips", dtype=Int64),
            Field(name="city", dtype=String),
        ],
        source=FileSource(
            path=str(path), timestamp_field="event_timestamp", created_timestamp_column="created"
        ),
        owner="ml-team",
        tags={"team": "drivers"},
    )
    service = FeatureService(name="driver_model", features=[stats[["conv_rate", "trips"]]])
    return Repo(path, rows, driver, stats, service)


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return make_repo(tmp_path / "repo")


@pytest.fixture
def feature_server(tmp_path: Path, online_store_uri: str) -> Iterator[ModelyardServer]:
    settings = Settings(
        home=tmp_path / "home",
        port=0,
        grace_period=0,
        features=FeaturesSettings(online_store_uri=online_store_uri),
    )
    with running_server(settings, ("features",)) as server:
        yield server


@pytest.fixture
def store(feature_server: ModelyardServer) -> Iterator[FeatureStoreClient]:
    client = FeatureStoreClient(feature_server.address)
    yield client
    client.close()
