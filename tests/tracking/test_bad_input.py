"""Every tracking RPC, driven with missing, empty, oversized and wrong-typed input.

The rule: a clear status that is never INTERNAL or UNKNOWN, a message that names the field or the
resource, and no damage to data that was already there.
"""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from modelyard._gen.tracking.v1 import tracking_pb2 as pb
from modelyard.errors import from_rpc_error
from modelyard.services.common.server import ModelyardServer

SERVICE = pb.DESCRIPTOR.services_by_name["TrackingService"]
UNARY = [m for m in SERVICE.methods if not m.client_streaming and not m.server_streaming]
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.OK}
HUGE = "x" * 70_000
STRANGE = ["", " ", "../../etc/passwd", "\u202e\U0001f600", "' OR 1=1 --", HUGE]


def _call(channel: grpc.Channel, method, payload: bytes) -> grpc.RpcError | None:
    path = f"/{SERVICE.full_name}/{method.name}"
    if method.server_streaming:
        stub = channel.unary_stream(path, request_serializer=None, response_deserializer=None)
        try:
            list(stub(payload, timeout=30))
        except grpc.RpcError as err:
            return err
        return None
    if method.client_streaming:
        stub = channel.stream_unary(path, request_serializer=None, response_deserializer=None)
        try:
            stub(iter([payload]), timeout=30)
        except grpc.RpcError as err:
            return err
        return None
    stub = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
    try:
        stub(payload, timeout=30)
    except grpc.RpcError as err:
        return err
    return None


def _assert_clear(err: grpc.RpcError | None, what: str) -> None:
    if err is None:
        return  # accepted: some "strange" values are legal (a tag value may be anything)
    assert err.code() not in NEVER, f"{what}: {err.code()} {err.details()}"
    assert err.details(), f"{what}: status without a message"
    assert "Traceback" not in err.details() and 'File "' not in err.details(), what
    rebuilt = from_rpc_error(err)
    if err.code() == grpc.StatusCode.INVALID_ARGUMENT:
        assert rebuilt.field, f"{what}: INVALID_ARGUMENT without a field: {err.details()}"
    if err.code() == grpc.StatusCode.NOT_FOUND:
        assert rebuilt.resource_type, f"{what}: NOT_FOUND without a resource: {err.details()}"


@pytest.fixture
def channel(server: ModelyardServer):
    with grpc.insecure_channel(server.address) as ch:
        yield ch


@pytest.fixture
def existing_run(channel: grpc.Channel) -> str:
    stub = channel.unary_unary(
        f"/{SERVICE.full_name}/CreateRun",
        request_serializer=pb.CreateRunRequest.SerializeToString,
        response_deserializer=pb.CreateRunResponse.FromString,
    )
    rid = stub(pb.CreateRunRequest(experiment_id="0")).run.info.run_id
    log = channel.unary_unary(
        f"/{SERVICE.full_name}/LogBatch",
        request_serializer=pb.LogBatchRequest.SerializeToString,
        response_deserializer=pb.LogBatchResponse.FromString,
    )
    log(
        pb.LogBatchRequest(
            run_id=rid,
            params=[pb.Param(key="keep", value="me")],
            metrics=[pb.Metric(key="m", value=1.0, step=1)],
        )
    )
    return rid


def _request_class(method) -> type[Message]:
    return getattr(pb, method.input_type.name)


@pytest.mark.parametrize("method", list(SERVICE.methods), ids=lambda m: m.name)
def test_empty_request(channel: grpc.Channel, method) -> None:
    _assert_clear(_call(channel, method, b""), f"{method.name}(empty)")


@pytest.mark.parametrize("method", list(SERVICE.methods), ids=lambda m: m.name)
def test_undecodable_bytes(channel: grpc.Channel, method) -> None:
    # Field 1 as a length-delimited value longer than the message, then invalid UTF-8.
    for payload in (b"\x0a\xff\x01abc", b"\x0a\x02\xff\xfe", b"\xff\xff\xff\xff"):
        err = _call(channel, method, payload)
        assert err is not None, f"{method.name} accepted garbage {payload!r}"
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (method.name, err.details())
        assert method.input_type.full_name in err.details()


def _variants(message_cls: type[Message], run_id: str):
    """Requests with one field at a time set to an unusual value (strings, numbers, enums)."""
    for field in message_cls.DESCRIPTOR.fields:
        if field.message_type is not None:
            continue
        repeated = field.is_repeated
        if field.type == FieldDescriptor.TYPE_STRING:
            values = STRANGE
        elif field.type == FieldDescriptor.TYPE_ENUM:
            values = [99, -1]
        elif field.type in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64):
            values = [-1, 2**31 - 1]
        elif field.type == FieldDescriptor.TYPE_BOOL:
            values = [True]
        else:
            continue
        for value in values:
            msg = message_cls()
            if "run_id" in message_cls.DESCRIPTOR.fields_by_name and field.name != "run_id":
                msg.run_id = run_id
            if repeated:
                getattr(msg, field.name).append(value)
            else:
                setattr(msg, field.name, value)
            yield f"{field.name}={str(value)[:20]!r}", msg


@pytest.mark.parametrize("method", UNARY, ids=lambda m: m.name)
def test_unusual_field_values(channel: grpc.Channel, existing_run: str, method) -> None:
    for label, msg in _variants(_request_class(method), existing_run):
        _assert_clear(_call(channel, method, msg.SerializeToString()), f"{method.name}({label})")


def test_batch_limits_name_the_field(channel: grpc.Channel, existing_run: str) -> None:
    method = SERVICE.methods_by_name["LogBatch"]
    cases = {
        "metrics": pb.LogBatchRequest(
            run_id=existing_run, metrics=[pb.Metric(key="m", value=1) for _ in range(1001)]
        ),
        "params": pb.LogBatchRequest(
            run_id=existing_run, params=[pb.Param(key=f"p{i}", value="v") for i in range(101)]
        ),
        "tags": pb.LogBatchRequest(
            run_id=existing_run,
            tags=[pb.LogBatchRequest().tags.add(key=f"t{i}", value="v") for i in range(101)],
        ),
    }
    for field, request in cases.items():
        err = _call(channel, method, request.SerializeToString())
        assert err is not None and err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert from_rpc_error(err).field == field
        assert "at most" in err.details()


def test_oversized_values(channel: grpc.Channel, existing_run: str) -> None:
    method = SERVICE.methods_by_name["LogBatch"]
    cases = [
        pb.LogBatchRequest(run_id=existing_run, params=[pb.Param(key="big", value="v" * 6001)]),
        pb.LogBatchRequest(run_id=existing_run, metrics=[pb.Metric(key="k" * 251, value=1)]),
    ]
    for request in cases:
        err = _call(channel, method, request.SerializeToString())
        assert err is not None and err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "limit" in err.details() or "characters" in err.details()


def test_message_over_the_size_limit(channel: grpc.Channel, existing_run: str) -> None:
    request = pb.SetTagRequest(run_id=existing_run, key="k", value="v" * (65 * 1024 * 1024))
    err = _call(channel, SERVICE.methods_by_name["SetTag"], request.SerializeToString())
    assert err is not None and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_upload_stream_protocol_errors(channel: grpc.Channel, existing_run: str) -> None:
    path = f"/{SERVICE.full_name}/UploadArtifact"
    upload = channel.stream_unary(
        path,
        request_serializer=pb.UploadArtifactRequest.SerializeToString,
        response_deserializer=pb.UploadArtifactResponse.FromString,
    )
    header = pb.UploadArtifactRequest(
        header=pb.UploadArtifactHeader(run_id=existing_run, path="a.txt")
    )
    for requests in (
        [],
        [pb.UploadArtifactRequest(chunk=b"bytes before the header")],
        [header, header],
        [
            pb.UploadArtifactRequest(
                header=pb.UploadArtifactHeader(run_id=existing_run, path="a", sha256="nothex")
            )
        ],
    ):
        with pytest.raises(grpc.RpcError) as err:
            upload(iter(requests), timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert from_rpc_error(err.value).field in ("header", "sha256")


def test_bad_input_loses_no_data(channel: grpc.Channel, existing_run: str) -> None:
    for method in UNARY:
        for _label, msg in _variants(_request_class(method), existing_run):
            if method.name in ("DeleteRun", "DeleteTag", "UpdateRun", "DeleteExperiment"):
                continue  # legitimate changes, not bad input
            _call(channel, method, msg.SerializeToString())
    get = channel.unary_unary(
        f"/{SERVICE.full_name}/GetRun",
        request_serializer=pb.GetRunRequest.SerializeToString,
        response_deserializer=pb.GetRunResponse.FromString,
    )
    run = get(pb.GetRunRequest(run_id=existing_run)).run
    assert {p.key: p.value for p in run.data.params}["keep"] == "me"
    assert [m.value for m in run.data.metrics if m.key == "m"] == [1.0]
