"""Fixtures of the registry suites."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard import Client
from modelyard.services.common.settings import Settings
from tests.conftest import running_server


@pytest.fixture
def db_client(database_url: str, tmp_path: Path) -> Iterator[Client]:
    """A client of a full server on each metadata store backend, with local files."""
    settings = Settings(home=tmp_path, port=0, grace_period=0, backend_store_uri=database_url)
    with running_server(settings) as server, Client(server.address, timeout=120) as c:
        yield c
