"""Endpoints: traffic split, hot reload without failures, broken versions, batching, the
inference log and metrics."""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as triton
from prometheus_client import REGISTRY
from tritonclient.utils import InferenceServerException

import modelyard.deployments
from modelyard._gen.serving.v1 import serving_pb2
from modelyard.entities.serving import (
    BatchingConfig,
    Endpoint,
    InferenceLogConfig,
    ServedModel,
    ServedModelState,
)
from modelyard.errors import FailedPrecondition, InvalidArgument, NotFound
from tests.serving import models
from tests.serving.conftest import logged, register, wait_ready


def test_validation(platform, two_versions) -> None:
    _server, client = platform
    cases = {
        "endpoint.name": ("Bad_Name", [ServedModel("models:/iris/1")]),
        "endpoint.served_models[0].model_uri": ("e1", [ServedModel("runs:/abc/model")]),
        "endpoint.served_models.traffic_percent": ("e2", [ServedModel("models:/iris/1", 50)]),
        "endpoint.served_models.name": (
            "e3",
            [ServedModel("models:/iris/1", 50), ServedModel("models:/iris/1", 50)],
        ),
        "endpoint.served_models": ("e4", []),
    }
    for field, (name, served) in cases.items():
        with pytest.raises(InvalidArgument) as err:
            client.create_endpoint(name, served)
        assert err.value.field == field, err.value
    with pytest.raises(NotFound):
        client.create_endpoint("e5", [ServedModel("models:/missing/1")])


def test_served_models_may_be_model_uris_as_mlflow_users_write_them(platform, two_versions):
    """create_endpoint("e", "models:/iris/1") raised a bare AttributeError ('str' object has no
    attribute 'model_uri'); URIs are taken as the CLI's --model takes them, and what is neither
    a URI nor a ServedModel is refused naming the argument."""
    _server, client = platform
    one = client.create_endpoint("one", "models:/iris/1")
    assert [(s.model_uri, s.traffic_percent) for s in one.served_models] == [
        ("models:/iris/1", 100)
    ]
    split = client.create_endpoint(
        "split", ["models:/iris/1=90", "models:/iris/2"], missing_features="impute"
    )
    assert [(s.model_uri, s.traffic_percent) for s in split.served_models] == [
        ("models:/iris/1", 90),
        ("models:/iris/2", 10),
    ]
    assert split.missing_features == "IMPUTE"
    mixed = client.update_endpoint("one", [ServedModel("models:/iris/2", 50), "models:/iris/1"])
    assert [(s.model_uri, s.traffic_percent) for s in mixed.served_models] == [
        ("models:/iris/2", 50),
        ("models:/iris/1", 50),
    ]
    wait_ready(client, "one")
    wait_ready(client, "split")
    refused: dict[str, dict[str, Any]] = {
        "served_models": dict(served_models=42),
        "served_models[1]": dict(served_models=["models:/iris/1", 3]),
        # It was taken for a URI "models:/iris/1=half", refused as an invalid served model name.
        "served_models[0]": dict(served_models=["models:/iris/1=half", "models:/iris/2"]),
        "missing_features": dict(served_models="models:/iris/1", missing_features="skip"),
        "inference_log": dict(served_models="models:/iris/1", inference_log=True),
    }
    for field, kwargs in refused.items():
        with pytest.raises(InvalidArgument) as err:
            client.create_endpoint("bad", **kwargs)
        assert err.value.field == field, err.value
        assert field in err.value.message


def test_waiting_for_an_endpoint_that_is_deleted_says_so(platform, two_versions, monkeypatch):
    """wait_endpoint_ready on an endpoint deleted meanwhile raised at once that it "was not
    ready within 60s"."""
    _server, client = platform
    client.create_endpoint("gone", "models:/iris/1")
    watching = threading.Event()
    watch = client.watch_endpoint

    def watched(name: str, timeout: float | None = None) -> Iterator[Endpoint]:
        for endpoint in watch(name, timeout):
            watching.set()
            yield endpoint

    monkeypatch.setattr(client, "watch_endpoint", watched)
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            client.wait_endpoint_ready("gone", version=99, timeout=60)  # never at version 99
        except BaseException as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    assert watching.wait(60)
    client.delete_endpoint("gone")
    waiter.join(60)
    (error,) = outcome
    assert isinstance(error, NotFound), error
    assert "deleted while waiting" in error.message


def test_waiting_for_a_version_a_pinned_endpoint_never_serves_says_so(platform, two_versions):
    """wait_endpoint_ready("pinned", version=2) on an endpoint pinned to models:/iris/1 waited
    out the whole timeout: that version never comes."""
    _server, client = platform
    client.create_endpoint("pinned", "models:/iris/1")
    wait_ready(client, "pinned", version=1)
    with pytest.raises(FailedPrecondition, match=r"serves models:/iris/1 \(version 1\)"):
        client.wait_endpoint_ready("pinned", version=2, timeout=60)
    client.update_endpoint("pinned", "models:/iris/2")
    assert client.wait_endpoint_ready("pinned", version=2).served_models[0].version == 2


def test_traffic_split_90_10(platform, iris, two_versions) -> None:
    _server, client = platform
    X, _y = iris
    client.create_endpoint(
        "split", [ServedModel("models:/iris/1", 90), ServedModel("models:/iris/2", 10)]
    )
    wait_ready(client, "split")
    from modelyard._gen.inference import grpc_predict_v2_pb2 as oip

    row = X.head(1).to_numpy()
    answered: Counter[str] = Counter()
    for i in range(1000):
        request = oip.ModelInferRequest(model_name="split", id=f"req-{i}")
        t = request.inputs.add(name="x", datatype="FP64", shape=[1, 4])
        t.contents.fp64_contents.extend(row.reshape(-1).tolist())
        answered[client._t.call(client._inference.ModelInfer, request).model_version] += 1
    assert set(answered) == {"1", "2"}
    assert 830 <= answered["1"] <= 970, answered  # 90% +- 7 points (binomial sd is ~1 point)
    # The same request id always lands on the same version.
    again = {
        client.predict("split", X.head(1), request_id="sticky")["predictions"][0] for _ in range(20)
    }
    assert len(again) == 1
    shadow = client.predict("split", X.head(5), served_model="iris-2")
    assert np.array_equal(shadow["predictions"], two_versions[1].predict(X.head(5)))


def test_alias_move_under_load_has_no_failures(platform, iris, two_versions) -> None:
    _server, client = platform
    X, _y = iris
    first, second = two_versions
    client.set_registered_model_alias("iris", "champion", 1)
    client.create_endpoint("live", [ServedModel("models:/iris@champion")])
    wait_ready(client, "live", version=1)
    stop = threading.Event()
    seen_versions: list[str] = []
    progress = threading.Condition()
    failures: list[BaseException] = []
    probe = X.head(20)

    def hammer() -> None:
        from modelyard._gen.inference import grpc_predict_v2_pb2 as oip

        while not stop.is_set():
            request = oip.ModelInferRequest(model_name="live")
            tensor = request.inputs.add(name="x", datatype="FP64", shape=[20, 4])
            tensor.contents.fp64_contents.extend(probe.to_numpy().reshape(-1).tolist())
            try:
                response = client._t.call(client._inference.ModelInfer, request)
            except BaseException as exc:
                failures.append(exc)
                continue
            version = response.model_version
            expected = (first if version == "1" else second).predict(probe)
            if list(response.outputs[0].contents.int64_contents) != expected.tolist():
                failures.append(AssertionError(f"version {version} answered wrongly"))
            with progress:
                seen_versions.append(version)
                progress.notify_all()

    def wait_for(count: int) -> None:
        with progress:
            assert progress.wait_for(lambda: len(seen_versions) >= count, timeout=60)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    wait_for(50)
    client.set_registered_model_alias("iris", "champion", 2)
    wait_ready(client, "live", version=2)
    wait_for(len(seen_versions) + 50)
    stop.set()
    for t in threads:
        t.join()
    assert failures == []
    assert seen_versions[0] == "1" and seen_versions[-1] == "2"


def test_watch_follows_loading_and_reports_failures(platform, iris, two_versions) -> None:
    _server, client = platform
    client.create_endpoint("watched", [ServedModel("models:/iris/1")])
    states = []
    for endpoint in client.watch_endpoint("watched", timeout=60):
        states.append(endpoint.served_models[0].state)
        if states[-1] == ServedModelState.READY:
            break
    assert states[-1] == ServedModelState.READY and set(states) <= {
        ServedModelState.LOADING,
        ServedModelState.READY,
    }
    # A model that cannot load: waiting ends at once with the reason, not at the timeout.
    stored = Path(client.get_model_version("iris", 2).storage_location.removeprefix("file://"))
    (stored / "model.pkl").write_bytes(b"corrupted")
    client.create_endpoint("doomed", [ServedModel("models:/iris/2")])
    with pytest.raises(FailedPrecondition) as err:
        client.wait_endpoint_ready("doomed", timeout=60)
    assert "sha256" in str(err.value) and err.value.resource_name == "doomed"
    # Deleting ends a watch.
    watch = client.watch_endpoint("watched", timeout=60)
    next(watch)
    client.delete_endpoint("watched")
    assert list(watch) == []


def test_broken_version_leaves_the_old_one_serving(
    platform, iris, two_versions, tmp_path: Path
) -> None:
    server, client = platform
    X, _y = iris
    client.set_registered_model_alias("iris", "champion", 1)
    client.create_endpoint("guarded", [ServedModel("models:/iris@champion")])
    wait_ready(client, "guarded", version=1)
    # Corrupt version 2's stored model file (as a disk fault or tampering would).
    stored = Path(client.get_model_version("iris", 2).storage_location.removeprefix("file://"))
    (stored / "model.pkl").write_bytes(b"corrupted")
    client.set_registered_model_alias("iris", "champion", 2)
    served = next(
        e.served_models[0]
        for e in client.watch_endpoint("guarded", timeout=30)
        if e.served_models[0].reason
    )
    assert "sha256" in served.reason and "version 2" in served.reason
    assert served.state == ServedModelState.READY and served.version == 1
    out = client.predict("guarded", X.head(3))
    assert np.array_equal(out["predictions"], two_versions[0].predict(X.head(3)))
    # Asked to load it now, the protocol's answer is the failure (Triton's), not OK.
    with (
        triton.InferenceServerClient(server.address) as tc,
        pytest.raises(InferenceServerException, match="version 1 goes on serving") as err,
    ):
        tc.load_model("guarded")
    assert err.value.status() == "StatusCode.FAILED_PRECONDITION"


def test_a_model_whose_signature_has_no_batch_dimension_is_never_batched(platform) -> None:
    """A model whose signature fixes its first dimension (a sequence of 2 steps, not rows) was
    batched anyway, though its ModelConfig said max_batch_size 0: two queued requests ran as one
    sequence of 4, and the second got running totals that included the first's steps."""
    import modelyard
    import modelyard.sklearn
    from modelyard.models.signature import Signature, TensorSpec
    from tests.serving.conftest import wait_pending

    _server, client = platform
    steps = TensorSpec("float64", (2, 2))
    with modelyard.start_run():
        modelyard.sklearn.log_model(
            models.Running(),
            "model",
            input_example=np.ones((2, 2)),
            signature=Signature(inputs=(steps,), outputs=(TensorSpec("float64", (2,)),)),
            registered_model_name="running",
        )
    client.create_endpoint("running", "models:/running/1")
    wait_ready(client, "running")
    models.GATE.clear()
    models.ENTERED.clear()
    answers: dict[str, list[float]] = {}

    def call(key: str, first: float, second: float) -> None:
        sequence = np.array([[first, 0.0], [second, 0.0]])
        answers[key] = client.predict("running", sequence)["predictions"].tolist()

    threads = [threading.Thread(target=call, args=("held", -1.0, 1.0))]
    try:
        threads[0].start()
        assert models.ENTERED.wait(60)  # holds the model
        for key, first, second in (("a", 1.0, 2.0), ("b", 10.0, 20.0)):
            threads.append(threading.Thread(target=call, args=(key, first, second)))
            threads[-1].start()
        wait_pending(client, "running", 2)  # both wait: they would run as one batch
    finally:
        models.GATE.set()
        for thread in threads:
            thread.join(60)
    assert answers == {"held": [-1.0, 0.0], "a": [1.0, 3.0], "b": [10.0, 30.0]}


def test_batching_merges_concurrent_requests(platform, iris, two_versions) -> None:
    _server, client = platform
    X, _y = iris
    client.create_endpoint(
        "batched", [ServedModel("models:/iris/1", batching=BatchingConfig(64, 20_000))]
    )
    wait_ready(client, "batched")
    results: dict[int, np.ndarray] = {}

    def call(i: int) -> None:
        results[i] = client.predict("batched", X.iloc[i : i + 1])["predictions"]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = two_versions[0].predict(X.head(16))
    assert [results[i][0] for i in range(16)] == expected.tolist()
    count = REGISTRY.get_sample_value(
        "modelyard_serving_batch_size_count", {"endpoint": "batched", "served_model": "iris-1"}
    )
    rows = REGISTRY.get_sample_value(
        "modelyard_serving_batch_size_sum", {"endpoint": "batched", "served_model": "iris-1"}
    )
    assert rows == 16 and count is not None and count < 16  # fewer model calls than requests


def test_inference_log_and_metrics(platform, iris, two_versions) -> None:
    _server, client = platform
    X, _y = iris
    client.create_endpoint(
        "logged",
        [ServedModel("models:/iris/1")],
        InferenceLogConfig(enabled=True, sampling_rate=1.0),
    )
    wait_ready(client, "logged")
    for i in range(5):
        modelyard.deployments.predict("logged", X.iloc[i : i + 2], request_id=f"log-{i}")
    frame = client.get_inference_log("logged")
    assert list(frame["request_id"]) == [f"log-{i}" for i in range(5)]
    assert set(frame["model_version"]) == {1} and set(frame["status"]) == {"OK"}
    assert (frame["latency_ms"] > 0).all()
    import json

    first = json.loads(frame["inputs_json"][0])
    assert first["sepal_length"] == X["sepal_length"].iloc[0:2].tolist()
    assert (
        json.loads(frame["outputs_json"][0])["predictions"]
        == two_versions[0].predict(X.iloc[0:2]).tolist()
    )
    requests = REGISTRY.get_sample_value(
        "modelyard_serving_requests_total",
        {"endpoint": "logged", "served_model": "iris-1", "version": "1", "code": "OK"},
    )
    assert requests == 5


def test_ground_truth_joins_the_log(platform, iris, two_versions) -> None:
    _server, client = platform
    X, y = iris
    client.create_endpoint(
        "truth", [ServedModel("models:/iris/1")], InferenceLogConfig(enabled=True)
    )
    wait_ready(client, "truth")
    for i in range(4):
        modelyard.deployments.predict("truth", X.iloc[i : i + 1], request_id=f"t-{i}")
    assert client.log_ground_truth("truth", {"t-0": int(y[0]), "t-2": int(y[2])}) == 2
    assert client.log_ground_truth("truth", {"t-2": 2}) == 1  # a correction replaces the value
    frame = client.get_inference_log("truth")
    assert list(frame["ground_truth_json"]) == [str(y[0]), "", "2", ""]
    newest = client.get_inference_log("truth", max_results=2, newest_first=True)
    assert list(newest["request_id"]) == ["t-3", "t-2"]
    older = client.get_inference_log(
        "truth", since_record_id=int(newest["record_id"].iloc[-1]), newest_first=True
    )
    assert list(older["request_id"]) == ["t-1", "t-0"]
    with pytest.raises(InvalidArgument) as err:
        client._t.call(
            client._serving.LogGroundTruth,
            serving_pb2.LogGroundTruthRequest(
                endpoint="truth",
                ground_truth=[serving_pb2.GroundTruth(request_id="t-1", value_json="{oops")],
            ),
        )
    assert err.value.field == "ground_truth.value_json"
    # One id twice: with two values one was lost (and counted as recorded); with one, it is
    # recorded once.
    twice = [serving_pb2.GroundTruth(request_id="t-1", value_json=v) for v in ("0", "1")]
    with pytest.raises(InvalidArgument) as err:
        client._t.call(
            client._serving.LogGroundTruth,
            serving_pb2.LogGroundTruthRequest(endpoint="truth", ground_truth=twice),
        )
    assert err.value.field == "ground_truth[1].request_id" and "'t-1'" in err.value.message
    assert list(client.get_inference_log("truth")["ground_truth_json"])[1] == ""
    again = client._t.call(
        client._serving.LogGroundTruth,
        serving_pb2.LogGroundTruthRequest(endpoint="truth", ground_truth=[twice[1], twice[1]]),
    )
    assert again.recorded == 1
    assert list(client.get_inference_log("truth")["ground_truth_json"])[1] == "1"
    # Deleting the endpoint deletes what it logged: a new one of that name starts clean.
    client.delete_endpoint("truth")
    client.create_endpoint("truth", [ServedModel("models:/iris/1")])
    assert client.get_inference_log("truth").empty


def test_inference_log_drops_are_counted(tmp_path: Path) -> None:
    from modelyard.entities.serving import InferenceRecord
    from modelyard.services.serving.inference_log import InferenceLogWriter

    written: list[InferenceRecord] = []
    gate = threading.Event()

    def slow_sink(batch) -> None:
        gate.wait(10)
        written.extend(batch)

    writer = InferenceLogWriter(slow_sink, flush_seconds=60, max_pending=10)
    record = InferenceRecord(0, "r", 0, "busy", "m", 1, 1.0, "{}", "{}", "OK")
    for _ in range(25):
        writer.record(record)
    assert writer.dropped["busy"] == 15
    gate.set()
    writer.close()
    assert len(written) == 10


def test_inference_log_flush_waits_for_the_batch_being_written() -> None:
    """After flush() every record made before it is stored, also those of a batch the writer
    thread took just before and is still storing (the dashboard once read the log mid-write)."""
    from modelyard.entities.serving import InferenceRecord
    from modelyard.services.serving.inference_log import InferenceLogWriter

    written: list[InferenceRecord] = []
    in_flight = threading.Event()
    release = threading.Event()
    flushed = threading.Event()
    flushed_while_in_flight: list[bool] = []

    def sink(batch) -> None:
        if threading.current_thread().name == "modelyard-inference-log" and not in_flight.is_set():
            in_flight.set()
            release.wait(10)
            flushed_while_in_flight.append(flushed.is_set())
        written.extend(batch)

    writer = InferenceLogWriter(sink, flush_seconds=0.01)
    record = InferenceRecord(0, "r", 0, "ep", "m", 1, 1.0, "{}", "{}", "OK")
    for _ in range(3):
        writer.record(record)
    assert in_flight.wait(10)  # the writer thread is storing those three now
    writer.record(record)

    def flush() -> None:
        writer.flush()
        flushed.set()

    flusher = threading.Thread(target=flush)
    flusher.start()
    # A flush that does not wait for the batch in flight returns at once: give it that chance.
    flushed.wait(1)
    release.set()
    flusher.join(10)
    writer.close()
    assert flushed_while_in_flight == [False]
    assert len(written) == 4


def test_update_keeps_unchanged_models_loaded(platform, iris, two_versions) -> None:
    _server, client = platform
    client.create_endpoint("evolving", [ServedModel("models:/iris/1")])
    first = wait_ready(client, "evolving").served_models[0]
    updated = client.update_endpoint(
        "evolving", [ServedModel("models:/iris/1", 80), ServedModel("models:/iris/2", 20)]
    )
    kept = updated.served_models[0]
    assert kept.state == ServedModelState.READY and kept.loaded_time == first.loaded_time
    wait_ready(client, "evolving")
    client.delete_endpoint("evolving")
    with pytest.raises(NotFound):
        client.get_endpoint("evolving")


def test_ground_truth_for_a_request_never_logged_is_refused(platform, iris, two_versions) -> None:
    """Ground truth is only ever read joined to the inference log, yet it was stored for any
    request id: one never served (a typo, another endpoint's) was counted recorded and never
    seen again. A batch naming one is refused NOT_FOUND naming it, and none of it is written."""
    _server, client = platform
    X, _y = iris
    client.create_endpoint(
        "truth", [ServedModel("models:/iris/1")], InferenceLogConfig(enabled=True)
    )
    client.create_endpoint("quiet", [ServedModel("models:/iris/1")])
    for name in ("truth", "quiet"):
        wait_ready(client, name)
        modelyard.deployments.predict(name, X.iloc[0:1], request_id=f"{name}-0")
    with pytest.raises(NotFound) as refused:
        client.log_ground_truth("truth", {"truth-0": 1, "never": 2, "quiet-0": 0})
    assert refused.value.resource_name == "never"
    assert "'never', 'quiet-0' (nothing was recorded)" in refused.value.message
    assert "GetInferenceLog" in refused.value.message
    assert list(client.get_inference_log("truth")["ground_truth_json"]) == [""]
    assert client.log_ground_truth("truth", {"truth-0": 1}) == 1
    assert list(client.get_inference_log("truth")["ground_truth_json"]) == ["1"]
    with pytest.raises(NotFound, match="its inference log is disabled; enable it"):
        client.log_ground_truth("quiet", {"quiet-0": 1})


def test_ground_truth_for_a_sampled_log_records_the_ids_it_holds(platform, iris, two_versions):
    """An endpoint that logs a sample of its requests: a client sending ground truth for all of
    them asks skip_unlogged, gets the values of logged ids recorded and the others back."""
    _server, client = platform
    X, _y = iris
    client.create_endpoint(
        "sampled", [ServedModel("models:/iris/1")], InferenceLogConfig(enabled=True)
    )
    wait_ready(client, "sampled")
    modelyard.deployments.predict("sampled", X.iloc[0:1], request_id="kept")
    sent = {"gone-1": 0, "kept": 2, "gone-2": 1}
    with pytest.raises(NotFound, match="or set skip_unlogged to record the others"):
        client.log_ground_truth("sampled", sent)
    assert client.log_ground_truth("sampled", sent, skip_unlogged=True) == ["gone-1", "gone-2"]
    assert list(client.get_inference_log("sampled")["ground_truth_json"]) == ["2"]
    assert client.log_ground_truth("sampled", {"gone-3": 1}, skip_unlogged=True) == ["gone-3"]
    assert list(client.get_inference_log("sampled")["ground_truth_json"]) == ["2"]


@pytest.fixture
def slow_endpoint(platform) -> Iterator[tuple[ServedModel, Callable[[], list[float]]]]:
    """Endpoint "ep" on "slow" version 1 (two versions registered), loaded, then loads held
    until models.LOAD_GATE opens: its served model, and a tritonclient call of it."""
    server, client = platform
    models.LOAD_GATE.set()
    rows = pd.DataFrame({"a": [1.0, 2.0]})
    for value in (1.0, 2.0):
        register(models.SlowToLoad(value), rows, "slow")
    client.create_endpoint("ep", [ServedModel("models:/slow/1")])
    first = wait_ready(client, "ep").served_models[0]
    models.LOAD_GATE.clear()
    models.LOADING.clear()
    tensor = triton.InferInput("a", [2], "FP64")
    tensor.set_data_from_numpy(rows["a"].to_numpy())
    with triton.InferenceServerClient(server.address) as tc:

        def answer() -> list[float]:
            return tc.infer("ep", [tensor], client_timeout=30).as_numpy("predictions").tolist()

        try:
            yield first, answer
        finally:
            models.LOAD_GATE.set()  # never leave a load waiting


def test_an_update_of_batching_or_name_serves_the_loaded_model(platform, slow_endpoint) -> None:
    """Such an update used to load the model again, and callers got UNAVAILABLE meanwhile."""
    first, answer = slow_endpoint
    _server, client = platform
    for served in (
        ServedModel("models:/slow/1", batching=BatchingConfig(max_batch_size=8)),
        ServedModel("models:/slow/1", name="main", batching=BatchingConfig(max_batch_size=8)),
    ):
        (now,) = client.update_endpoint("ep", [served]).served_models
        assert now.state == ServedModelState.READY and now.version == 1, now
        assert now.loaded_time == first.loaded_time and now.name == (served.name or "slow-1")
        assert now.batching.max_batch_size == 8
        assert answer() == [1.0, 1.0]
    assert not models.LOADING.is_set(), "a batching or name change loaded the model again"


def test_an_update_to_another_version_answers_from_the_old_until_the_new_is_loaded(
    platform, slow_endpoint
) -> None:
    """Callers used to get UNAVAILABLE for the whole load of the new version, and ModelReady
    said not ready (a readiness probe on it took the pod out of service) though it answered."""
    _first, answer = slow_endpoint
    server, client = platform
    (loading,) = client.update_endpoint("ep", [ServedModel("models:/slow/2")]).served_models
    assert loading.state == ServedModelState.LOADING
    assert models.LOADING.wait(60)  # version 2 is being loaded, and held
    assert answer() == [1.0, 1.0]
    with triton.InferenceServerClient(server.address) as tc:
        assert tc.is_model_ready("ep")
    models.LOAD_GATE.set()
    wait_ready(client, "ep", version=2)
    assert answer() == [2.0, 2.0]


def test_a_model_uri_naming_no_stage_or_a_reserved_alias_is_refused_when_served(
    platform, two_versions
) -> None:
    """models:/iris/champion (an alias written as a stage) and models:/iris@v1 or @latest (names
    MLflow reserves for versions, which no alias may take) were taken as they came, and the
    endpoint then never loaded. They are refused at once, naming the URI's field."""
    _server, client = platform
    for uri in ("models:/iris/champion", "models:/iris@v1", "models:/iris@latest"):
        with pytest.raises(InvalidArgument) as err:
            client.create_endpoint("bad", uri)
        assert err.value.field == "endpoint.served_models[0].model_uri", err.value
        assert uri in err.value.message


def test_an_endpoint_unloaded_or_deleted_while_loading_is_so_at_once(
    platform, slow_endpoint, caplog: pytest.LogCaptureFixture
) -> None:
    """Unloading an endpoint whose model was loading waited for the load to end (held here, it
    timed out), and the load then served the model it had been told to drop. The unload (and a
    deletion) is answered at once and the endpoint is UNLOADED; the load, once it ends, is
    discarded (never READY, its model released), and a load asked for later serves."""
    server, client = platform
    with triton.InferenceServerClient(server.address) as tc:
        for name in ("fresh", "gone"):
            models.LOADING.clear()
            client.create_endpoint(name, [ServedModel("models:/slow/2")])
            assert models.LOADING.wait(60)  # its version 2 is being loaded, and held
        tc.unload_model("fresh", client_timeout=30)
        (unloaded,) = client.get_endpoint("fresh").served_models
        assert (unloaded.state, unloaded.version) == (ServedModelState.UNLOADED, 0)
        client.delete_endpoint("gone")
        with caplog.at_level(logging.INFO, logger="modelyard.services.serving.endpoints"):
            models.LOAD_GATE.set()
            deadline = time.monotonic() + 60
            while sum("discarded" in r.getMessage() for r in caplog.records) < 2:
                assert time.monotonic() < deadline, "the loads under way never ended"
                time.sleep(0.01)  # polling the server's log for the loads' end
        gc.collect()
        assert 2.0 not in [m.value for m in models.ALIVE], "a discarded model is still held"
        (still,) = client.get_endpoint("fresh").served_models
        assert (still.state, still.version) == (ServedModelState.UNLOADED, 0)
        tc.load_model("fresh")
    wait_ready(client, "fresh", version=2)
    assert client.predict("fresh", pd.DataFrame({"a": [1.0]}))["predictions"].tolist() == [2.0]


@pytest.mark.parametrize(
    "loading",
    [
        pytest.param([ServedModel("models:/slow/2")], id="replaced"),
        pytest.param(
            [
                ServedModel("models:/slow/1", traffic_percent=50),
                ServedModel("models:/slow/2", traffic_percent=50),
            ],
            id="removed",
        ),
    ],
)
def test_an_update_replacing_a_loading_model_discards_its_load(
    platform, slow_endpoint, loading: list[ServedModel]
) -> None:
    """An update that replaced a served model still loading (another URI, or none) let that
    load run on: it turned READY on a runtime no longer served (on the endpoint standing in
    while the new one loads, it could even answer) and held its model. It is discarded as an
    unload's is: never READY, its model released once the load ends."""
    _first, answer = slow_endpoint
    _server, client = platform
    client.update_endpoint("ep", loading)
    assert models.LOADING.wait(60)  # version 2 is being loaded, and held
    with logged("discarded slow version 2") as discarded, logged("serves slow version 2") as served:
        (now,) = client.update_endpoint("ep", [ServedModel("models:/slow/1")]).served_models
        models.LOAD_GATE.set()
        assert discarded.wait(60), "the replaced load was not discarded"
        assert wait_ready(client, "ep", version=1).served_models[0].name == now.name
        assert not served.is_set(), "the replaced load turned READY"
    gc.collect()
    assert 2.0 not in [m.value for m in models.ALIVE], "a discarded model is still held"
    assert answer() == [1.0, 1.0]
