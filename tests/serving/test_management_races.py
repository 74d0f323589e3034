"""Concurrent CreateEndpoint, UpdateEndpoint and DeleteEndpoint of one name, over real gRPC, on
SQLite and PostgreSQL: the endpoints served always match the endpoints stored.

Every round starts its calls together at a barrier, so they overlap on every backend.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest
from sklearn.linear_model import LogisticRegression

import modelyard
from modelyard import Client
from modelyard.entities.serving import ServedModel
from modelyard.services.common.db import Database
from modelyard.services.common.settings import Settings
from modelyard.services.serving.store.sql import SqlServingStore
from tests.conftest import running_server
from tests.races import codes, race
from tests.serving.conftest import register

ROUNDS = 25
CALLS = 12
NAMES = ("ep0", "ep1")


@pytest.fixture
def db_platform(
    database_url: str, tmp_path: Path, iris
) -> Iterator[tuple[Client, SqlServingStore]]:
    """A full server on each metadata store backend serving iris version 1, and a store reading
    the same database (what a restart would serve)."""
    settings = Settings(home=tmp_path, port=0, grace_period=0, backend_store_uri=database_url)
    db = Database.from_settings(settings)
    with running_server(settings) as server, Client(server.address, timeout=120) as client:
        modelyard.set_tracking_uri(server.address)
        X, y = iris
        register(LogisticRegression(max_iter=500).fit(X, y), X, "iris")
        try:
            yield client, SqlServingStore(db)
        finally:
            modelyard.set_tracking_uri("127.0.0.1:1")
            db.dispose()


def test_concurrent_create_update_delete_keep_served_and_stored_equal(db_platform) -> None:
    """A create landing between a delete's commit and the removal of its runtime once left the
    endpoint stored but not served: NOT_FOUND to get, delete and infer, ALREADY_EXISTS to
    create, until a restart brought it back."""
    client, store = db_platform
    served = [ServedModel("models:/iris/1")]
    outcomes: Counter[str] = Counter()
    for round_ in range(ROUNDS):
        calls: list[Callable[[], object]] = []
        for i in range(CALLS):
            name = NAMES[i % len(NAMES)]
            calls.append(
                [
                    partial(client.create_endpoint, name, served),
                    partial(client.delete_endpoint, name),
                    partial(
                        client.update_endpoint,
                        name,
                        [ServedModel("models:/iris/1", name=f"n{i % 2}")],
                    ),
                ][(i // len(NAMES) + round_) % 3]
            )
        outcomes += codes(race(calls))
        listed = sorted(e.name for e in client.list_endpoints())
        stored = sorted(e.name for e in store.list_endpoints())
        assert listed == stored, f"round {round_}: served {listed}, stored {stored}"
    assert set(outcomes) <= {"OK", "NOT_FOUND", "ALREADY_EXISTS"}, outcomes
    for name in NAMES:  # what is stored can be managed: got, deleted, created again
        if name in stored:
            client.get_endpoint(name)
            client.delete_endpoint(name)
        client.create_endpoint(name, served)
        assert client.get_endpoint(name).name == name
