"""The inference log stays cheap to write and readable: records are capped and strict JSON,
refusals are logged with the status the caller got, and pages fit a gRPC message."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from prometheus_client import REGISTRY

import modelyard
from modelyard import Client
from modelyard._gen.inference import grpc_predict_v2_pb2 as oip
from modelyard._gen.inference import grpc_predict_v2_pb2_grpc
from modelyard._gen.serving.v1 import serving_pb2
from modelyard.entities.serving import InferenceLogConfig, InferenceRecord, ServedModel
from modelyard.services.common.db import Database
from modelyard.services.common.server import ModelyardServer
from modelyard.services.common.settings import Settings
from modelyard.services.serving.app import migrate
from modelyard.services.serving.inference_log import MAX_LOGGED_BYTES, to_json
from modelyard.services.serving.service import MAX_GROUND_TRUTH
from modelyard.services.serving.store.sql import TRUNCATED_JSON, SqlServingStore
from modelyard.services.ui import monitoring
from tests.conftest import running_server
from tests.serving.conftest import register, wait_ready


def _strict(text: str) -> Any:
    """JSON as jq or JavaScript read it: no NaN or Infinity constants."""

    def refuse(constant: str) -> None:
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def test_a_huge_empty_tensor_is_logged_by_its_shape_at_no_cost() -> None:
    """[3000, 3000, 0] holds nothing; as lists it was 9 million of them (seconds, 36 MB)."""
    logged = to_json({"x": np.empty((3000, 3000, 0))})
    assert _strict(logged) == {
        "x": {"shape": [3000, 3000, 0], "dtype": "float64", "truncated": True}
    }
    assert _strict(to_json({"y": np.empty(0)})) == {"y": []}


def test_values_json_lacks_are_kept_as_strict_json() -> None:
    floats = np.array([[np.nan, 1.5, np.inf, -np.inf]])
    texts = np.array([b"\xff\xfe", b"caf\xc3\xa9", "plain"], dtype=object)
    assert _strict(to_json({"f": floats, "t": texts})) == {
        "f": [["NaN", 1.5, "Infinity", "-Infinity"]],
        "t": [{"base64": "//4="}, "café", "plain"],  # the bytes that are not UTF-8, losslessly
    }


def test_a_record_stays_under_the_cap_and_keeps_what_fits() -> None:
    big, small = np.random.default_rng(0).random((20_000, 4)), np.arange(3)
    logged = to_json({"big": big, "small": small})
    assert len(logged) <= MAX_LOGGED_BYTES
    assert _strict(logged) == {
        "big": {"shape": [20_000, 4], "dtype": "float64", "truncated": True},
        "small": [0, 1, 2],
    }
    many = {f"t{i}": np.arange(1) for i in range(30_000)}  # even their shapes do not fit
    assert _strict(to_json(many)) == {"tensors": 30_000, "truncated": True}


@pytest.fixture
def small_messages(tmp_path: Path, iris) -> Iterator[tuple[ModelyardServer, Client]]:
    """A server whose gRPC messages are capped at 4 MiB (the least max_message_mb allows),
    serving iris on the logged endpoint "inflog"."""
    from sklearn.linear_model import LogisticRegression

    settings = Settings(home=tmp_path, port=0, grace_period=0, max_message_mb=4)
    with running_server(settings) as server, Client(server.address) as client:
        modelyard.set_tracking_uri(server.address)
        X, y = iris
        register(LogisticRegression(max_iter=500).fit(X, y), X, "iris")
        client.create_endpoint(
            "inflog", [ServedModel("models:/iris/1")], InferenceLogConfig(enabled=True)
        )
        wait_ready(client, "inflog")
        yield server, client
        modelyard.set_tracking_uri("127.0.0.1:1")


def _features(rows: np.ndarray, request_id: str, *outputs: str) -> oip.ModelInferRequest:
    request = oip.ModelInferRequest(model_name="inflog", id=request_id)
    tensor = request.inputs.add(name="features", datatype="FP64", shape=list(rows.shape))
    tensor.contents.fp64_contents.extend(rows.reshape(-1).tolist())
    for name in outputs:
        request.outputs.add(name=name)
    return request


def _code(infer, request: oip.ModelInferRequest) -> grpc.StatusCode:
    try:
        infer(request, timeout=60)
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


def _counted() -> dict[str, float]:
    """modelyard_serving_requests_total of the loaded version, by code."""
    labels = {"endpoint": "inflog", "served_model": "iris-1", "version": "1"}
    return {
        code: REGISTRY.get_sample_value("modelyard_serving_requests_total", labels | {"code": code})
        or 0.0
        for code in ("OK", "INVALID_ARGUMENT")
    }


def test_each_request_is_logged_capped_strict_and_with_the_status_it_got(
    small_messages, iris
) -> None:
    server, client = small_messages
    X, _y = iris
    rows = X.to_numpy()[:2]
    before = _counted()
    ok, refused = before["OK"], before["INVALID_ARGUMENT"]
    with grpc.insecure_channel(server.address) as channel:
        infer = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer
        codes = {
            "plain": _code(infer, _features(rows, "plain")),
            "big": _code(infer, _features(np.tile(rows, (10_000, 1)), "big")),
            "empty": _code(
                infer,
                oip.ModelInferRequest(
                    model_name="inflog",
                    id="empty",
                    inputs=[
                        oip.ModelInferRequest.InferInputTensor(
                            name="features", datatype="FP64", shape=[1000, 1000, 0]
                        )
                    ],
                ),
            ),
            "nan": _code(infer, _features(np.array([[np.nan, 1.0, np.inf, 3.0]]), "nan")),
            "no-such-output": _code(infer, _features(rows, "no-such-output", "probabilities")),
        }
    assert codes == {
        "plain": grpc.StatusCode.OK,
        "big": grpc.StatusCode.OK,
        "empty": grpc.StatusCode.INVALID_ARGUMENT,
        "nan": grpc.StatusCode.INVALID_ARGUMENT,  # the model refuses NaN: the caller's to fix
        "no-such-output": grpc.StatusCode.INVALID_ARGUMENT,
    }
    records = {r.request_id: r for r in client.get_inference_log("inflog", as_frame=False)}
    assert {rid: records[rid].status for rid in codes} == {
        rid: code.name for rid, code in codes.items()
    }
    for record in records.values():
        assert len(record.inputs_json) <= MAX_LOGGED_BYTES
        assert len(record.outputs_json) <= MAX_LOGGED_BYTES
    assert _strict(records["plain"].inputs_json) == {"features": rows.tolist()}
    assert _strict(records["big"].inputs_json) == {
        "features": {"shape": [20_000, 4], "dtype": "float64", "truncated": True}
    }
    assert len(_strict(records["big"].outputs_json)["predictions"]) == 20_000
    assert _strict(records["empty"].inputs_json) == {
        "features": {"shape": [1000, 1000, 0], "dtype": "float64", "truncated": True}
    }
    assert _strict(records["nan"].inputs_json) == {"features": [["NaN", 1.0, "Infinity", 3.0]]}
    # Counted under the version that refused them (they were "none", hiding a failing canary).
    assert _counted() == {"OK": ok + 2, "INVALID_ARGUMENT": refused + 3}
    assert {r.model_version for r in records.values()} == {1}
    # The dashboard reads these records: the truncated one is left out, the others are read.
    log = client.get_inference_log("inflog")
    inputs, predictions = monitoring.decode(log, list(X.columns))
    assert len(predictions) == 2 + 20_000 and list(inputs["sepal_length"][:2]) == list(rows[:, 0])


def test_a_request_id_too_long_to_log_is_refused_by_an_endpoint_that_logs(
    small_messages, iris
) -> None:
    """A request id over 128 characters was logged cut to its first 128: no ground truth could
    name it (LogGroundTruth takes 128 at most), and ids alike that far were logged as one. An
    endpoint that logs refuses it, naming the id; one that logs nothing answers it, and an id
    of 128 is logged whole."""
    server, client = small_messages
    X, _y = iris
    rows = X.to_numpy()[:1]
    client.create_endpoint("unlogged", [ServedModel("models:/iris/1")])
    wait_ready(client, "unlogged")
    unlogged = _features(rows, "u" * 200)
    unlogged.model_name = "unlogged"
    with grpc.insecure_channel(server.address) as channel:
        infer = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer
        with pytest.raises(grpc.RpcError) as refused:
            infer(_features(rows, "r" * 129), timeout=60)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "id is 129 characters" in (refused.value.details() or "")
        infer(_features(rows, "k" * 128), timeout=60)
        assert infer(unlogged, timeout=60).id == "u" * 200
    assert list(client.get_inference_log("inflog")["request_id"]) == ["k" * 128]
    assert client.log_ground_truth("inflog", {"k" * 128: 1}) == 1


def test_a_request_without_id_is_logged_under_its_calls_request_id(small_messages, iris) -> None:
    """tritonclient sends no request id unless asked: such requests were all logged under "",
    so no ground truth could name one. They are logged under the call's x-request-id (the
    id the server's own logs use), else a generated one; the answer still echoes no id."""
    server, client = small_messages
    rows = iris[0].to_numpy()[:1]
    with grpc.insecure_channel(server.address) as channel:
        infer = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer
        assert infer(_features(rows, ""), metadata=[("x-request-id", "hdr-1")], timeout=60).id == ""
        infer(_features(rows, ""), timeout=60)
        infer(_features(rows, ""), timeout=60)
    logged = list(client.get_inference_log("inflog")["request_id"])
    assert "hdr-1" in logged and len(set(logged)) == 3 and "" not in logged
    assert client.log_ground_truth("inflog", {"hdr-1": 1}) == 1


def test_pages_fit_a_message_and_continue_from_last_record_id(small_messages) -> None:
    """24 records of ~210 KB are 5 MB: a page of them was over the 4 MiB message limit, and
    GetInferenceLog failed with RESOURCE_EXHAUSTED."""
    server, client = small_messages
    rows = np.random.default_rng(0).random((2600, 4)) * 8  # ~210 KB of JSON, under the cap
    with grpc.insecure_channel(server.address) as channel:
        infer = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer
        for i in range(24):
            infer(_features(rows, f"r-{i}"), timeout=60)
    first = client._t.call(
        client._serving.GetInferenceLog, serving_pb2.GetInferenceLogRequest(endpoint="inflog")
    )
    assert 0 < len(first.records) < 24 and first.ByteSize() < 4 * 1024 * 1024
    assert first.last_record_id == first.records[-1].record_id
    rest = client.get_inference_log("inflog", since_record_id=first.last_record_id)
    assert [r.request_id for r in first.records] + list(rest["request_id"]) == [
        f"r-{i}" for i in range(24)
    ]
    # The client follows the pages for the caller, either way round.
    assert len(client.get_inference_log("inflog")) == 24
    newest = client.get_inference_log("inflog", max_results=20, newest_first=True)
    assert list(newest["request_id"]) == [f"r-{i}" for i in range(23, 3, -1)]
    assert _strict(newest["inputs_json"].iloc[0]) == {"features": rows.tolist()}


def _record(request_id: str, inputs_json: str) -> InferenceRecord:
    return InferenceRecord(0, request_id, 0, "ep", "m", 1, 1.0, inputs_json, "{}", "OK")


def test_the_store_bounds_pages_by_bytes_and_truncates_old_oversized_rows(
    database_url: str,
) -> None:
    """Rows logged before records were capped can be any size: they read as TRUNCATED_JSON."""
    db = Database(database_url)
    migrate(db)
    store = SqlServingStore(db)
    try:
        kilobytes = json.dumps({"x": "k" * 1000})
        store.record_inferences(
            [_record(f"r-{i}", kilobytes) for i in range(10)]
            + [_record("huge", json.dumps({"x": "h" * 100_000}))]
            + [_record("after", "{}")]
        )

        def page(since: int, newest_first: bool = False) -> list[InferenceRecord]:
            return store.list_inferences(
                "ep", since, 100, newest_first, max_bytes=5000, field_bytes=10_000
            )

        pages, since = [], 0
        while records := page(since):
            pages.append([r.request_id for r in records])
            since = records[-1].record_id
        assert pages == [
            ["r-0", "r-1", "r-2"],
            ["r-3", "r-4", "r-5"],
            ["r-6", "r-7", "r-8"],
            ["r-9", "huge", "after"],
        ]
        everything = store.list_inferences("ep", 0, 100)
        assert [r.inputs_json for r in everything[:10]] == [kilobytes] * 10
        huge = next(r for r in page(everything[9].record_id) if r.request_id == "huge")
        assert huge.inputs_json == TRUNCATED_JSON and huge.outputs_json == "{}"
        newest = page(0, newest_first=True)
        assert [r.request_id for r in newest] == ["after", "huge", "r-9", "r-8"]
        one = store.list_inferences("ep", 0, 1, max_bytes=1, field_bytes=10_000)
        assert [r.request_id for r in one] == ["r-0"]  # a page holds one record at least
    finally:
        store.close()


def test_ground_truth_is_checked_against_the_log_a_whole_batch_at_once(database_url: str) -> None:
    """A full LogGroundTruth batch is checked in one query on each backend (SQLite bounds a
    statement's parameters); one id the log does not hold, or holds for another endpoint, and
    nothing of the batch is written."""
    db = Database(database_url)
    migrate(db)
    store = SqlServingStore(db)
    try:
        store.record_inferences([_record(f"r-{i}", "{}") for i in range(MAX_GROUND_TRUTH)])
        values = [(f"r-{i}", str(i)) for i in range(MAX_GROUND_TRUTH)]
        assert store.record_ground_truth("ep", [*values[1:], ("nope", "1")]) == ["nope"]
        assert {r.ground_truth_json for r in store.list_inferences("ep", 0, 10)} == {""}
        assert store.record_ground_truth("other", values[:2]) == ["r-0", "r-1"]
        skipping = store.record_ground_truth("ep", [("nope", "9"), values[0]], skip_unlogged=True)
        assert skipping == ["nope"]
        assert [r.ground_truth_json for r in store.list_inferences("ep", 0, 1)] == ["0"]
        assert store.record_ground_truth("ep", values) == []
        assert [r.ground_truth_json for r in store.list_inferences("ep", 0, 3)] == ["0", "1", "2"]
    finally:
        store.close()
