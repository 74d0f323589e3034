"""A driver feature repository on disk: the data and the definitions over it.

Kept out of conftest.py so that every test module shares one NOW (pytest may import a conftest
under a second name).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from modelyard.features import (
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    Float64,
    Int64,
    String,
)

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
