"""Every RPC of every service, driven with missing, empty, oversized and wrong-typed input.

The rule: a clear status that is never INTERNAL or UNKNOWN, a message that names the field (for
INVALID_ARGUMENT) or the resource (for NOT_FOUND), and no damage to data that was already there.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from types import ModuleType

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from modelyard import Client
from modelyard._gen.auth.v1 import auth_pb2
from modelyard._gen.features.v1 import features_pb2
from modelyard._gen.inference import grpc_predict_v2_pb2
from modelyard._gen.registry.v1 import registry_pb2
from modelyard._gen.serving.v1 import serving_pb2
from modelyard._gen.tracking.v1 import tracking_pb2
from modelyard.errors import from_rpc_error
from modelyard.features import FeatureService, FeatureStoreClient
from modelyard.services.common.server import ModelyardServer
from tests.features.repo import NOW, make_repo

MODULES: list[ModuleType] = [
    tracking_pb2,
    registry_pb2,
    auth_pb2,
    serving_pb2,
    grpc_predict_v2_pb2,
    features_pb2,
]
METHODS: list[tuple[ModuleType, MethodDescriptor]] = [
    (module, method)
    for module in MODULES
    for service in module.DESCRIPTOR.services_by_name.values()
    for method in service.methods
]
UNARY = [(m, d) for m, d in METHODS if not d.client_streaming and not d.server_streaming]
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
HUGE = "x" * 70_000
STRANGE = ["", " ", "../../etc/passwd", "\u202e\U0001f600", "' OR 1=1 --", HUGE]
# Changes a request may legitimately make to the seed data; skipped in the no-damage test.
MUTATING = ("Delete", "Update", "Rename", "Transition", "Set", "Restore")


def _id(item: tuple[ModuleType, MethodDescriptor]) -> str:
    return f"{item[1].containing_service.name}.{item[1].name}"


def _call(channel: grpc.Channel, method: MethodDescriptor, payload: bytes) -> grpc.RpcError | None:
    path = f"/{method.containing_service.full_name}/{method.name}"
    try:
        if method.server_streaming:
            stub = channel.unary_stream(path)
            # A valid watch streams until cancelled: give it a moment, then count it accepted.
            list(stub(payload, timeout=2))
        elif method.client_streaming:
            channel.stream_unary(path)(iter([payload]), timeout=30)
        else:
            channel.unary_unary(path)(payload, timeout=30)
    except grpc.RpcError as err:
        if method.server_streaming and err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return None
        return err
    return None


def _assert_clear(err: grpc.RpcError | None, what: str) -> None:
    if err is None:
        return  # accepted: some unusual values are legal (a tag value may be anything)
    assert err.code() not in NEVER, f"{what}: {err.code()} {err.details()}"
    assert err.details(), f"{what}: status without a message"
    assert "Traceback" not in err.details(), what
    assert 'File "' not in err.details(), what
    rebuilt = from_rpc_error(err)
    if err.code() == grpc.StatusCode.INVALID_ARGUMENT:
        assert rebuilt.field, f"{what}: INVALID_ARGUMENT without a field: {err.details()}"
    if err.code() == grpc.StatusCode.NOT_FOUND:
        assert rebuilt.resource_type, f"{what}: NOT_FOUND without a resource: {err.details()}"


@pytest.fixture
def channel(server: ModelyardServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.address) as ch:
        yield ch


@pytest.fixture
def seed(client: Client, server: ModelyardServer, tmp_path: Path) -> dict[str, object]:
    """Real resources, so unusual values reach the deep checks instead of stopping at NOT_FOUND."""
    run_id = logged = client.create_run("0").info.run_id
    client.log_param(run_id, "keep", "me")
    client.log_metric(run_id, "m", 1.0, step=1)
    client.log_text(logged, "m", "model/MLmodel")
    client.create_model_version("seed", f"runs:/{run_id}/model")
    client.set_registered_model_alias("seed", "champion", 1)
    with FeatureStoreClient(server.address) as features:
        repo = make_repo(tmp_path / "features")
        view = replace(repo.stats, name="seed")
        features.apply([repo.driver, view, FeatureService("seed", [view[["trips"]]])])
        features.materialize(NOW - timedelta(days=30), NOW + timedelta(hours=1))
    return {
        "run_id": run_id,
        "name": "seed",
        "version": 1,
        "experiment_id": "0",
        "feature_view": "seed",
        "feature_service": "seed",
        "kind": "feature_view",
    }


def _request_class(module: ModuleType, method: MethodDescriptor) -> type[Message]:
    return getattr(module, method.input_type.name)


def _variants(message_cls: type[Message], seed: dict[str, object]) -> Iterator[tuple[str, Message]]:
    """Requests with one field at a time set to an unusual value; the others point at the seed."""
    fields = message_cls.DESCRIPTOR.fields_by_name
    for field in message_cls.DESCRIPTOR.fields:
        if field.message_type is not None:
            continue
        if field.type == FieldDescriptor.TYPE_STRING:
            values: list[object] = STRANGE
        elif field.type == FieldDescriptor.TYPE_ENUM:
            values = [99, -1]
        elif field.type in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64):
            values = [-1, 0, 2**31 - 1]
        elif field.type == FieldDescriptor.TYPE_BOOL:
            values = [True]
        else:
            continue
        for value in values:
            msg = message_cls()
            for key, seeded in seed.items():
                target = fields.get(key)
                if target is None or key == field.name or target.is_repeated:
                    continue
                is_text = target.type == FieldDescriptor.TYPE_STRING
                if is_text == isinstance(seeded, str):
                    setattr(msg, key, seeded)
            if field.is_repeated:
                getattr(msg, field.name).append(value)
            else:
                setattr(msg, field.name, value)
            yield f"{field.name}={str(value)[:20]!r}", msg


@pytest.mark.parametrize("item", METHODS, ids=_id)
def test_empty_request(channel: grpc.Channel, item) -> None:
    _assert_clear(_call(channel, item[1], b""), f"{_id(item)}(empty)")


@pytest.mark.parametrize("item", METHODS, ids=_id)
def test_undecodable_bytes(channel: grpc.Channel, item) -> None:
    method = item[1]
    # A length-delimited field running past the end and a broken tag; invalid UTF-8 where
    # field 1 is a string (elsewhere unknown bytes are legal, as protobuf intends).
    payloads = [b"\x0a\xff\x01abc", b"\xff\xff\xff\xff"]
    first = method.input_type.fields_by_number.get(1)
    if first is not None and first.type == FieldDescriptor.TYPE_STRING:
        payloads.append(b"\x0a\x02\xff\xfe")
    for payload in payloads:
        err = _call(channel, method, payload)
        assert err is not None, f"{_id(item)} accepted garbage {payload!r}"
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (_id(item), err.details())
        assert method.input_type.full_name in err.details()


@pytest.mark.parametrize("item", UNARY, ids=_id)
def test_unusual_field_values(channel: grpc.Channel, seed: dict[str, object], item) -> None:
    module, method = item
    for label, msg in _variants(_request_class(module, method), seed):
        _assert_clear(_call(channel, method, msg.SerializeToString()), f"{_id(item)}({label})")


def test_batch_limits_name_the_field(channel: grpc.Channel, seed: dict[str, object]) -> None:
    pb = tracking_pb2
    method = pb.DESCRIPTOR.services_by_name["TrackingService"].methods_by_name["LogBatch"]
    rid = str(seed["run_id"])
    cases = {
        "metrics": pb.LogBatchRequest(run_id=rid, metrics=[pb.Metric(key="m", value=1)] * 1001),
        "params": pb.LogBatchRequest(
            run_id=rid, params=[pb.Param(key=f"p{i}", value="v") for i in range(101)]
        ),
    }
    tags = pb.LogBatchRequest(run_id=rid)
    for i in range(101):
        tags.tags.add(key=f"t{i}", value="v")
    cases["tags"] = tags
    for field, request in cases.items():
        err = _call(channel, method, request.SerializeToString())
        assert err is not None
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert from_rpc_error(err).field == field
        assert "at most" in err.details()


def test_oversized_values(channel: grpc.Channel, seed: dict[str, object]) -> None:
    pb = tracking_pb2
    method = pb.DESCRIPTOR.services_by_name["TrackingService"].methods_by_name["LogBatch"]
    rid = str(seed["run_id"])
    for request in (
        pb.LogBatchRequest(run_id=rid, params=[pb.Param(key="big", value="v" * 6001)]),
        pb.LogBatchRequest(run_id=rid, metrics=[pb.Metric(key="k" * 251, value=1)]),
    ):
        err = _call(channel, method, request.SerializeToString())
        assert err is not None
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "limit" in err.details() or "characters" in err.details()


def test_message_over_the_size_limit(channel: grpc.Channel, seed: dict[str, object]) -> None:
    pb = tracking_pb2
    method = pb.DESCRIPTOR.services_by_name["TrackingService"].methods_by_name["SetTag"]
    request = pb.SetTagRequest(run_id=str(seed["run_id"]), key="k", value="v" * (65 * 1024 * 1024))
    err = _call(channel, method, request.SerializeToString())
    assert err is not None
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_upload_stream_protocol_errors(channel: grpc.Channel, seed: dict[str, object]) -> None:
    pb = tracking_pb2
    upload = channel.stream_unary(
        "/modelyard.tracking.v1.TrackingService/UploadArtifact",
        request_serializer=pb.UploadArtifactRequest.SerializeToString,
        response_deserializer=pb.UploadArtifactResponse.FromString,
    )
    rid = str(seed["run_id"])
    header = pb.UploadArtifactRequest(header=pb.UploadArtifactHeader(run_id=rid, path="a.txt"))
    bad_digest = pb.UploadArtifactRequest(
        header=pb.UploadArtifactHeader(run_id=rid, path="a", sha256="nothex")
    )
    for requests in (
        [],
        [pb.UploadArtifactRequest(chunk=b"bytes first")],
        [header, header],
        [bad_digest],
    ):
        with pytest.raises(grpc.RpcError) as err:
            upload(iter(requests), timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert from_rpc_error(err.value).field in ("header", "sha256")


def test_bad_input_loses_no_data(
    channel: grpc.Channel, client: Client, server: ModelyardServer, seed: dict[str, object]
) -> None:
    for module, method in UNARY:
        if method.name.startswith(MUTATING):
            continue
        for _label, msg in _variants(_request_class(module, method), seed):
            _call(channel, method, msg.SerializeToString())
    run = client.get_run(str(seed["run_id"]))
    assert run.data.params["keep"] == "me"
    assert run.data.metrics["m"] == 1.0
    assert client.get_model_version_by_alias("seed", "champion").version == 1
    assert [f.path for f in client.list_model_version_artifacts("seed", 1)] == ["MLmodel"]
    with FeatureStoreClient(server.address) as features:
        assert features.get_definition("feature_view", "seed")[1] == 1
        online = features.get_online_features("seed", [{"driver_id": 1}])
        assert online.to_dict()["trips"] == [35]


def test_timestamps_out_of_range_name_the_field(
    channel: grpc.Channel, seed: dict[str, object]
) -> None:
    pb = tracking_pb2
    service = pb.DESCRIPTOR.services_by_name["TrackingService"]
    rid = str(seed["run_id"])
    for bad in (Timestamp(seconds=253_402_300_800), Timestamp(seconds=1, nanos=-1)):
        metric = pb.Metric(key="m", value=1, timestamp=bad)
        for method, request, field in (
            ("LogMetric", pb.LogMetricRequest(run_id=rid, key="m", timestamp=bad), "timestamp"),
            ("LogBatch", pb.LogBatchRequest(run_id=rid, metrics=[metric]), "metrics.timestamp"),
            (
                "LogBatch",
                pb.LogBatchRequest(run_id=rid, metrics=[metric], params=[pb.Param(key="p")]),
                "metrics.timestamp",
            ),
        ):
            err = _call(channel, service.methods_by_name[method], request.SerializeToString())
            assert err is not None, (method, bad)
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, err.details())
            assert from_rpc_error(err).field == field
            assert "outside 0001-01-01 to 9999-12-31" in err.details()
