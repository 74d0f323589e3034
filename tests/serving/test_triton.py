"""Triton's extensions to the protocol (statistics, model configuration, streaming), driven by
the real tritonclient.grpc, with authentication off and on."""

from __future__ import annotations

import base64
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import grpc
import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as triton
from pydantic import ValidationError
from sklearn.linear_model import LogisticRegression
from tritonclient.utils import InferenceServerException

import modelyard
import modelyard.sklearn
from modelyard import Client
from modelyard._gen.inference import grpc_predict_v2_pb2 as oip
from modelyard._gen.inference import grpc_predict_v2_pb2_grpc
from modelyard.entities.common import PermissionLevel
from modelyard.entities.serving import BatchingConfig, ServedModel
from tests.security.conftest import Secure, make_secure, secure  # noqa: F401
from tests.serving.conftest import register, serve, wait_pending, wait_ready


@pytest.fixture
def served(platform, iris, two_versions) -> Iterator[triton.InferenceServerClient]:
    server, client = platform
    client.create_endpoint("iris", [ServedModel("models:/iris/1")])
    wait_ready(client, "iris")
    with triton.InferenceServerClient(server.address) as tc:
        yield tc


def columns(X: pd.DataFrame) -> list[triton.InferInput]:
    """One FP64 tensor per column, as tritonclient sends them (raw)."""
    inputs = []
    for column in X.columns:
        tensor = triton.InferInput(column, [len(X)], "FP64")
        tensor.set_data_from_numpy(X[column].to_numpy())
        inputs.append(tensor)
    return inputs


def refusal(call: Callable[[], object]) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value


def _serve_gated(client: Client) -> None:
    """The Gated model served as endpoint "gated", with its gate shut and its records empty:
    each call it takes waits in the model until the test opens the gate."""
    from tests.serving import models

    serve(client, models.Gated(), pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]}), "gated")
    models.GATE.clear()
    models.ENTERED.clear()
    models.SEEN.clear()


def test_statistics_count_requests_rows_and_model_calls(served, iris) -> None:
    tc = served
    X, _y = iris
    before = tc.get_inference_statistics("iris").model_stats
    assert [(s.name, s.version, s.inference_count, s.execution_count) for s in before] == [
        ("iris", "1", 0, 0)
    ]
    assert before[0].last_inference == 0
    t0 = int(time.time() * 1000)
    tc.infer("iris", columns(X))
    tc.infer("iris", columns(X[:3]))
    bad = refusal(lambda: tc.infer("iris", columns(X.drop(columns="petal_width"))))
    assert bad.status() == "StatusCode.INVALID_ARGUMENT"
    t1 = int(time.time() * 1000)

    (stats,) = tc.get_inference_statistics("iris", "1").model_stats
    assert (stats.name, stats.version) == ("iris", "1")
    assert stats.inference_count == len(X) + 3  # rows of the successful requests
    assert stats.execution_count == 2
    assert t0 <= stats.last_inference <= t1
    infer = stats.inference_stats
    assert (infer.success.count, infer.fail.count) == (2, 1)
    assert infer.success.ns > 0 and infer.fail.ns > 0
    for phase in (infer.queue, infer.compute_input, infer.compute_infer, infer.compute_output):
        assert phase.count == 2
    assert 0 < infer.compute_infer.ns <= infer.success.ns
    assert (
        infer.queue.ns + infer.compute_input.ns + infer.compute_infer.ns + infer.compute_output.ns
        <= infer.success.ns
    )
    assert {b.batch_size: b.compute_infer.count for b in stats.batch_stats} == {3: 1, len(X): 1}

    everything = tc.get_inference_statistics().model_stats
    assert [(s.name, s.version, s.inference_count) for s in everything] == [
        ("iris", "1", len(X) + 3)
    ]
    as_json = tc.get_inference_statistics("iris", as_json=True)
    assert as_json["model_stats"][0]["inference_count"] == str(len(X) + 3)


def test_statistics_of_what_does_not_exist(served) -> None:
    tc = served
    missing = refusal(lambda: tc.get_inference_statistics("nope"))
    assert missing.status() == "StatusCode.NOT_FOUND" and "'nope'" in missing.message()
    version = refusal(lambda: tc.get_inference_statistics("iris", "7"))
    assert version.status() == "StatusCode.NOT_FOUND" and "'7'" in version.message()
    alone = refusal(lambda: tc.get_inference_statistics("", "1"))
    assert alone.status() == "StatusCode.INVALID_ARGUMENT" and "name" in alone.message()


def test_statistics_of_an_unloaded_model_are_refused_as_tritons_are(served) -> None:
    tc = served
    tc.unload_model("iris")
    for version in ("", "iris-1"):  # the endpoint, or its served model by name
        unloaded = refusal(partial(tc.get_inference_statistics, "iris", version))
        assert unloaded.status() == "StatusCode.UNAVAILABLE"
        assert "'iris'" in unloaded.message() and "unloaded on request" in unloaded.message()
        assert "load_model" in unloaded.message()
    assert tc.get_inference_statistics().model_stats == []  # unnamed: what is loaded, none
    tc.load_model("iris")
    (stats,) = tc.get_inference_statistics("iris").model_stats
    assert (stats.name, stats.version) == ("iris", "1")


def test_statistics_follow_the_served_version(served, platform, iris) -> None:
    tc = served
    _server, client = platform
    X, _y = iris
    tc.infer("iris", columns(X[:5]))
    client.update_endpoint("iris", [ServedModel("models:/iris/2")])
    wait_ready(client, "iris", 2)
    (fresh,) = tc.get_inference_statistics("iris").model_stats
    assert (fresh.version, fresh.inference_count) == ("2", 0)
    tc.infer("iris", columns(X[:4]))
    (after,) = tc.get_inference_statistics("iris").model_stats
    assert (after.version, after.inference_count, after.execution_count) == ("2", 4, 1)


@pytest.fixture
def guarded(secure: Secure, iris, monkeypatch) -> Iterator[tuple[Secure, dict[str, str]]]:  # noqa: F811
    """An endpoint 'iris' the admin made; a viewer with USE on it and one with no grant."""
    X, y = iris
    from sklearn.linear_model import LogisticRegression

    admin = secure.admin
    for name in ("user", "stranger"):
        admin.create_principal(name, ["viewer"])
    tokens = {n: admin.create_token(n, "test")[0] for n in ("user", "stranger")}
    monkeypatch.setenv("MODELYARD_TOKEN", secure.admin_token)
    modelyard.set_tracking_uri(secure.address)
    try:
        register(LogisticRegression(max_iter=500).fit(X, y), X, "iris")
        admin.create_endpoint("iris", [ServedModel("models:/iris/1")])
        admin.set_endpoint_permission("iris", "user", PermissionLevel.USE)
        wait_ready(admin, "iris")
        yield secure, tokens
    finally:
        modelyard.set_tracking_uri("127.0.0.1:1")


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_statistics_need_read_as_metadata_does(guarded) -> None:
    server, tokens = guarded
    with triton.InferenceServerClient(server.address) as tc:
        user, stranger = bearer(tokens["user"]), bearer(tokens["stranger"])
        assert [s.name for s in tc.get_inference_statistics(headers=user).model_stats] == ["iris"]
        assert tc.get_inference_statistics(headers=stranger).model_stats == []
        metadata = refusal(lambda: tc.get_model_metadata("iris", headers=stranger))
        refused = refusal(lambda: tc.get_inference_statistics("iris", headers=stranger))
        assert refused.status() == metadata.status() == "StatusCode.PERMISSION_DENIED"
        assert refused.message() == metadata.message()
        anonymous = refusal(lambda: tc.get_inference_statistics("iris"))
        assert anonymous.status() == "StatusCode.UNAUTHENTICATED"


def test_statistics_merge_served_models_of_one_version(platform, iris) -> None:
    server, client = platform
    X, y = iris
    from sklearn.linear_model import LogisticRegression

    register(LogisticRegression(max_iter=500).fit(X, y), X, "iris")
    client.set_registered_model_alias("iris", "champion", 1)
    client.create_endpoint(
        "iris",
        [
            ServedModel("models:/iris/1", traffic_percent=50),
            ServedModel("models:/iris@champion", traffic_percent=50),
        ],
    )
    wait_ready(client, "iris")
    with triton.InferenceServerClient(server.address) as tc:
        for i in range(6):
            tc.infer("iris", columns(X[:2]), request_id=f"r-{i}")
        (stats,) = tc.get_inference_statistics("iris").model_stats
        assert (stats.version, stats.inference_count) == ("1", 12)
        assert stats.inference_stats.success.count == 6
        assert np.sum([b.compute_infer.count for b in stats.batch_stats]) == 6


def test_model_config_describes_the_served_model(served) -> None:
    tc = served
    config = tc.get_model_config("iris").config
    assert (config.name, config.platform, config.backend) == (
        "iris",
        "modelyard_sklearn",
        "modelyard",
    )
    assert list(config.version_policy.specific.versions) == [1]
    assert config.max_batch_size == 64  # batching.max_batch_size's default
    assert config.dynamic_batching.max_queue_delay_microseconds == 0
    columns = ("sepal_length", "sepal_width", "petal_length", "petal_width")
    assert [(i.name, i.data_type, list(i.dims), i.HasField("reshape")) for i in config.input] == [
        (c, triton.model_config_pb2.TYPE_FP64, [1], True) for c in columns
    ]
    assert [list(i.reshape.shape) for i in config.input] == [[]] * 4
    assert [(o.name, o.data_type, list(o.dims)) for o in config.output] == [
        ("predictions", triton.model_config_pb2.TYPE_INT64, [1])
    ]
    (group,) = config.instance_group
    assert (group.kind, group.count) == (triton.model_config_pb2.ModelInstanceGroup.KIND_CPU, 1)
    assert config.parameters["served_model"].string_value == "iris-1"
    assert config.parameters["model_uri"].string_value == "models:/iris/1"
    assert tc.get_model_config("iris", "1").config == config
    assert tc.get_model_config("iris", "iris-1").config == config
    as_json = tc.get_model_config("iris", as_json=True)["config"]
    assert as_json["input"][0]["data_type"] == "TYPE_FP64"


def test_metadata_and_config_describe_the_main_served_model_every_time(platform, iris) -> None:
    """With two served models, ModelMetadata and ModelConfig without a version described one
    chosen at random by traffic share: calls alternated between two signatures. They describe
    the one taking the most traffic (the first of equals); a version names another."""
    server, client = platform
    X, y = iris
    narrow = X[["sepal_length", "sepal_width"]]
    register(LogisticRegression(max_iter=500).fit(X, y), X, "wide")
    register(LogisticRegression(max_iter=500).fit(narrow, y), narrow, "narrow")
    # narrow (two columns) is the first of equals, then the one taking the most traffic.
    splits = [["models:/narrow/1=50", "models:/wide/1"], ["models:/wide/1=10", "models:/narrow/1"]]
    with triton.InferenceServerClient(server.address) as tc:
        for split in splits:
            client.create_endpoint("two", split)
            wait_ready(client, "two")
            described = {len(tc.get_model_metadata("two").inputs) for _ in range(30)}
            configured = {len(tc.get_model_config("two").config.input) for _ in range(30)}
            assert described == configured == {2}
            assert len(tc.get_model_metadata("two", "wide-1").inputs) == 4
            client.delete_endpoint("two")


def test_model_config_of_tensor_models_and_batching(platform) -> None:
    from sklearn.linear_model import LinearRegression

    server, client = platform
    X = np.arange(12, dtype=np.float32).reshape(4, 3)
    register(LinearRegression().fit(X, X.sum(axis=1)), X, "tensor")
    client.create_endpoint(
        "tensor",
        [ServedModel("models:/tensor/1", batching=BatchingConfig(8, 500))],
    )
    wait_ready(client, "tensor")
    with triton.InferenceServerClient(server.address) as tc:
        config = tc.get_model_config("tensor").config
        assert (config.max_batch_size, config.dynamic_batching.max_queue_delay_microseconds) == (
            8,
            500,
        )
        ((name, data_type, dims),) = [(i.name, i.data_type, list(i.dims)) for i in config.input]
        assert (data_type, dims) == (triton.model_config_pb2.TYPE_FP32, [3])
        # What the config says is what inference takes: a batch of rows of 3.
        tensor = triton.InferInput(name, [2, *dims], "FP32")
        tensor.set_data_from_numpy(X[:2])
        assert tc.infer("tensor", [tensor]).as_numpy(config.output[0].name).shape[0] == 2


def test_model_config_of_what_does_not_exist(served) -> None:
    tc = served
    missing = refusal(lambda: tc.get_model_config("nope"))
    assert missing.status() == "StatusCode.NOT_FOUND" and "'nope'" in missing.message()
    version = refusal(lambda: tc.get_model_config("iris", "7"))
    assert version.status() == "StatusCode.NOT_FOUND" and "'7'" in version.message()
    empty = refusal(lambda: tc.get_model_config(""))
    assert empty.status() == "StatusCode.INVALID_ARGUMENT" and "name" in empty.message()


def test_model_config_needs_read_as_metadata_does(guarded) -> None:
    server, tokens = guarded
    with triton.InferenceServerClient(server.address) as tc:
        user, stranger = bearer(tokens["user"]), bearer(tokens["stranger"])
        assert tc.get_model_config("iris", headers=user).config.name == "iris"
        metadata = refusal(lambda: tc.get_model_metadata("iris", headers=stranger))
        refused = refusal(lambda: tc.get_model_config("iris", headers=stranger))
        assert refused.status() == metadata.status() == "StatusCode.PERMISSION_DENIED"
        assert refused.message() == metadata.message()


class Stream:
    """A tritonclient stream whose answers (result or error, in arrival order) are read with a
    deadline."""

    def __init__(self, tc: triton.InferenceServerClient, headers: dict[str, str] | None = None):
        self.tc = tc
        self.answers: queue.Queue[tuple[Any, InferenceServerException | None]] = queue.Queue()
        tc.start_stream(lambda result, error: self.answers.put((result, error)), headers=headers)

    def send(self, model: str, inputs: list[triton.InferInput], request_id: str, **kw) -> None:
        self.tc.async_stream_infer(model, inputs, request_id=request_id, **kw)

    def next(self) -> tuple[Any, InferenceServerException | None]:
        return self.answers.get(timeout=60)


def test_model_ready_of_what_does_not_exist_is_false_as_tritons_is(served, platform) -> None:
    tc = served
    _server, client = platform
    assert tc.is_model_ready("iris") and tc.is_model_ready("iris", "1")
    assert not tc.is_model_ready("nope")
    assert not tc.is_model_ready("iris", "7")
    assert not tc.is_model_ready("")
    client.create_endpoint("late", [ServedModel("models:/iris/2")])
    wait_ready(client, "late")
    assert tc.is_model_ready("late")


def test_stream_answers_each_request_in_order_and_survives_errors(served, iris, two_versions):
    tc = served
    X, _y = iris
    model = two_versions[0]
    wanted = [triton.InferRequestedOutput("probabilities")]
    sent = [
        ("iris", columns(X[:5]), {}),
        ("iris", columns(X.drop(columns="petal_width")[:2]), {}),
        ("nope", columns(X[:2]), {}),
        ("iris", columns(X[5:9]), {"outputs": wanted}),
        ("iris", columns(X[10:11]), {}),
    ]
    stream = Stream(tc)
    for i, (name, inputs, kw) in enumerate(sent):
        stream.send(name, inputs, f"s-{i}", **kw)
    answers = [stream.next() for _ in sent]
    tc.stop_stream()
    expected_errors = {}
    for i, (name, inputs, kw) in enumerate(sent):
        try:
            tc.infer(name, inputs, **kw)
        except InferenceServerException as exc:
            expected_errors[i] = exc.message()
    assert sorted(expected_errors) == [1, 2, 3]
    for i, (result, error) in enumerate(answers):
        if i in expected_errors:
            assert result is None and error is not None
            assert error.message() == expected_errors[i]
        else:
            assert error is None
            response = result.get_response()
            assert (response.id, response.model_name, response.model_version) == (
                f"s-{i}",
                "iris",
                "1",
            )
    assert np.array_equal(answers[0][0].as_numpy("predictions"), model.predict(X[:5]))
    assert np.array_equal(answers[4][0].as_numpy("predictions"), model.predict(X[10:11]))
    (stats,) = tc.get_inference_statistics("iris").model_stats
    # Streamed requests count as any other: two answered here (5 + 1 rows), then the two
    # ModelInfer calls that checked the good ones; the unknown output failed in both.
    assert stats.inference_count == 2 * (5 + 1)
    assert stats.inference_stats.fail.count == 4


def test_every_stream_answer_is_marked_final_as_tritons_are(served, iris) -> None:
    """Triton marks each stream answer with triton_final_response (true on a request's last);
    clients that read a request's answers until it saw none and waited for ever."""
    tc = served
    X, _y = iris
    stream = Stream(tc)
    stream.send("iris", columns(X[:2]), "ok", enable_empty_final_response=True)
    stream.send("nope", columns(X[:2]), "bad", enable_empty_final_response=True)
    stream.send("iris", columns(X[:1]), "plain")
    answers = [stream.next() for _ in range(3)]
    tc.stop_stream()
    assert [e is None for _r, e in answers] == [True, False, True]
    # One answer a request, in order: no empty final one follows.
    assert [answers[0][0].get_response().id, answers[2][0].get_response().id] == ["ok", "plain"]
    for result, _error in (answers[0], answers[2]):
        assert result.get_response().parameters["triton_final_response"].bool_param


def test_a_streams_undecodable_request_costs_only_itself(served, platform, iris) -> None:
    server, _client = platform
    X, _y = iris
    good = oip.ModelInferRequest(model_name="iris", id="good")
    for column in X.columns:
        tensor = good.inputs.add(name=column, datatype="FP64", shape=[2])
        tensor.contents.fp64_contents.extend(X[column][:2])
    with grpc.insecure_channel(server.address) as channel:
        stream = channel.stream_stream(
            "/inference.GRPCInferenceService/ModelStreamInfer",
            response_deserializer=oip.ModelStreamInferResponse.FromString,
        )
        unknown = oip.ModelInferRequest(model_name="iris", model_version="7", id="seven")
        unknown.inputs.extend(good.inputs)
        sent = [good.SerializeToString(), b"\xff\xff\xff", good.SerializeToString()]
        answers = list(stream(iter([*sent, unknown.SerializeToString()]), timeout=60))
    assert len(answers) == 4
    assert "not a valid inference.ModelInferRequest" in answers[1].error_message
    # A failure names the request as Triton's do: its id, model and version (the last was left
    # out, so failures for two versions of one model could not be told apart).
    failed = answers[3].infer_response
    assert "serves no model '7'" in answers[3].error_message
    assert (failed.id, failed.model_name, failed.model_version) == ("seven", "iris", "7")
    for answer in (answers[0], answers[2]):
        assert answer.error_message == ""
        assert (answer.infer_response.id, answer.infer_response.model_version) == ("good", "1")


def test_stream_checks_each_request_as_model_infer_does(guarded, iris) -> None:
    server, tokens = guarded
    X, _y = iris
    with triton.InferenceServerClient(server.address) as tc:
        stranger = bearer(tokens["stranger"])
        denied = refusal(lambda: tc.infer("iris", columns(X[:1]), headers=stranger))
        assert denied.status() == "StatusCode.PERMISSION_DENIED"
        stream = Stream(tc, stranger)
        stream.send("iris", columns(X[:1]), "a")
        stream.send("iris", columns(X[:1]), "b")
        for _ in range(2):  # refused each time, and the stream goes on
            result, error = stream.next()
            assert result is None and error is not None
            assert error.message() == denied.message()
        tc.stop_stream()

        stream = Stream(tc, bearer(tokens["user"]))
        stream.send("iris", columns(X[:3]), "c")
        result, error = stream.next()
        assert error is None and result.as_numpy("predictions").shape == (3,)
        tc.stop_stream()

        stream = Stream(tc)  # no token: the stream is refused as it opens
        with contextlib.suppress(InferenceServerException):  # refused before this is sent
            stream.send("iris", columns(X[:1]), "d")
        result, error = stream.next()
        assert result is None and error is not None
        assert error.status() == "StatusCode.UNAUTHENTICATED"
        tc.stop_stream()


def test_shared_memory_trace_and_log_say_what_there_is_or_what_to_do(served) -> None:
    tc = served
    assert tc.get_system_shared_memory_status().regions == {}
    assert tc.get_cuda_shared_memory_status().regions == {}
    tc.unregister_system_shared_memory()  # nothing registered: nothing to do
    tc.unregister_cuda_shared_memory("r")
    for call in (
        lambda: tc.register_system_shared_memory("r", "/shm-key", 64),
        lambda: tc.register_cuda_shared_memory("r", base64.b64encode(b"handle"), 0, 64),
    ):
        refused = refusal(call)
        assert refused.status() == "StatusCode.UNIMPLEMENTED"
        assert "set_data_from_numpy" in refused.message()
    unknown = refusal(lambda: tc.get_system_shared_memory_status("r"))
    assert unknown.status() == "StatusCode.NOT_FOUND" and "'r'" in unknown.message()
    assert unknown.message() != refusal(lambda: tc.get_cuda_shared_memory_status("r")).message()

    assert list(tc.get_trace_settings().settings["trace_level"].value) == ["OFF"]
    assert list(tc.get_trace_settings("iris").settings["trace_level"].value) == ["OFF"]
    missing = refusal(lambda: tc.get_trace_settings("nope"))
    assert missing.status() == "StatusCode.NOT_FOUND" and "'nope'" in missing.message()
    tracing = refusal(lambda: tc.update_trace_settings(settings={"trace_level": ["TIMESTAMPS"]}))
    assert tracing.status() == "StatusCode.UNIMPLEMENTED"
    assert "inference log" in tracing.message()
    for call in (tc.get_log_settings, lambda: tc.update_log_settings({"log_info": False})):
        refused = refusal(call)
        assert refused.status() == "StatusCode.UNIMPLEMENTED"
        assert "MODELYARD_LOG_LEVEL" in refused.message()


def test_server_metadata_names_the_extensions_offered(served) -> None:
    extensions = served.get_server_metadata().extensions
    assert sorted(extensions) == ["model_configuration", "model_repository", "statistics"]


def test_a_streams_requests_are_answered_together_and_batched(platform) -> None:
    """Requests sent without waiting were answered one after another: the next one was not
    read until the model had answered the last, so a stream's requests were never batched."""
    from tests.serving import models

    server, client = platform
    _serve_gated(client)
    try:
        with triton.InferenceServerClient(server.address) as tc:
            stream = Stream(tc)
            firsts = [-1.0, 1.0, 2.0, 3.0]
            for i, first in enumerate(firsts):
                stream.send("gated", columns(pd.DataFrame({"a": [first], "b": [0.0]})), f"g{i}")
            assert models.ENTERED.wait(60)  # the first holds the model
            wait_pending(client, "gated", 3)  # the others were read meanwhile, and wait
            models.GATE.set()
            answers = [stream.next() for _ in firsts]
            tc.stop_stream()
            assert [error for _result, error in answers] == [None] * 4
            assert [r.get_response().id for r, _e in answers] == ["g0", "g1", "g2", "g3"]
            assert [r.as_numpy("predictions").tolist() for r, _e in answers] == [
                [f] for f in firsts
            ]
            (stats,) = tc.get_inference_statistics("gated").model_stats
            assert (stats.inference_count, stats.execution_count) == (4, 2)  # -1, then 1 2 3
    finally:
        models.GATE.set()  # never leave a server thread waiting


def test_a_cancelled_streams_waiting_requests_are_never_computed(platform) -> None:
    """Requests already read from a stream the client then cancelled were still computed once
    the model was free: model calls for answers nobody reads. They now leave the queue as the
    stream ends."""
    from tests.serving import models

    server, client = platform
    _serve_gated(client)
    try:
        with triton.InferenceServerClient(server.address) as tc:
            stream = Stream(tc)
            firsts = [-1.0, 1.0, 2.0, 3.0]
            for i, first in enumerate(firsts):
                stream.send("gated", columns(pd.DataFrame({"a": [first], "b": [0.0]})), f"g{i}")
            assert models.ENTERED.wait(60)  # the first holds the model
            wait_pending(client, "gated", 3)  # the others were read, and wait their turn
            tc.stop_stream(cancel_requests=True)
            wait_pending(client, "gated", 0)  # they left the queue as the stream ended
            models.GATE.set()
            # The model is free again; a new request is answered, and is all it computes.
            result = tc.infer("gated", columns(pd.DataFrame({"a": [7.0], "b": [0.0]})))
            assert result.as_numpy("predictions").tolist() == [7.0]
            assert models.SEEN == [[-1.0], [7.0]]
            (stats,) = tc.get_inference_statistics("gated").model_stats
            assert stats.execution_count == 2
    finally:
        models.GATE.set()  # never leave a server thread waiting


def test_a_cancelled_model_infer_waiting_for_the_model_is_never_computed(platform) -> None:
    """As a stream's: a unary call cancelled while it waits behind a running one leaves the
    queue at once, and the model never sees it."""
    from tests.serving import models

    server, client = platform
    _serve_gated(client)

    def request(first: float) -> oip.ModelInferRequest:
        request = oip.ModelInferRequest(model_name="gated")
        for name, value in (("a", first), ("b", 0.0)):
            tensor = request.inputs.add(name=name, datatype="FP64", shape=[1])
            tensor.contents.fp64_contents.append(value)
        return request

    try:
        with grpc.insecure_channel(server.address) as channel:
            infer = channel.unary_unary(
                "/inference.GRPCInferenceService/ModelInfer",
                request_serializer=oip.ModelInferRequest.SerializeToString,
                response_deserializer=oip.ModelInferResponse.FromString,
            )
            held = infer.future(request(-1.0), timeout=60)
            assert models.ENTERED.wait(60)
            waiting = infer.future(request(5.0), timeout=60)
            wait_pending(client, "gated", 1)
            waiting.cancel()
            wait_pending(client, "gated", 0)  # it left the queue as the call ended
            models.GATE.set()
            assert held.result().id == ""
            assert infer(request(7.0), timeout=60).outputs[0].contents.fp64_contents == [7.0]
        assert models.SEEN == [[-1.0], [7.0]]
    finally:
        models.GATE.set()


def test_a_request_still_queued_past_its_timeout_is_refused_unrun(platform) -> None:
    """Triton's per-request timeout (tritonclient's infer(timeout=us)) was ignored: a request
    waited behind a slow model however long, then ran. One still queued when its timeout passes
    is now DEADLINE_EXCEEDED, never run (as Triton's queue policy rejects it, "Request timeout
    expired"); a request with a longer timeout, or with priority (ignored, as Triton ignores it
    without priority levels), waits and is answered. A timeout that is no count is refused."""
    from tests.serving import models

    server, client = platform
    _serve_gated(client)

    def row(first: float) -> list[triton.InferInput]:
        return columns(pd.DataFrame({"a": [first], "b": [0.0]}))

    try:
        with triton.InferenceServerClient(server.address) as tc:
            answers: queue.Queue[tuple[Any, Any]] = queue.Queue()

            def later(result: Any, error: Any) -> None:
                answers.put((result, error))

            tc.async_infer("gated", row(-1.0), later)  # holds the model
            assert models.ENTERED.wait(60)
            tc.async_infer("gated", row(5.0), later, timeout=120_000_000, priority=2)
            wait_pending(client, "gated", 1)
            refused = refusal(lambda: tc.infer("gated", row(6.0), timeout=1))
            assert refused.status() == "StatusCode.DEADLINE_EXCEEDED"
            assert "request timeout expired" in refused.message()
            assert "(1 us, its timeout parameter)" in refused.message()
            assert "it was not run" in refused.message()
            models.GATE.set()
            results = [answers.get(timeout=60) for _ in range(2)]
            assert sorted(r.as_numpy("predictions").tolist()[0] for r, _e in results) == [-1, 5]
            request = oip.ModelInferRequest(model_name="gated")
            for name in ("a", "b"):
                request.inputs.add(name=name, datatype="FP64", shape=[1])
                request.inputs[-1].contents.fp64_contents.append(1.0)
            request.parameters["timeout"].string_param = "1s"
            with grpc.insecure_channel(server.address) as channel:
                stub = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)
                with pytest.raises(grpc.RpcError) as err:
                    stub.ModelInfer(request, timeout=60)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "parameters.timeout must be an integer" in err.value.details()
        assert models.SEEN == [[-1.0], [5.0]]  # 6.0 was never run
    finally:
        models.GATE.set()


@pytest.fixture
def wide(tmp_path) -> Iterator[triton.InferenceServerClient]:
    """A server with 4 MiB messages serving "wide", whose answers are 1000 times its rows."""
    from modelyard.services.common.settings import Settings
    from tests.conftest import running_server
    from tests.serving import models

    settings = Settings(home=tmp_path, port=0, grace_period=0, max_message_mb=4)
    with running_server(settings) as server, Client(server.address) as client:
        modelyard.set_tracking_uri(server.address)
        try:
            X = np.ones((4, 3))
            with modelyard.start_run():
                modelyard.sklearn.log_model(
                    models.Wide(), "model", input_example=X, registered_model_name="wide"
                )
            client.create_endpoint("wide", "models:/wide/1")
            wait_ready(client, "wide")
            with triton.InferenceServerClient(server.address) as tc:
                yield tc
        finally:
            modelyard.set_tracking_uri("127.0.0.1:1")


def _rows(n: int) -> list[triton.InferInput]:
    tensor = triton.InferInput("input", [n, 3], "FP64")
    tensor.set_data_from_numpy(np.ones((n, 3)))
    return [tensor]


def test_an_answer_over_the_message_limit_fails_alone_and_says_what_to_do(wide) -> None:
    """An answer larger than the server's max_message_mb ended the whole stream (the requests
    after it were never answered), and a unary call got grpc's bare "Sent message larger than
    max". Now that request alone fails, naming the limit and what to change, and is counted as
    the caller's RESOURCE_EXHAUSTED (it was counted OK)."""
    from prometheus_client import REGISTRY

    def counted(code: str) -> float:
        labels = {"endpoint": "wide", "served_model": "wide-1", "version": "1", "code": code}
        return REGISTRY.get_sample_value("modelyard_serving_requests_total", labels) or 0.0

    before = {code: counted(code) for code in ("OK", "RESOURCE_EXHAUSTED")}
    tc = wide
    stream = Stream(tc)
    for i, n in enumerate((10, 1000, 10)):  # 1000 rows answer 8 MB
        stream.send("wide", _rows(n), f"w{i}")
    answers = [stream.next() for _ in range(3)]
    tc.stop_stream()
    assert [e is None for _r, e in answers] == [True, False, True]
    assert answers[2][0].as_numpy("predictions").shape == (10, 1000)
    too_big = answers[1][1]
    assert too_big is not None
    assert "over this server's message limit of 4 MiB" in too_big.message()
    assert "send fewer rows per request" in too_big.message()

    refused = refusal(lambda: tc.infer("wide", _rows(1000)))
    assert refused.status() == "StatusCode.RESOURCE_EXHAUSTED"
    assert "max_message_mb" in refused.message()
    assert tc.infer("wide", _rows(10)).as_numpy("predictions").shape == (10, 1000)
    assert {code: counted(code) - n for code, n in before.items()} == {
        "OK": 3,
        "RESOURCE_EXHAUSTED": 2,
    }


def test_a_request_over_the_message_limit_fails_alone_and_says_what_to_do(wide) -> None:
    """A request larger than max_message_mb on a ModelStreamInfer stream ended the whole stream
    with grpc's "Received message larger than max": the requests after it were never answered.
    Triton answers that request's error and goes on; so does serving. A unary caller is told
    what to do too."""
    tc = wide
    stream = Stream(tc)
    for i, n in enumerate((2, 200_000, 2)):  # 200,000 rows are 4.6 MiB
        stream.send("wide", _rows(n), f"r{i}")
    answers = [stream.next() for _ in range(3)]
    tc.stop_stream()
    assert [e is None for _r, e in answers] == [True, False, True]
    assert [answers[i][0].get_response().id for i in (0, 2)] == ["r0", "r2"]
    too_big = answers[1][1]
    assert too_big is not None
    assert "the request is 4.6 MiB, over this server's message limit of 4 MiB" in (
        too_big.message()
    )
    refused = refusal(lambda: tc.infer("wide", _rows(200_000)))
    assert refused.status() == "StatusCode.RESOURCE_EXHAUSTED"
    assert "send fewer rows per request" in refused.message()
    assert "MODELYARD_MAX_MESSAGE_MB" in refused.message()


def test_a_request_over_the_message_limit_is_answered_naming_it(wide) -> None:
    """The answer to a ModelStreamInfer request over max_message_mb (never parsed) carried no
    model name or id, and its error_message did not say which request it was: the only way to
    match it was its place in the stream. It names what the request's first bytes name (its
    id and model), else the stream's model, and says it was not parsed; it comes in the
    request's place."""
    tc = wide
    stream = Stream(tc)
    stream.send("wide", _rows(2), "r0")
    stream.send("wide", _rows(200_000), "r1")  # 4.6 MiB
    stream.send("", _rows(200_000), "")  # naming neither: the stream's model is "wide"
    stream.send("wide", _rows(2), "r3")
    answers = [stream.next() for _ in range(4)]
    tc.stop_stream()
    assert [e is None for _r, e in answers] == [True, False, False, True]
    assert [answers[i][0].get_response().id for i in (0, 3)] == ["r0", "r3"]
    named, unnamed = (answers[i][1] for i in (1, 2))
    assert named is not None and unnamed is not None
    assert named.message().startswith("request 'r1' to model 'wide' was not parsed: ")
    assert "the request is 4.6 MiB, over this server's message limit" in named.message()
    assert unnamed.message().startswith(
        "a request (its id not read) to model 'wide' was not parsed: the request is 4.6 MiB"
    )


def test_the_names_of_a_request_are_read_from_its_first_bytes_alone() -> None:
    """What names a ModelInferRequest too large to parse is read from its first bytes: all of
    it where they hold it whole, none of a field they cut, and nothing from bytes that are no
    request."""
    from modelyard.services.common.interceptors import OVERSIZED_HEAD
    from modelyard.services.serving.codec import request_named_in

    request = oip.ModelInferRequest(model_name="wide", model_version="2", id="r" * 300)
    request.inputs.add(name="input", datatype="FP64", shape=[1]).contents.fp64_contents.append(1)
    data = request.SerializeToString()
    whole = request_named_in(data[:OVERSIZED_HEAD])
    assert (whole.model_name, whole.model_version, whole.id) == ("wide", "2", "r" * 300)
    cut = request_named_in(data[:100])
    assert (cut.model_name, cut.model_version, cut.id) == ("wide", "2", "")
    assert request_named_in(b"\xff" * 8) == oip.ModelInferRequest()
    assert request_named_in(b"") == oip.ModelInferRequest()


def test_sequence_parameters_are_checked_and_ignored_as_tritons_are(served, platform, iris) -> None:
    """Triton's sequence parameters were ignored whatever their kind. Triton's frontend refuses
    a sequence_id that is no int64 or string and flags that are no bool; well-formed ones it
    ignores for a model without a sequence batcher (only that batcher wants a correlation ID).
    So does serving: such a request answers as one without them."""
    tc = served
    X, _y = iris
    plain = tc.infer("iris", columns(X[:5])).as_numpy("predictions").tolist()
    for sequence_id in (7, "session-7", 0):
        answer = tc.infer(
            "iris", columns(X[:5]), sequence_id=sequence_id, sequence_start=True, sequence_end=True
        )
        assert answer.as_numpy("predictions").tolist() == plain
    server, _client = platform
    with grpc.insecure_channel(server.address) as channel:
        infer = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer
        for name, kind, value in (
            ("sequence_start", "int64_param", 1),
            ("sequence_end", "string_param", "true"),
            ("sequence_id", "bool_param", True),
        ):
            request = oip.ModelInferRequest(model_name="iris")
            for column in X.columns:
                tensor = request.inputs.add(name=column, datatype="FP64", shape=[1])
                tensor.contents.fp64_contents.append(float(X[column].iloc[0]))
            setattr(request.parameters[name], kind, value)
            with pytest.raises(grpc.RpcError) as err:
                infer(request, timeout=30)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert f"parameters.{name} must be " in err.value.details()
            assert "sequence parameters are accepted and have no effect" in err.value.details()


def test_outputs_asked_for_as_classes_are_ranked_as_tritons_are(platform, iris, served):
    """tritonclient's InferRequestedOutput(name, class_count=k) (Triton's classification
    extension) was answered with the plain tensor, which clients parse as "value:index" text."""
    from tests.serving import models

    server, client = platform
    X, _y = iris
    rows = np.array([[0.1, 0.7, 0.2], [0.5, 0.1, 0.4]])
    register(models.Scores(), rows, "scores")
    client.create_endpoint("scores", "models:/scores/1")
    wait_ready(client, "scores")
    tc = served
    tensor = triton.InferInput("input", [2, 3], "FP64")
    tensor.set_data_from_numpy(rows)
    ranked = tc.infer(
        "scores", [tensor], outputs=[triton.InferRequestedOutput("predictions", class_count=2)]
    ).as_numpy("predictions")
    assert ranked.tolist() == [[b"0.700000:1", b"0.200000:2"], [b"0.500000:0", b"0.400000:2"]]
    # A value per row (the iris labels) is one class each; k beyond the classes gives them all.
    labels = tc.infer(
        "iris", columns(X[:2]), outputs=[triton.InferRequestedOutput("predictions", class_count=5)]
    ).as_numpy("predictions")
    assert labels.shape == (2, 1) and labels[0, 0].endswith(b":0")
    asked = oip.ModelInferRequest.InferRequestedOutputTensor(name="predictions")
    asked.parameters["classification"].string_param = "two"
    request = oip.ModelInferRequest(model_name="scores", outputs=[asked])
    request.inputs.add(name="input", datatype="FP64", shape=[1, 3]).contents.fp64_contents.extend(
        [1.0, 2.0, 3.0]
    )
    with grpc.insecure_channel(server.address) as channel:
        stub = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.ModelInfer(request, timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "outputs[0].parameters.classification" in err.value.details()


def test_an_output_asked_for_twice_differently_is_refused_naming_it(platform, iris, served):
    """The same output asked for twice with other class counts (or once as classes, once as the
    tensor) was answered as the last ask said, silently. Refused naming it; the same ask twice
    is answered once, as Triton does."""
    X, _y = iris
    tc = served
    for second in (
        triton.InferRequestedOutput("predictions", class_count=3),
        triton.InferRequestedOutput("predictions"),
    ):
        asked = [triton.InferRequestedOutput("predictions", class_count=2), second]
        err = refusal(partial(tc.infer, "iris", columns(X[:2]), outputs=asked))
        assert err.status() == "StatusCode.INVALID_ARGUMENT", err
        assert "outputs[1]" in err.message() and "'predictions'" in err.message(), err
    same = [triton.InferRequestedOutput("predictions", class_count=2) for _ in range(2)]
    labels = tc.infer("iris", columns(X[:2]), outputs=same).as_numpy("predictions")
    assert labels.shape == (2, 1) and labels[0, 0].endswith(b":0")


def test_model_config_of_a_model_without_signature_claims_no_batch_dimension(platform) -> None:
    from sklearn.linear_model import LinearRegression

    server, client = platform
    X = np.arange(12, dtype=np.float64).reshape(4, 3)
    with modelyard.start_run():
        modelyard.sklearn.log_model(
            LinearRegression().fit(X, X.sum(axis=1)),
            "model",
            signature=False,
            registered_model_name="bare",
        )
    client.create_endpoint("bare", [ServedModel("models:/bare/1")])
    wait_ready(client, "bare")
    with triton.InferenceServerClient(server.address) as tc:
        config = tc.get_model_config("bare").config
        # Nothing is known of its tensors: no batch dimension is promised.
        assert (config.max_batch_size, list(config.input)) == (0, [])
        # Nor dynamic batching, which Triton allows only with a batch dimension.
        assert not config.HasField("dynamic_batching")


def test_stream_limits_are_settings_with_bounds(tmp_path) -> None:
    """Two stream workers: while the first request holds the model, the second waits for it in
    the batcher, and the others wait for a worker (with the default 32 all three waited
    there, and a thread was started for each)."""
    from modelyard.services.common.settings import Settings
    from tests.conftest import running_server
    from tests.serving import models

    for field in ("stream_window", "stream_workers"):
        for bad in (0, 1025):
            bound = rf"serving\.{field}\n\s+Input should be (greater|less) than or equal"
            with pytest.raises(ValidationError, match=bound):
                Settings(home=tmp_path, serving={field: bad})

    def stream_workers() -> set[int | None]:
        return {t.ident for t in threading.enumerate() if t.name.startswith("modelyard-stream_")}

    before = stream_workers()  # other servers' of this process
    settings = Settings(
        home=tmp_path, port=0, grace_period=0, serving={"stream_workers": 2, "stream_window": 4}
    )
    with running_server(settings) as server, Client(server.address) as client:
        modelyard.set_tracking_uri(server.address)
        _serve_gated(client)
        try:
            with triton.InferenceServerClient(server.address) as tc:
                stream = Stream(tc)
                firsts = [-1.0, 1.0, 2.0, 3.0]
                for i, first in enumerate(firsts):
                    stream.send("gated", columns(pd.DataFrame({"a": [first], "b": [0.0]})), f"g{i}")
                assert models.ENTERED.wait(60)  # the first holds the model, and one worker
                wait_pending(client, "gated", 1)  # the second, on the other worker
                assert len(stream_workers() - before) == 2
                models.GATE.set()
                answers = [stream.next() for _ in firsts]
                tc.stop_stream()
                assert [r.as_numpy("predictions").tolist() for r, _e in answers] == [
                    [f] for f in firsts
                ]
        finally:
            models.GATE.set()  # never leave a server thread waiting
            modelyard.set_tracking_uri("127.0.0.1:1")
