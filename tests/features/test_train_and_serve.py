"""Train from a feature service, register, serve by entity key: the whole path over real gRPC."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as triton
from sklearn.linear_model import LinearRegression
from tritonclient.utils import InferenceServerException

import modelyard
import modelyard.sklearn
from modelyard import Client
from modelyard.entities.serving import MissingFeaturePolicy, ServedModel
from modelyard.errors import InvalidArgument, NotFound
from modelyard.features import FeatureStoreClient
from modelyard.models.package import read_manifest
from modelyard.services.common.settings import FeaturesSettings, ServingSettings, Settings
from tests.conftest import running_server
from tests.features.repo import NOW, Repo, make_repo
from tests.serving.conftest import wait_ready

FEATURES = ["conv_rate", "trips"]


@pytest.fixture
def platform(tmp_path: Path, online_store_uri: str) -> Iterator[tuple[Client, FeatureStoreClient]]:
    settings = Settings(
        home=tmp_path / "home",
        port=0,
        grace_period=0,
        features=FeaturesSettings(online_store_uri=online_store_uri),
    )
    with (
        running_server(settings) as server,
        Client(server.address) as client,
        FeatureStoreClient(server.address) as store,
    ):
        modelyard.set_tracking_uri(server.address)
        yield client, store
        modelyard.set_tracking_uri("127.0.0.1:1")


def _train(store: FeatureStoreClient, repo: Repo) -> tuple[LinearRegression, int, str]:
    """The repository applied and materialized, and a model trained on a point-in-time training
    set from it, logged with its feature service."""
    store.apply(repo.objects)
    store.materialize(NOW - timedelta(days=5), NOW + timedelta(minutes=1))
    rng = np.random.default_rng(0)
    entity_df = pd.DataFrame(
        {
            "driver_id": rng.choice([1, 2], 200),
            "event_timestamp": [NOW - timedelta(minutes=int(m)) for m in rng.integers(0, 600, 200)],
        }
    )
    job = store.get_historical_features(entity_df, repo.service)
    training = job.to_df().dropna()
    # Minutes to the next trip, say: any target the features explain will do.
    target = 30 - 20 * training["conv_rate"] + 0.1 * training["trips"]
    model = LinearRegression().fit(training[FEATURES], target)
    with modelyard.start_run() as run:
        modelyard.log_input(job.to_dataset("driver-training"), context="training")
        info = modelyard.sklearn.log_model(
            model,
            "model",
            input_example=training[FEATURES].head(3),
            feature_service=repo.service,
            registered_model_name="driver-model",
        )
    assert info.registered_model_version == 1
    return model, info.registered_model_version, run.info.run_id


def _predict(client: Client, endpoint: str, data: dict[str, list]) -> list[float]:
    (out,) = client.predict(endpoint, {k: np.asarray(v) for k, v in data.items()}).values()
    return [round(float(v), 9) for v in out]


def _expected(model: LinearRegression, frame: pd.DataFrame) -> list[float]:
    return [round(float(v), 9) for v in model.predict(frame[FEATURES])]


def test_train_register_serve_by_entity_key(platform, tmp_path: Path) -> None:
    client, store = platform
    repo = make_repo(tmp_path / "repo")
    model, version, run_id = _train(store, repo)
    assert client.get_run(run_id).inputs.dataset_inputs[0].tags[0].value == "training"

    # Lineage: the run took the training set as input; the package names the feature service.
    lineage = client.get_model_version_lineage("driver-model", version)
    (dataset_input,) = lineage.run.inputs.dataset_inputs
    assert dataset_input.dataset.name == "driver-training"
    assert json.loads(dataset_input.dataset.source)["feature_service"] == "driver_model"
    assert {c["name"] for c in json.loads(dataset_input.dataset.schema)["columns"]} >= {
        "driver_id",
        "conv_rate",
        "trips",
    }
    local = client.download_model_version("driver-model", version, tmp_path / "pkg")
    assert read_manifest(local).feature_service == "driver_model"

    client.create_endpoint("drivers", [ServedModel("models:/driver-model/1")])
    wait_ready(client, "drivers")

    # Entity keys only: the features come from the online store.
    online = store.get_online_features(repo.service, [{"driver_id": 1}]).to_df()
    assert _predict(client, "drivers", {"driver_id": [1]}) == _expected(model, online)

    # A value in the request wins over the stored one.
    high, low = {"conv_rate": [0.9]}, {"conv_rate": [0.0]}

    def frame(rate: list[float]) -> pd.DataFrame:
        return pd.DataFrame({"conv_rate": rate, "trips": online["trips"]})

    assert _predict(client, "drivers", {"driver_id": [1], **high}) == _expected(model, frame([0.9]))
    assert _predict(client, "drivers", {"driver_id": [1], **low}) == _expected(model, frame([0.0]))
    assert _expected(model, frame([0.9])) != _expected(model, frame([0.0]))

    # Missing (driver 3) and stale (driver 2: older than the TTL) fail, naming the entity.
    for driver, status in ((3, "NOT_FOUND"), (2, "OUTSIDE_MAX_AGE")):
        with pytest.raises(NotFound) as err:
            _predict(client, "drivers", {"driver_id": [1, driver]})
        assert err.value.resource_type == "entity"
        assert err.value.resource_name == f"driver_id={driver}"
        assert status in str(err.value) and "IMPUTE" in str(err.value)

    with pytest.raises(InvalidArgument) as invalid:
        _predict(client, "drivers", {"rider_id": [1]})
    assert invalid.value.field == "driver_id"

    # The endpoint's policy can impute instead: the type's default (0) takes the gap.
    client.update_endpoint(
        "drivers",
        [ServedModel("models:/driver-model/1")],
        missing_features=MissingFeaturePolicy.IMPUTE,
    )
    imputed = pd.DataFrame({"conv_rate": [0.0], "trips": [0]})
    assert _predict(client, "drivers", {"driver_id": [3]}) == _expected(model, imputed)

    # A fresh push is used by the next request, without reloading anything.
    store.push(
        "driver_stats",
        pd.DataFrame(
            {"driver_id": [3], "event_timestamp": [NOW], "conv_rate": [0.95], "trips": [3]}
        ),
    )
    pushed = pd.DataFrame({"conv_rate": [0.95], "trips": [3]})
    assert _predict(client, "drivers", {"driver_id": [3]}) == _expected(model, pushed)


@pytest.mark.parametrize("online_store_uri", ["sqlite"], indirect=True)
def test_triton_clients_see_the_entity_keys_as_inputs(platform, tmp_path: Path) -> None:
    client, store = platform
    repo = make_repo(tmp_path / "repo")
    model, _version, _run = _train(store, repo)
    client.create_endpoint("drivers", [ServedModel("models:/driver-model/1")])
    wait_ready(client, "drivers")

    triton_client = triton.InferenceServerClient(client._t.uri.removeprefix("grpc://"))
    metadata = triton_client.get_model_metadata("drivers")
    assert [(i.name, i.datatype) for i in metadata.inputs] == [("driver_id", "INT64")]
    keys = triton.InferInput("driver_id", [2], "INT64")
    keys.set_data_from_numpy(np.array([1, 1], dtype=np.int64))
    result = triton_client.infer("drivers", [keys])
    online = store.get_online_features(repo.service, [{"driver_id": 1}]).to_df()
    got = [round(float(v), 9) for v in result.as_numpy(metadata.outputs[0].name)]
    assert got == _expected(model, pd.concat([online, online]))
    triton_client.close()


def test_an_unreachable_feature_store_is_unavailable_naming_the_feature_service(
    tmp_path: Path,
) -> None:
    """Serving on one server looks features up in another's feature store, which goes away:
    the caller gets UNAVAILABLE naming the feature service and saying to retry, not the
    internal client's message (the store's address, advice to set MODELYARD_URI)."""
    platform = Settings(home=tmp_path / "platform", port=0, grace_period=0)
    with (
        running_server(platform) as features_server,
        FeatureStoreClient(features_server.address) as store,
    ):
        modelyard.set_tracking_uri(features_server.address)
        try:
            _train(store, make_repo(tmp_path / "repo"))
        finally:
            modelyard.set_tracking_uri("127.0.0.1:1")
        address = features_server.address
        settings = Settings(
            home=tmp_path / "serving",
            port=0,
            grace_period=0,
            serving=ServingSettings(registry_uri=address, features_uri=address),
        )
        with (
            running_server(settings) as serving,
            Client(serving.address) as client,
            triton.InferenceServerClient(serving.address) as triton_client,
        ):
            client.create_endpoint("drivers", [ServedModel("models:/driver-model/1")])
            wait_ready(client, "drivers")
            keys = triton.InferInput("driver_id", [1], "INT64")
            keys.set_data_from_numpy(np.array([1], dtype=np.int64))
            assert triton_client.infer("drivers", [keys]).as_numpy("predictions").shape == (1,)
            features_server.stop(grace=0)
            with pytest.raises(InferenceServerException) as err:
                triton_client.infer("drivers", [keys])
    assert err.value.status() == "StatusCode.UNAVAILABLE"
    message = err.value.message()
    assert "feature service 'driver_model'" in message and "retry" in message, message
    assert address not in message and "MODELYARD_URI" not in message, message
