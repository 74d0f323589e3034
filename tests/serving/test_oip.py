"""Open Inference Protocol compatibility, driven by the real tritonclient.grpc."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from prometheus_client import REGISTRY
from sklearn.linear_model import LinearRegression, LogisticRegression
from tritonclient.utils import InferenceServerException

import modelyard
from modelyard import Client
from modelyard._gen.inference import grpc_predict_v2_pb2 as oip
from modelyard._gen.inference import grpc_predict_v2_pb2_grpc
from modelyard.entities.serving import ServedModel, ServedModelState
from modelyard.errors import FailedPrecondition, NoServer, Unavailable
from modelyard.services.common.settings import ServingSettings, Settings
from tests.conftest import running_server
from tests.serving.conftest import register, serve, wait_ready


@pytest.fixture
def served(platform, iris, two_versions):
    server, client = platform
    client.create_endpoint("iris", [ServedModel("models:/iris/1")])
    wait_ready(client, "iris")
    with triton.InferenceServerClient(server.address) as tc:
        yield tc, client, two_versions[0]


def test_server_and_model_metadata(served) -> None:
    tc, _client, _model = served
    assert tc.is_server_live() and tc.is_server_ready()
    assert tc.is_model_ready("iris")
    meta = tc.get_model_metadata("iris")
    assert meta.name == "iris" and meta.versions == ["1"] and meta.platform == "modelyard_sklearn"
    assert [(i.name, i.datatype, list(i.shape)) for i in meta.inputs] == [
        (c, "FP64", [-1]) for c in ("sepal_length", "sepal_width", "petal_length", "petal_width")
    ]
    assert [(o.name, o.datatype) for o in meta.outputs] == [("predictions", "INT64")]
    assert tc.get_server_metadata().name == "modelyard"
    index = tc.get_model_repository_index()
    assert [(m.name, m.version, m.state) for m in index.models] == [("iris", "1", "READY")]


def test_one_tensor_per_column_matches_predict(served, iris) -> None:
    tc, _client, model = served
    X, _y = iris
    inputs = []
    for column in X.columns:
        tensor = triton.InferInput(column, [len(X)], "FP64")
        tensor.set_data_from_numpy(X[column].to_numpy())
        inputs.append(tensor)
    result = tc.infer("iris", inputs, request_id="r-1")
    assert np.array_equal(result.as_numpy("predictions"), model.predict(X))
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == ("iris", "1", "r-1")


def test_single_2d_tensor_typed_contents_and_raw(served, iris) -> None:
    tc, _client, model = served
    X, _y = iris
    array = X.to_numpy()
    tensor = triton.InferInput("features", list(array.shape), "FP64")
    tensor.set_data_from_numpy(array)  # raw_input_contents (tritonclient's default)
    raw = tc.infer("iris", [tensor])
    assert np.array_equal(raw.as_numpy("predictions"), model.predict(X))
    # Typed contents: build the request the way KServe's clients can.
    from modelyard._gen.inference import grpc_predict_v2_pb2 as oip

    request = oip.ModelInferRequest(model_name="iris")
    typed = request.inputs.add(name="features", datatype="FP64", shape=list(array.shape))
    typed.contents.fp64_contents.extend(array.reshape(-1).tolist())
    response = _client_infer(served[1], request)
    assert list(response.outputs[0].contents.int64_contents) == model.predict(X).tolist()
    assert not response.raw_output_contents


def _client_infer(client, request):
    return client._t.call(client._inference.ModelInfer, request)


def test_safe_widening_and_fp16_raw(served, iris) -> None:
    tc, _client, model = served
    X, _y = iris
    array = X.to_numpy().astype(np.float32)
    tensor = triton.InferInput("features", list(array.shape), "FP32")
    tensor.set_data_from_numpy(array)
    assert np.array_equal(
        tc.infer("iris", [tensor]).as_numpy("predictions"), model.predict(X.astype(np.float32))
    )
    half = X.to_numpy().astype(np.float16)
    tensor = triton.InferInput("features", list(half.shape), "FP16")
    tensor.set_data_from_numpy(half)
    assert tc.infer("iris", [tensor]).as_numpy("predictions").shape == (len(X),)


def test_bf16_and_bytes_and_tensor_models(platform) -> None:
    """A tensor-signature model takes BF16 (raw only); a string model takes BYTES."""
    import pandas as pd
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.pipeline import make_pipeline

    server, client = platform
    X = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    register(LinearRegression().fit(X, X.sum(axis=1)), X, "tensor")
    texts = pd.DataFrame({"text": ["good film", "bad film", "great plot", "awful acting"] * 5})
    labels = np.array(["pos", "neg", "pos", "neg"] * 5)
    text_model = make_pipeline(CountVectorizer(), MultinomialNB()).fit(texts["text"], labels)
    register(_Column(text_model), texts, "text")
    client.create_endpoint("tensor", [ServedModel("models:/tensor/1")])
    client.create_endpoint("text", [ServedModel("models:/text/1")])
    wait_ready(client, "tensor")
    wait_ready(client, "text")
    with triton.InferenceServerClient(server.address) as tc:
        rows = X[:4]
        bf16 = (rows.view(np.uint32) >> 16).astype(np.uint16)  # truncate to bfloat16 bits
        tensor = triton.InferInput("input", [4, 3], "BF16")
        tensor._raw_content = bf16.tobytes()  # tritonclient has no numpy bfloat16 helper
        tensor._input.ClearField("contents")
        out = tc.infer("tensor", [tensor]).as_numpy("predictions")
        widened = (bf16.astype(np.uint32) << 16).view(np.float32)
        assert np.allclose(out, widened.sum(axis=1), atol=1e-3)
        with pytest.raises(InferenceServerException, match="raw_input_contents"):
            bad = triton.InferInput("input", [1, 3], "BF16")
            bad._input.contents.fp32_contents.extend([1.0, 2.0, 3.0])
            tc.infer("tensor", [bad])
        words = triton.InferInput("text", [2], "BYTES")
        words.set_data_from_numpy(np.array([b"good plot", b"awful film"], dtype=object))
        result = tc.infer("text", [words]).as_numpy("predictions")
        assert [v.decode() if isinstance(v, bytes) else v for v in result] == ["pos", "neg"]


def test_a_float64_tensor_model_refuses_values_a_cast_would_change(platform) -> None:
    """numpy's "safe" cast took BOOL as numbers and rounded UINT64 / INT64 beyond 2**53, with
    an answer as if all were well; Triton refuses them naming the input. Exact integers widen."""
    server, client = platform
    X = np.random.default_rng(0).normal(size=(20, 3))
    model = LinearRegression().fit(X, X.sum(axis=1))
    serve(client, model, X, "f64")
    with triton.InferenceServerClient(server.address) as tc:
        for datatype, array in (
            ("BOOL", np.ones((1, 3), dtype=bool)),
            ("UINT64", np.array([[2**63 + 1, 1, 1]], dtype=np.uint64)),
            ("INT64", np.array([[2**53 + 1, 1, 1]], dtype=np.int64)),
        ):
            tensor = triton.InferInput("input", [1, 3], datatype)
            tensor.set_data_from_numpy(array)
            with pytest.raises(InferenceServerException) as refused:
                tc.infer("f64", [tensor])
            assert refused.value.status() == "StatusCode.INVALID_ARGUMENT", datatype
            assert "'input'" in refused.value.message() and "float64" in refused.value.message()
        for datatype, array in (
            ("INT32", np.array([[1, 2, 3]], dtype=np.int32)),
            ("INT64", np.array([[2**53, -(2**53), 7]], dtype=np.int64)),
        ):
            tensor = triton.InferInput("input", [1, 3], datatype)
            tensor.set_data_from_numpy(array)
            out = tc.infer("f64", [tensor]).as_numpy("predictions")
            assert np.array_equal(out, model.predict(array.astype(np.float64))), datatype


def test_a_double_column_refuses_integers_float64_would_round(served, iris) -> None:
    """An INT64 or UINT64 column beyond 2**53 was widened to double, rounded, and answered;
    integers float64 holds exactly still widen."""
    tc, _client, model = served
    X, _y = iris

    def columns(first: np.ndarray, datatype: str) -> list[triton.InferInput]:
        inputs = []
        for i, column in enumerate(X.columns):
            values = first if i == 0 else X[column].to_numpy()[:1]
            tensor = triton.InferInput(column, [1], datatype if i == 0 else "FP64")
            tensor.set_data_from_numpy(values)
            inputs.append(tensor)
        return inputs

    for datatype, big in (("INT64", np.int64(2**53 + 1)), ("UINT64", np.uint64(2**63 + 1))):
        with pytest.raises(InferenceServerException) as refused:
            tc.infer("iris", columns(np.array([big]), datatype))
        assert refused.value.status() == "StatusCode.INVALID_ARGUMENT", datatype
        assert "'sepal_length'" in refused.value.message() and "2**53" in refused.value.message()
    out = tc.infer("iris", columns(np.array([5], dtype=np.int64), "INT64"))
    exact = X[:1].assign(sepal_length=5.0)
    assert np.array_equal(out.as_numpy("predictions"), model.predict(exact))


def test_a_tensor_model_refuses_an_input_it_does_not_have(platform) -> None:
    """A tensor under any name was served as the model's input; Triton refuses an unexpected
    input naming it. The metadata's name, and the SDK's and MLflow's array names, still serve."""
    server, client = platform
    X = np.random.default_rng(0).normal(size=(20, 3))
    model = LinearRegression().fit(X, X.sum(axis=1))
    serve(client, model, X, "f64")
    with triton.InferenceServerClient(server.address) as tc:
        tensor = triton.InferInput("wrong", [1, 3], "FP64")
        tensor.set_data_from_numpy(X[:1])
        with pytest.raises(InferenceServerException) as refused:
            tc.infer("f64", [tensor])
        assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
        message = refused.value.message()
        assert "'wrong'" in message and "'input'" in message and "FP64" in message
    expected = model.predict(X[:2])
    assert np.allclose(client.predict("f64", X[:2])["predictions"], expected)
    for payload in ({"inputs": X[:2]}, {"instances": X[:2]}):
        assert np.allclose(client.predict("f64", payload)["predictions"], expected)


class _Column:
    """A text pipeline taking a one-column DataFrame (sklearn pipelines want the column)."""

    def __init__(self, pipeline) -> None:
        self.pipeline = pipeline

    def predict(self, frame):
        column = frame["text"] if hasattr(frame, "columns") else frame[:, 0]
        return self.pipeline.predict(column)


def test_bad_tensors_get_clear_statuses(served) -> None:
    tc, _client, _model = served

    def infer(name, inputs):
        with pytest.raises(InferenceServerException) as err:
            tc.infer(name, inputs)
        return err.value

    wrong_shape = triton.InferInput("features", [2, 3], "FP64")
    wrong_shape.set_data_from_numpy(np.ones((2, 3)))
    err = infer("iris", [wrong_shape])
    assert err.status() == "StatusCode.INVALID_ARGUMENT" and "[rows, 4]" in err.message()
    wrong_type = triton.InferInput("features", [1, 4], "BYTES")
    wrong_type.set_data_from_numpy(np.array([[b"a", b"b", b"c", b"d"]], dtype=object))
    err = infer("iris", [wrong_type])
    assert err.status() == "StatusCode.INVALID_ARGUMENT" and "type" in err.message()
    missing = triton.InferInput("sepal_length", [1], "FP64")
    missing.set_data_from_numpy(np.ones(1))
    other = triton.InferInput("petal_width", [1], "FP64")
    other.set_data_from_numpy(np.ones(1))
    err = infer("iris", [missing, other])
    assert err.status() == "StatusCode.INVALID_ARGUMENT" and "sepal_width" in err.message()
    mismatch = triton.InferInput("features", [2, 4], "FP64")
    mismatch._raw_content = b"\x00" * 10
    mismatch._input.ClearField("contents")
    err = infer("iris", [mismatch])
    assert err.status() == "StatusCode.INVALID_ARGUMENT" and "raw bytes" in err.message()
    unknown_type = triton.InferInput("features", [1, 4], "FP8")
    unknown_type._raw_content = b"\x00" * 4
    err = infer("iris", [unknown_type])
    assert err.status() == "StatusCode.INVALID_ARGUMENT" and "datatype" in err.message()
    ok = triton.InferInput("features", [1, 4], "FP64")
    ok.set_data_from_numpy(np.ones((1, 4)))
    err = infer("nope", [ok])
    assert err.status() == "StatusCode.NOT_FOUND" and "nope" in err.message()


def test_repository_unload_and_load(served) -> None:
    tc, _client, _model = served
    tc.unload_model("iris")
    assert not tc.is_model_ready("iris")
    tensor = triton.InferInput("features", [1, 4], "FP64")
    tensor.set_data_from_numpy(np.ones((1, 4)))
    with pytest.raises(InferenceServerException, match=r"UNAVAILABLE.*unloaded on request"):
        tc.infer("iris", [tensor])
    # It was told to "retry shortly", which never helps an unloaded model: say to load it.
    for call in (
        lambda: tc.infer("iris", [tensor]),
        lambda: tc.get_model_metadata("iris"),
        lambda: tc.get_model_metadata("iris", "iris-1"),
    ):
        with pytest.raises(InferenceServerException) as unloaded:
            call()
        assert "retry" not in unloaded.value.message()
        assert "load it again (RepositoryModelLoad, tritonclient's load_model)" in str(
            unloaded.value.message()
        )
    # Triton's load overrides were ignored while the load said it succeeded: refused, and
    # the model stays unloaded.
    for override in (
        {"config": '{"max_batch_size": 8}'},
        {"files": {"file:1/model.onnx": b"\x00"}, "config": "{}"},
    ):
        with pytest.raises(InferenceServerException) as refused:
            tc.load_model("iris", **override)
        assert refused.value.status() == "StatusCode.UNIMPLEMENTED"
        assert "UpdateEndpoint" in refused.value.message()
        assert not tc.is_model_ready("iris")
    tc.load_model("iris")
    assert tc.is_model_ready("iris")
    assert tc.infer("iris", [tensor]).as_numpy("predictions").shape == (1,)


def test_a_named_model_repository_is_refused_as_tritons_is(served, platform) -> None:
    """A RepositoryIndex, load or unload naming a repository was answered as if the endpoints
    were that repository's (an unload naming another repository unloaded the endpoint).
    Triton refuses a repository_name ("'repository_name' specification is not supported");
    so does serving, saying to leave it empty, and the endpoint goes on serving."""
    tc, _client, _model = served
    server, _client = platform
    with grpc.insecure_channel(server.address) as channel:
        stub = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)
        for call, request in (
            (stub.RepositoryIndex, oip.RepositoryIndexRequest(repository_name="other")),
            (
                stub.RepositoryModelUnload,
                oip.RepositoryModelUnloadRequest(repository_name="other", model_name="iris"),
            ),
            (
                stub.RepositoryModelLoad,
                oip.RepositoryModelLoadRequest(repository_name="other", model_name="iris"),
            ),
        ):
            with pytest.raises(grpc.RpcError) as refused:
                call(request, timeout=30)
            assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
            assert "repository_name 'other'" in refused.value.details()
            assert "leave repository_name empty" in refused.value.details()
    assert tc.is_model_ready("iris")
    index = tc.get_model_repository_index()
    assert [(m.name, m.state) for m in index.models] == [("iris", "READY")]


def test_an_unloaded_endpoint_says_so_and_is_not_waited_for(served) -> None:
    """An endpoint unloaded on request showed as LOADING, so wait_endpoint_ready waited its whole
    timeout (300 s by default) for a load nobody had asked for. It is UNLOADED, and the wait
    says so at once."""
    tc, client, _model = served
    tc.unload_model("iris")
    (unloaded,) = client.get_endpoint("iris").served_models
    assert (unloaded.state, unloaded.reason) == (ServedModelState.UNLOADED, "unloaded on request")
    with pytest.raises(FailedPrecondition, match=r"unloaded on request.*load_model"):
        client.wait_endpoint_ready("iris", timeout=120)
    tc.load_model("iris")
    (loaded,) = client.wait_endpoint_ready("iris", timeout=120).served_models
    assert loaded.state == ServedModelState.READY


def test_the_sdk_is_told_an_endpoint_is_unloaded_at_once(served) -> None:
    """The SDK's channel retries UNAVAILABLE, meant for a server not there yet, and retried an
    unloaded endpoint's own answer four more times (about 2 s) before saying it. The server's
    answer now stops grpc's retries: one call, one request served."""
    tc, client, _model = served
    tc.unload_model("iris")
    labels = {
        "service": "inference.GRPCInferenceService",
        "method": "ModelInfer",
        "code": "UNAVAILABLE",
    }
    before = REGISTRY.get_sample_value("modelyard_rpc_requests_total", labels) or 0
    with pytest.raises(Unavailable, match="unloaded on request") as refused:
        client.predict("iris", np.ones((1, 4)))
    assert not isinstance(refused.value, NoServer)
    assert REGISTRY.get_sample_value("modelyard_rpc_requests_total", labels) == before + 1


def test_an_unloaded_model_stays_unloaded_until_a_load_is_asked_for(tmp_path: Path, iris) -> None:
    """A registry event on the model (here an alias move another endpoint follows) once loaded
    an unloaded endpoint again. One load worker runs loads in the order the event asked for
    them, so once the follower serves version 2 the unloaded endpoint's turn has passed."""
    X, y = iris
    settings = Settings(
        home=tmp_path, port=0, grace_period=0, serving=ServingSettings(load_workers=1)
    )
    with (
        running_server(settings) as server,
        Client(server.address) as client,
        triton.InferenceServerClient(server.address) as tc,
    ):
        modelyard.set_tracking_uri(server.address)
        for c in (0.01, 100):
            register(LogisticRegression(max_iter=500, C=c).fit(X, y), X, "iris")
        modelyard.set_tracking_uri("127.0.0.1:1")
        client.set_registered_model_alias("iris", "champion", 1)
        client.create_endpoint("pinned", [ServedModel("models:/iris/1")])
        client.create_endpoint("follower", [ServedModel("models:/iris@champion")])
        wait_ready(client, "pinned")
        wait_ready(client, "follower", version=1)
        tc.unload_model("pinned")
        client.set_registered_model_alias("iris", "champion", 2)
        wait_ready(client, "follower", version=2)
        assert not tc.is_model_ready("pinned")
        (served,) = client.get_endpoint("pinned").served_models
        assert served.version == 0 and served.reason == "unloaded on request", served
        tc.load_model("pinned")
        assert tc.is_model_ready("pinned")


def test_reflection_resolves_the_inference_service(platform) -> None:
    """A reflection client (what grpcurl uses) lists the OIP service and resolves its methods and
    messages, although their descriptors live in a private pool."""
    import grpc
    from google.protobuf.descriptor_pool import DescriptorPool
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    server, _client = platform
    with grpc.insecure_channel(server.address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        assert {"inference.GRPCInferenceService", "modelyard.serving.v1.ServingService"} <= set(
            database.get_services()
        )
        # Modelyard's own file, not tritonclient's copy of the protocol (also loaded here).
        served = database.FindFileContainingSymbol("inference.GRPCInferenceService")
        assert served.name == "inference/grpc_predict_v2.proto"
        pool = DescriptorPool(database)
        infer = pool.FindServiceByName("inference.GRPCInferenceService").FindMethodByName(
            "ModelInfer"
        )
        assert infer.input_type.full_name == "inference.ModelInferRequest"
        assert "raw_input_contents" in infer.input_type.fields_by_name
        serving = pool.FindServiceByName("modelyard.serving.v1.ServingService")
        assert serving.FindMethodByName("CreateEndpoint") is not None
        with pytest.raises(KeyError):
            pool.FindServiceByName("inference.NoSuchService")
