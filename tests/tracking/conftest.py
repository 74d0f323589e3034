"""The tracking stacks every end-to-end suite runs on: the embedded one (SQLite + local files) and
the production one (PostgreSQL + S3)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard import Client
from modelyard.services.common.settings import Settings
from tests.conftest import running_server


@pytest.fixture(
    params=[
        "sqlite+file",
        pytest.param("postgres+s3", marks=[pytest.mark.postgres, pytest.mark.s3]),
    ]
)
def stack_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "sqlite+file":
        return Settings(home=tmp_path, port=0, grace_period=0)
    return Settings(
        home=tmp_path,
        port=0,
        grace_period=0,
        backend_store_uri=request.getfixturevalue("postgres_url"),
        artifact_uri=f"s3://modelyard-test/{tmp_path.name}",
        s3=request.getfixturevalue("s3_server"),
    )


@pytest.fixture
def stack(stack_settings: Settings) -> Iterator[Client]:
    with running_server(stack_settings) as server, Client(server.address) as client:
        yield client
