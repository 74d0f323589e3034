"""`modelyard endpoints update|predict` against a real server and real scikit-learn models."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import modelyard
import modelyard.deployments
import modelyard.sklearn
from modelyard import Client
from modelyard.cli import app
from modelyard.entities.serving import (
    BatchingConfig,
    InferenceLogConfig,
    MissingFeaturePolicy,
    ServedModel,
)
from tests.cli.test_cli import run, runner

X = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 1.0], [2.0, 2.0, 0.0], [3.0, 1.0, 1.0]])
Y = np.array([0, 1, 0, 1])


@pytest.fixture
def uri(server) -> Iterator[str]:
    modelyard.set_tracking_uri(server.address)
    yield server.address
    modelyard.set_tracking_uri("127.0.0.1:1")


def register(name: str, input_example: object) -> None:
    """A model fitted on what its example shows: an array, or a table with its column names."""
    with modelyard.start_run():
        rows = (
            pd.DataFrame(X, columns=input_example.columns)
            if isinstance(input_example, pd.DataFrame)
            else X
        )
        model = LogisticRegression().fit(rows, Y)
        modelyard.sklearn.log_model(
            model, "model", input_example=input_example, registered_model_name=name
        )


def test_update_keeps_the_settings_it_is_not_given(uri: str) -> None:
    register("clf", X[:2])
    register("clf", X[:2])
    with Client(uri) as client:
        client.create_endpoint(
            "ep",
            [ServedModel("models:/clf/1", batching=BatchingConfig(max_batch_size=8))],
            InferenceLogConfig(enabled=True, sampling_rate=0.5),
            MissingFeaturePolicy.IMPUTE,
        )
    updated = json.loads(
        run("endpoints", "update", "ep", "--model", "models:/clf/1", "--uri", uri, "--json")
    )
    assert updated["inference_log"] == {"enabled": True, "sampling_rate": 0.5}
    assert updated["missing_features"] == "IMPUTE"
    assert updated["served_models"][0]["batching"]["max_batch_size"] == 8
    # What is given is replaced; a model new to the endpoint gets the default batch size.
    changed = json.loads(
        run(
            "endpoints", "update", "ep", "--model", "models:/clf/2", "--log-sampling", "0.25",
            "--missing-features", "fail", "--uri", uri, "--json",
        )
    )  # fmt: skip
    assert changed["inference_log"] == {"enabled": True, "sampling_rate": 0.25}
    assert changed["missing_features"] == "FAIL"
    assert changed["served_models"][0]["batching"]["max_batch_size"] == 64
    resized = json.loads(
        run(
            "endpoints", "update", "ep", "--model", "models:/clf/2", "--max-batch", "4",
            "--uri", uri, "--json",
        )
    )  # fmt: skip
    assert resized["served_models"][0]["batching"]["max_batch_size"] == 4
    assert resized["inference_log"]["sampling_rate"] == 0.25


@pytest.mark.parametrize(
    ("example", "data"),
    [
        (X[:2], "csv"),  # a model that takes one array: the rows go as that one tensor
        (pd.DataFrame(X[:2], columns=["a", "b", "c"]), "json"),  # a table: one tensor a column
    ],
)
def test_predict_sends_what_the_model_takes(
    uri: str, tmp_path: Path, example: object, data: str
) -> None:
    register("clf", example)
    with Client(uri) as client:
        client.create_endpoint("ep", [ServedModel("models:/clf/1")])
        client.wait_endpoint_ready("ep")
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    path = tmp_path / f"rows.{data}"
    if data == "csv":
        frame.to_csv(path, index=False)
    else:
        path.write_text(frame.to_json(orient="records"))
    predicted = json.loads(
        run("endpoints", "predict", "ep", "--data", str(path), "--uri", uri, "--json")
    )
    expected = LogisticRegression().fit(X, Y).predict(X)
    [values] = predicted.values()
    assert np.asarray(values).reshape(-1).tolist() == expected.tolist()
    # The SDK given the frame sends it as the CLI does (it sent one tensor a column, which a
    # model that takes one array refused).
    with Client(uri) as client:
        [answer] = client.predict("ep", frame).values()
    assert answer.reshape(-1).tolist() == expected.tolist()
    [answer] = modelyard.deployments.predict("ep", frame).values()
    assert answer.reshape(-1).tolist() == expected.tolist()


def test_delete_with_json_prints_what_it_deleted(uri: str) -> None:
    register("gone", X[:2])
    with Client(uri) as client:
        client.create_endpoint("ep-gone", [ServedModel("models:/gone/1")])
    deleted = json.loads(run("endpoints", "delete", "ep-gone", "--uri", uri, "--json"))
    assert deleted == {"name": "ep-gone", "deleted": True}
    with Client(uri) as client:
        assert "ep-gone" not in [e.name for e in client.list_endpoints()]


def test_an_explicit_zero_share_is_kept(uri: str) -> None:
    """`URI=0` is a model that gets no traffic unless asked for by name; it once got half."""
    register("clf", X[:2])
    register("clf", X[:2])
    created = json.loads(
        run(
            "endpoints", "create", "ep", "--model", "models:/clf/1", "--model", "models:/clf/2=0",
            "--uri", uri, "--json",
        )
    )  # fmt: skip
    assert [s["traffic_percent"] for s in created["served_models"]] == [100, 0]
    register("clf", X[:2])
    split = json.loads(
        run(
            "endpoints", "update", "ep", "--model", "models:/clf/1=0", "--model", "models:/clf/2",
            "--model", "models:/clf/3", "--uri", uri, "--json",
        )
    )  # fmt: skip
    assert [s["traffic_percent"] for s in split["served_models"]] == [0, 50, 50]


@pytest.mark.parametrize("command", ["create", "update"])
def test_a_batch_size_below_one_is_refused(uri: str, command: str) -> None:
    """0 used to be sent, and the server read it as the default 64: batching on, not off."""
    register("clf", X[:2])
    if command == "update":
        with Client(uri) as client:
            client.create_endpoint("ep", [ServedModel("models:/clf/1")])
    result = runner.invoke(
        app,
        ["endpoints", command, "ep", "--model", "models:/clf/1", "--max-batch", "0", "--uri", uri],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 2, result.output
    assert "--max-batch" in result.output and "1" in result.output, result.output
    with Client(uri) as client:
        endpoints = client.list_endpoints()
    assert all(s.batching.max_batch_size == 64 for e in endpoints for s in e.served_models)


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("scalar.json", "5", "holds no table"),
        ("record.json", '{"a": 1}', "holds no table"),
        ("empty.csv", "", "holds no table"),
        ("bad.json", "{", "is not JSON"),
    ],
)
def test_predict_refuses_a_file_that_holds_no_table(
    uri: str, tmp_path: Path, name: str, content: str, problem: str
) -> None:
    """Such files used to end in "unexpected ValueError ... This is a bug"."""
    path = tmp_path / name
    path.write_text(content)
    result = runner.invoke(
        app, ["endpoints", "predict", "ep", "--data", str(path), "--uri", uri],
        env={"COLUMNS": "400"},
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert "This is a bug" not in output, output
    assert problem in output and "header row" in output and "records" in output, output
