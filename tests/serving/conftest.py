"""Registered scikit-learn models and helpers to wait for endpoints."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prometheus_client import REGISTRY
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import modelyard
import modelyard.sklearn
from modelyard import Client
from modelyard.entities.serving import Endpoint, ServedModel
from modelyard.services.common.server import ModelyardServer
from tests.conftest import running_server


@pytest.fixture(scope="module")
def iris() -> tuple[pd.DataFrame, np.ndarray]:
    data = load_iris(as_frame=True)
    X = data.data.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    return X, data.target.to_numpy()


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[tuple[ModelyardServer, Client]]:
    from modelyard.services.common.settings import Settings

    with (
        running_server(Settings(home=tmp_path, port=0, grace_period=0)) as server,
        Client(server.address) as client,
    ):
        modelyard.set_tracking_uri(server.address)
        yield server, client
        modelyard.set_tracking_uri("127.0.0.1:1")


def register(model, X, name: str) -> int:
    with modelyard.start_run():
        info = modelyard.sklearn.log_model(
            model, "model", input_example=X[:3], registered_model_name=name
        )
    assert info.registered_model_version is not None
    return info.registered_model_version


def serve(client: Client, model, X, name: str) -> None:
    """Register `model` as `name` and serve its version 1 on an endpoint of that name, ready."""
    register(model, X, name)
    client.create_endpoint(name, [ServedModel(f"models:/{name}/1")])
    wait_ready(client, name)


def wait_ready(
    client: Client, name: str, version: int | None = None, timeout: float = 60
) -> Endpoint:
    """Follow the endpoint (WatchEndpoint) until every served model is READY (at `version`)."""
    return client.wait_endpoint_ready(name, version, timeout)


def wait_pending(client: Client, endpoint: str, count: int) -> None:
    """Until `count` requests wait in the queue of `endpoint`'s one served model, as the
    in-process server's metric says."""
    (served,) = client.get_endpoint(endpoint).served_models
    labels = {"endpoint": endpoint, "served_model": served.name}
    deadline = time.monotonic() + 60
    while REGISTRY.get_sample_value("modelyard_serving_pending_requests", labels) != count:
        assert time.monotonic() < deadline, f"{count} requests never waited in {endpoint}"
        time.sleep(0.01)  # polling the server's own metric


@contextmanager
def logged(
    text: str, logger: str = "modelyard.services.serving.endpoints"
) -> Iterator[threading.Event]:
    """An event set once the server's `logger` logs a message containing `text`: how a test
    waits for something it cannot otherwise see end (a load whose result is discarded)."""
    event = threading.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if text in record.getMessage():
                event.set()

    watch, target = Watch(logging.INFO), logging.getLogger(logger)
    level = target.level
    target.addHandler(watch)
    target.setLevel(logging.INFO)
    try:
        yield event
    finally:
        target.removeHandler(watch)
        target.setLevel(level)


@pytest.fixture
def two_versions(platform, iris) -> tuple[LogisticRegression, LogisticRegression]:
    X, y = iris
    first = LogisticRegression(max_iter=500, C=0.01).fit(X, y)
    second = LogisticRegression(max_iter=500, C=100).fit(X, y)
    register(first, X, "iris")
    register(second, X, "iris")
    return first, second
