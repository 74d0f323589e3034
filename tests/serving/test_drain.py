"""A drain ends the watch streams (registry change feed, endpoint watches) as it starts, instead of
holding them, and the drain, for the whole grace period."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sklearn.linear_model import LogisticRegression

import modelyard
from modelyard import Client
from modelyard.entities.serving import ServedModel
from modelyard.errors import Unavailable
from modelyard.services.common.settings import Settings
from tests.conftest import running_server
from tests.serving.conftest import register


def test_drain_ends_watches_with_unavailable(tmp_path: Path, iris) -> None:
    X, y = iris
    # A grace period far longer than the test: a watch still open at its end would be CANCELLED.
    settings = Settings(home=tmp_path, port=0, grace_period=60)
    with running_server(settings) as server, Client(server.address) as client:
        modelyard.set_tracking_uri(server.address)
        try:
            register(LogisticRegression(max_iter=500).fit(X, y), X, "iris")
        finally:
            modelyard.set_tracking_uri("127.0.0.1:1")
        client.create_endpoint("watched", [ServedModel("models:/iris/1")])
        endpoints = client.watch_endpoint("watched", timeout=120)
        next(endpoints)  # the stream is open on the server
        first = client.list_model_events("iris")[0].event_id
        events = client.watch_model_events("iris", since_event_id=first, timeout=120)
        next(events)  # replayed: this stream is open too

        stopper = threading.Thread(target=server.stop)
        stopper.start()
        for stream, says in (
            (endpoints, "serving is shutting down; watch endpoint 'watched' again"),
            (events, "the registry is shutting down; watch again with since_event_id="),
        ):
            with pytest.raises(Unavailable, match=says):
                for _ in stream:
                    pass
        stopper.join(60)
        assert not stopper.is_alive()
