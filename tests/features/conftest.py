"""A running feature store (on each online store backend) and a repository to apply to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.features import FeatureStoreClient
from modelyard.services.common.server import ModelyardServer
from modelyard.services.common.settings import FeaturesSettings, Settings
from tests.conftest import running_server
from tests.features.repo import Repo, make_repo


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
