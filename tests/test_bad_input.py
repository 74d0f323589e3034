"""Every RPC of every service, driven with missing, empty, oversized and wrong-typed input.

The rule: a clear status that is never INTERNAL or UNKNOWN, a message that names the field (for
INVALID_ARGUMENT) or the resource (for NOT_FOUND), and no damage to data that was already there.
The other services' RPCs with message-typed fields are also driven from a valid request (NESTED),
one change inside those messages at a time. TrackingService goes deepest: each RPC from a valid
request, one field at a time, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from dataclasses import field as attribute
from datetime import timedelta
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, TypeAlias

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import MetaData, Table, select

from modelyard import Client
from modelyard._gen.auth.v1 import auth_pb2
from modelyard._gen.common.v1 import common_pb2
from modelyard._gen.features.v1 import features_pb2
from modelyard._gen.inference import grpc_predict_v2_pb2
from modelyard._gen.registry.v1 import registry_pb2
from modelyard._gen.serving.v1 import serving_pb2
from modelyard._gen.tracking.v1 import tracking_pb2, tracking_pb2_grpc
from modelyard.errors import ModelyardError, NotFound, from_rpc_error
from modelyard.features import FeatureService, FeatureStoreClient
from modelyard.services.common.db import Database
from modelyard.services.common.server import ModelyardServer
from modelyard.services.common.settings import Settings
from tests.conftest import running_server
from tests.features.repo import NOW, make_repo

if TYPE_CHECKING:
    from google._upb._message import Descriptor as UpbDescriptor
    from google._upb._message import FieldDescriptor as UpbFieldDescriptor

    # A message's descriptors as typeshed has them: protobuf's Python classes or upb's C ones.
    AnyDescriptor: TypeAlias = Descriptor | UpbDescriptor
    AnyField: TypeAlias = FieldDescriptor | UpbFieldDescriptor

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
# TrackingService has its own, deeper, field-by-field test below.
OTHER_UNARY = [(m, d) for m, d in UNARY if m is not tracking_pb2]
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
HUGE = "x" * 70_000
# Short as text, but a name no file system takes (300 bytes in UTF-8; most allow 255).
LONG_NAME = "\u5b9e" * 100
STRANGE = ["", " ", "../../etc/passwd", "\u202e\U0001f600", "' OR 1=1 --", HUGE, LONG_NAME]
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
    # What the client sees when a status overflows gRPC's metadata limit, instead of the error.
    assert "Stream removed" not in err.details(), f"{what}: the status was too large to send"
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


@pytest.fixture(scope="module")
def shared_channel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[grpc.Channel]:
    """One server for requests that carry nothing usable (empty or undecodable): what they may
    create (a run in the Default experiment) changes no other such request's outcome, and a
    server per RPC would cost a minute."""
    home = tmp_path_factory.mktemp("shared") / "home"
    settings = Settings(home=home, host="127.0.0.1", port=0, grace_period=0)
    with running_server(settings) as server, grpc.insecure_channel(server.address) as ch:
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
            values: list[object] = list(STRANGE)
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


# -- Message-typed fields of the other services ------------------------------------------------
#
# Each variant starts from a request the seeded server accepts (NESTED) and changes one thing inside
# one of its message fields (singular, repeated or map): a scalar set to an odd value, the message
# left empty, a repeated field emptied, swollen or given a duplicate. A refusal must name a field
# on the varied path, from the request's root (`endpoint.served_models[0].traffic_percent`).

NESTED_TEXT = ["", HUGE, "nul\x00byte", "\u202e\U0001f600"]
NESTED_INT32 = [-1, -(2**31), 2**31 - 1]
NESTED_INT64 = [-1, -(2**63), 2**63 - 1]
NESTED_FLOAT = [math.nan, math.inf, -math.inf, -1.0]
MANY_MESSAGES = 10_001  # one over the largest per-request list limit (10,000)
MANY_SCALARS = 100_001
# What a repeated scalar field is swollen with when the valid request leaves it empty.
ZERO = {
    FieldDescriptor.TYPE_STRING: "",
    FieldDescriptor.TYPE_BYTES: b"",
    FieldDescriptor.TYPE_BOOL: False,
}
KEY_FIELDS = ("name", "key", "principal", "request_id", "feature_view")


@dataclass(frozen=True)
class Nested:
    """A valid request for an RPC with message-typed fields, and what keeps its variants apart."""

    build: Callable[[grpc.Channel, dict[str, object]], Message]
    fresh: tuple[str, ...] = ()  # singular string fields made unique per variant (dotted paths)
    # Varied path -> another field a refusal may name instead (the two only hold together).
    also_at_fault: dict[str, str] = attribute(default_factory=dict)
    # Varied path -> values that must be refused (INVALID_ARGUMENT naming the field): those
    # the server would otherwise store, where PostgreSQL cannot (NUL, over a column's length).
    refuse: dict[str, list[object]] = attribute(default_factory=dict)
    # How the valid request is answered (None: accepted), so its variants reach the checks.
    answer: frozenset[grpc.StatusCode | None] = frozenset({None})


def _serving(channel: grpc.Channel, rpc: str, request: Message) -> None:
    path = f"/{serving_pb2.DESCRIPTOR.services_by_name['ServingService'].full_name}/{rpc}"
    channel.unary_unary(path)(request.SerializeToString(), timeout=30)


def _endpoint(name: str) -> serving_pb2.Endpoint:
    return serving_pb2.Endpoint(
        name=name,
        served_models=[
            serving_pb2.ServedModel(
                name="a",
                model_uri="models:/seed/1",
                traffic_percent=100,
                batching=serving_pb2.BatchingConfig(max_batch_size=8, max_queue_delay_micros=10),
            )
        ],
        inference_log=serving_pb2.InferenceLogConfig(enabled=True, sampling_rate=0.5),
        missing_features=serving_pb2.MISSING_FEATURE_POLICY_FAIL,
    )


def _existing_endpoint(channel: grpc.Channel) -> str:
    """An endpoint for requests that need one, created by the first of them."""
    try:
        _serving(
            channel, "CreateEndpoint", serving_pb2.CreateEndpointRequest(endpoint=_endpoint("e"))
        )
    except grpc.RpcError as err:
        if err.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise
    return "e"


def _definitions(
    channel: grpc.Channel, seed: dict[str, object]
) -> features_pb2.ApplyDefinitionsRequest:
    """An entity, a view over the seed view's file and a service using it, all new; partial, so
    what the request leaves out (the seed) stays."""
    service = features_pb2.DESCRIPTOR.services_by_name["FeatureStoreService"]
    got = channel.unary_unary(f"/{service.full_name}/GetDefinition")(
        features_pb2.GetDefinitionRequest(
            kind="feature_view", name=str(seed["feature_view"])
        ).SerializeToString(),
        timeout=30,
    )
    source = features_pb2.GetDefinitionResponse.FromString(got).definition.feature_view.source
    tag = common_pb2.Tag(key="team", value="risk")
    entity = features_pb2.Entity(
        name="rider",
        join_keys=[features_pb2.Field(name="driver_id", dtype=features_pb2.VALUE_TYPE_INT64)],
        tags=[tag],
    )
    view = features_pb2.FeatureView(
        name="rides",
        entities=["rider"],
        schema=[features_pb2.Field(name="trips", dtype=features_pb2.VALUE_TYPE_INT64)],
        source=source,
        online=True,
        tags=[tag],
    )
    view.ttl.FromSeconds(3600)
    service_def = features_pb2.FeatureService(
        name="riding",
        projections=[features_pb2.FeatureViewProjection(feature_view="rides", features=["trips"])],
        tags=[tag],
    )
    return features_pb2.ApplyDefinitionsRequest(
        definitions=[
            features_pb2.Definition(entity=entity),
            features_pb2.Definition(feature_view=view),
            features_pb2.Definition(feature_service=service_def),
        ],
        partial=True,
    )


def _infer(channel: grpc.Channel, seed: dict[str, object]) -> grpc_predict_v2_pb2.ModelInferRequest:
    oip = grpc_predict_v2_pb2
    request = oip.ModelInferRequest(
        model_name=_existing_endpoint(channel),
        id="r1",
        inputs=[
            oip.ModelInferRequest.InferInputTensor(
                name="x",
                datatype="FP64",
                shape=[1, 2],
                contents=oip.InferTensorContents(fp64_contents=[1.0, 2.0]),
            )
        ],
        outputs=[oip.ModelInferRequest.InferRequestedOutputTensor(name="y")],
    )
    request.parameters["content_type"].string_param = "np"
    request.inputs[0].parameters["content_type"].string_param = "np"
    request.outputs[0].parameters["binary_data"].bool_param = False
    return request


def _repository(
    cls: type[
        grpc_predict_v2_pb2.RepositoryModelLoadRequest
        | grpc_predict_v2_pb2.RepositoryModelUnloadRequest
    ],
) -> Callable[[grpc.Channel, dict[str, object]], Message]:
    def build(channel: grpc.Channel, seed: dict[str, object]) -> Message:
        request = cls(model_name=_existing_endpoint(channel))
        request.parameters["mode"].string_param = "x"
        return request

    return build


def _grant() -> common_pb2.Grant:
    return common_pb2.Grant(principal="alice", level=common_pb2.PERMISSION_LEVEL_READ)


def _audit_events() -> auth_pb2.RecordAuditEventsRequest:
    event = auth_pb2.AuditEvent(
        principal="alice", service="s", method="m", resource="r", outcome="OK", request_id="q"
    )
    event.event_time.CopyFrom(SEED_TIME)
    return auth_pb2.RecordAuditEventsRequest(events=[event])


TAGS = [common_pb2.Tag(key="team", value="risk")]
# A grant's principal is stored in a 256-character column; grants.level out of range too.
BAD_PRINCIPALS: dict[str, list[object]] = {
    "grant.principal": ["", HUGE, "nul\x00byte"],
    "grant.level": [99, -1],
}
# Per RPC (Service.Method), its valid request; every RPC with a message-typed field has one.
NESTED: dict[str, Nested] = {
    "ModelRegistryService.CreateRegisteredModel": Nested(
        lambda ch, s: registry_pb2.CreateRegisteredModelRequest(name="nested", tags=TAGS),
        fresh=("name",),
    ),
    "ModelRegistryService.CreateModelVersion": Nested(
        lambda ch, s: registry_pb2.CreateModelVersionRequest(
            name=str(s["name"]),
            source=f"runs:/{s['run_id']}/model",
            run_id=str(s["run_id"]),
            tags=TAGS,
        )
    ),
    "ModelRegistryService.SetRegisteredModelPermission": Nested(
        lambda ch, s: registry_pb2.SetRegisteredModelPermissionRequest(
            name=str(s["name"]), grant=_grant()
        ),
        refuse=BAD_PRINCIPALS,
    ),
    "AuthService.RecordAuditEvents": Nested(lambda ch, s: _audit_events()),
    "ServingService.CreateEndpoint": Nested(
        lambda ch, s: serving_pb2.CreateEndpointRequest(endpoint=_endpoint("nested")),
        fresh=("endpoint.name",),
    ),
    "ServingService.UpdateEndpoint": Nested(
        lambda ch, s: serving_pb2.UpdateEndpointRequest(endpoint=_endpoint(_existing_endpoint(ch)))
    ),
    # No request was logged (the seed's model does not load): values are checked before ids.
    "ServingService.LogGroundTruth": Nested(
        lambda ch, s: serving_pb2.LogGroundTruthRequest(
            endpoint=_existing_endpoint(ch),
            ground_truth=[serving_pb2.GroundTruth(request_id="r1", value_json="[1, 2]")],
        ),
        answer=frozenset({grpc.StatusCode.NOT_FOUND}),
    ),
    "ServingService.SetEndpointPermission": Nested(
        lambda ch, s: serving_pb2.SetEndpointPermissionRequest(
            name=_existing_endpoint(ch), grant=_grant()
        ),
        refuse=BAD_PRINCIPALS,
    ),
    # A shape and the values it counts hold together: either may be what is wrong. The seed's
    # model does not load (its MLmodel is text), so what is reached is the decoding of inputs.
    "GRPCInferenceService.ModelInfer": Nested(
        _infer,
        also_at_fault={"inputs.shape": "inputs.contents"},
        answer=frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.FAILED_PRECONDITION}),
    ),
    # A load with parameters (Triton's config and file overrides) is refused, whatever they hold.
    "GRPCInferenceService.RepositoryModelLoad": Nested(
        _repository(grpc_predict_v2_pb2.RepositoryModelLoadRequest),
        answer=frozenset({grpc.StatusCode.UNIMPLEMENTED}),
    ),
    "GRPCInferenceService.RepositoryModelUnload": Nested(
        _repository(grpc_predict_v2_pb2.RepositoryModelUnloadRequest)
    ),
    # Triton's trace and log extensions: settings are read, never changed (UNIMPLEMENTED says
    # what to use instead), whatever they hold.
    "GRPCInferenceService.TraceSetting": Nested(
        lambda ch, s: grpc_predict_v2_pb2.TraceSettingRequest(
            settings={
                "trace_level": grpc_predict_v2_pb2.TraceSettingRequest.SettingValue(
                    value=["TIMESTAMPS"]
                )
            },
            model_name=_existing_endpoint(ch),
        ),
        answer=frozenset({grpc.StatusCode.UNIMPLEMENTED}),
    ),
    "GRPCInferenceService.LogSettings": Nested(
        lambda ch, s: grpc_predict_v2_pb2.LogSettingsRequest(
            settings={
                "log_info": grpc_predict_v2_pb2.LogSettingsRequest.SettingValue(bool_param=False)
            }
        ),
        answer=frozenset({grpc.StatusCode.UNIMPLEMENTED}),
    ),
    # A feature renamed is one the service no longer finds.
    "FeatureStoreService.ApplyDefinitions": Nested(
        _definitions,
        also_at_fault={
            "definitions.feature_view.schema.name": "definitions.feature_service.projections"
        },
    ),
    "FeatureStoreService.Materialize": Nested(
        lambda ch, s: features_pb2.MaterializeRequest(
            feature_views=[str(s["feature_view"])],
            start_time=Timestamp(seconds=int((NOW - timedelta(days=30)).timestamp())),
            end_time=Timestamp(seconds=int((NOW + timedelta(hours=1)).timestamp())),
        ),
        also_at_fault={"end_time": "start_time", "end_time.seconds": "start_time"},
    ),
    "FeatureStoreService.GetOnlineFeatures": Nested(
        lambda ch, s: features_pb2.GetOnlineFeaturesRequest(
            features=[f"{s['feature_view']}:trips"],
            entities=[
                features_pb2.EntityColumn(
                    name="driver_id", values=[features_pb2.Value(int64_val=1)]
                )
            ],
        )
    ),
    "FeatureStoreService.SetFeaturePermission": Nested(
        lambda ch, s: features_pb2.SetFeaturePermissionRequest(
            kind=str(s["kind"]), name=str(s["feature_view"]), grant=_grant()
        ),
        refuse=BAD_PRINCIPALS,
    ),
}


def _has_message_field(descriptor: object) -> bool:
    return any(f.message_type is not None for f in descriptor.fields)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class OddValues:
    """The unusual values a test tries for each scalar type."""

    text: Sequence[str]
    floats: Sequence[float]
    int32: Sequence[int]
    int64: Sequence[int]
    enums: Sequence[int]


# For scalars inside messages: fewer than the tracking section's, so every message field of every
# service fits in the time a test may take.
NESTED_ODD = OddValues(NESTED_TEXT, NESTED_FLOAT, NESTED_INT32, NESTED_INT64, (99, -1))


def _odd(field: AnyField, current: object, odd: OddValues) -> list[object]:
    if field.type == FieldDescriptor.TYPE_STRING:
        return list(odd.text)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return [b"", b"\xff" * 70_000]
    if field.type == FieldDescriptor.TYPE_ENUM:
        return list(odd.enums)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return [not current]
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return list(odd.floats)
    if field.type in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32):
        return list(odd.int32)
    if field.type in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64):
        return list(odd.int64)
    if field.type == FieldDescriptor.TYPE_UINT32:
        return [2**32 - 1]
    if field.type == FieldDescriptor.TYPE_UINT64:
        return [2**64 - 1]
    raise AssertionError(f"no odd values for {field.full_name}; add them here")


# A change to a copy of the valid request: (path of the varied field, without indices; label).
Change = tuple[str, str, Callable[[Message], None]]


def _at(getter: Callable[[Message], Message], name: str) -> Callable[[Message], Message]:
    """The getter of message field `name` of what `getter` reaches."""
    return lambda m: getattr(getter(m), name)


def _inside(
    getter: Callable[[Message], Message], msg: Message, path: str, label: str
) -> Iterator[Change]:
    """Changes to every field of `msg` (reached in a request by `getter`); for the request
    itself only to its message and repeated fields (single scalars are _variants' work)."""
    for field in msg.DESCRIPTOR.fields:
        if not path and field.message_type is None and not field.is_repeated:
            continue
        sub_path, sub_label = f"{path}.{field.name}", f"{label}.{field.name}"
        if field.containing_oneof is not None and not msg.HasField(field.name):
            yield from _other_member(getter, field, sub_path, sub_label)
        elif field.message_type is not None:
            yield from _message_changes(getter, msg, field, sub_path, sub_label)
        else:
            yield from _scalar_changes(getter, msg, field, sub_path, sub_label)


def _other_member(
    getter: Callable[[Message], Message], field: AnyField, path: str, label: str
) -> Iterator[Change]:
    """Changes that put another member of a oneof in use: a scalar at its odd values, a
    message empty. Only into a Timestamp or Duration does it go further: empty, those are valid
    values, so a refusal can only be about the odd part (an empty Entity is refused for its
    missing name, whatever else is odd in it)."""
    if field.message_type is None:
        for value in _odd(field, None, NESTED_ODD):
            yield (
                path,
                f"{label}={_label(value)}",
                partial(_put, getter=getter, name=field.name, value=value),
            )
        return
    yield path, f"{label}={{}}", partial(_empty_in, getter=getter, name=field.name)
    if field.message_type.full_name.startswith("google.protobuf."):
        # typeshed's GetMessageClass names protobuf's Descriptor only; upb's works as well.
        empty = GetMessageClass(field.message_type)()  # type: ignore[arg-type]  # see above
        yield from _inside(_at(getter, field.name), empty, path, label)


def _scalar_changes(
    getter: Callable[[Message], Message],
    msg: Message,
    field: AnyField,
    path: str,
    label: str,
) -> Iterator[Change]:
    name = field.name
    if not field.is_repeated:
        for value in _odd(field, getattr(msg, name), NESTED_ODD):
            yield (
                path,
                f"{label}={_label(value)}",
                partial(_put, getter=getter, name=name, value=value),
            )
        return
    entries = list(getattr(msg, name))
    sample = entries[0] if entries else ZERO.get(field.type, 0)
    yield path, f"{label}=[]", lambda m: getter(m).ClearField(name)
    yield (
        path,
        f"{label}=[{MANY_SCALARS} entries]",
        lambda m: getattr(getter(m), name).extend([sample] * MANY_SCALARS),
    )
    for value in _odd(field, sample, NESTED_ODD):
        yield (
            path,
            f"{label}[0]={_label(value)}",
            partial(_put_first, getter=getter, name=name, value=value),
        )


def _put(m: Message, *, getter: Callable[[Message], Message], name: str, value: object) -> None:
    setattr(getter(m), name, value)


def _put_first(
    m: Message, *, getter: Callable[[Message], Message], name: str, value: object
) -> None:
    entries = getattr(getter(m), name)
    if entries:
        entries[0] = value
    else:
        entries.append(value)


def _message_changes(
    getter: Callable[[Message], Message],
    msg: Message,
    field: AnyField,
    path: str,
    label: str,
) -> Iterator[Change]:
    name = field.name
    assert field.message_type is not None  # _inside sends message fields here
    if field.message_type.GetOptions().map_entry:
        yield from _map_changes(getter, msg, field, path, label)
    elif field.is_repeated:
        entries = list(getattr(msg, name))
        yield path, f"{label}=[]", lambda m: getter(m).ClearField(name)
        yield path, f"{label}+=[{{}}]", lambda m: getattr(getter(m), name).add()
        if not entries:
            return
        yield path, f"{label}=[{MANY_MESSAGES} entries]", partial(_swell, getter=getter, name=name)
        yield (
            path,
            f"{label}+=[a duplicate of [0]]",
            lambda m: getattr(getter(m), name).append(getattr(getter(m), name)[0]),
        )
        for i, entry in enumerate(entries):
            entry_getter = partial(_entry, getter=getter, name=name, index=i)
            yield from _inside(entry_getter, entry, path, f"{label}[{i}]")
    else:
        yield path, f"{label}=missing", lambda m: getter(m).ClearField(name)
        yield path, f"{label}={{}}", partial(_empty_in, getter=getter, name=name)
        if msg.HasField(name):
            yield from _inside(_at(getter, name), getattr(msg, name), path, label)


def _entry(m: Message, *, getter: Callable[[Message], Message], name: str, index: int) -> Message:
    return getattr(getter(m), name)[index]


def _empty_in(m: Message, *, getter: Callable[[Message], Message], name: str) -> None:
    _empty(getter(m), name)


def _swell(m: Message, *, getter: Callable[[Message], Message], name: str) -> None:
    """Copies of the first entry, keyed apart where they have a key, so only the count is odd."""
    entries = getattr(getter(m), name)
    first = entries[0]
    key = next((k for k in KEY_FIELDS if k in first.DESCRIPTOR.fields_by_name), None)
    for i in range(1, MANY_MESSAGES):
        entry = entries.add()
        entry.CopyFrom(first)
        if key and entry.DESCRIPTOR.fields_by_name[key].type == FieldDescriptor.TYPE_STRING:
            setattr(entry, key, f"{getattr(entry, key)}{i}")


def _map_changes(
    getter: Callable[[Message], Message],
    msg: Message,
    field: AnyField,
    path: str,
    label: str,
) -> Iterator[Change]:
    name = field.name
    entries = getattr(msg, name)
    assert field.message_type is not None  # a map: a repeated message field
    value_field = field.message_type.fields_by_name["value"]
    yield path, f"{label}={{}}", lambda m: getter(m).ClearField(name)
    for key in list(entries):
        for odd in NESTED_TEXT:
            yield (
                path,
                f"{label}[{_label(odd)}]",
                partial(_rekey, getter=getter, name=name, old=key, new=odd),
            )
        yield (
            path,
            f"{label}[{key!r}]={{}}",
            partial(_empty_value, getter=getter, name=name, key=key),
        )
        if value_field.message_type is not None:
            value_getter = partial(_map_value, getter=getter, name=name, key=key)
            yield from _inside(value_getter, entries[key], path, f"{label}[{key!r}]")
    if entries:
        key = next(iter(entries))
        yield (
            path,
            f"{label}=[{MANY_MESSAGES} entries]",
            partial(_swell_map, getter=getter, name=name, key=key),
        )


def _rekey(
    m: Message, *, getter: Callable[[Message], Message], name: str, old: str, new: str
) -> None:
    entries = getattr(getter(m), name)
    value = entries[old]
    if isinstance(value, Message):
        entries[new].CopyFrom(value)
    else:
        entries[new] = value
    del entries[old]


def _empty_value(m: Message, *, getter: Callable[[Message], Message], name: str, key: str) -> None:
    entries = getattr(getter(m), name)
    del entries[key]
    entries[key]  # reading a missing key adds it, with the empty value


def _map_value(m: Message, *, getter: Callable[[Message], Message], name: str, key: str) -> Message:
    return getattr(getter(m), name)[key]


def _swell_map(m: Message, *, getter: Callable[[Message], Message], name: str, key: str) -> None:
    entries = getattr(getter(m), name)
    for i in range(1, MANY_MESSAGES):
        if isinstance(entries[key], Message):
            entries[f"{key}{i}"].CopyFrom(entries[key])
        else:
            entries[f"{key}{i}"] = entries[key]


def _nested_valid(
    item: tuple[ModuleType, MethodDescriptor], channel: grpc.Channel, seed: dict[str, object]
) -> Message | None:
    """The valid request of `item`'s RPC, if it has message-typed fields (else None)."""
    if not _has_message_field(item[1].input_type):
        return None
    nested = NESTED.get(_id(item))
    assert nested is not None, f"{_id(item)} has message fields: add its valid request to NESTED"
    return nested.build(channel, seed)


def _nested_variants(
    item: tuple[ModuleType, MethodDescriptor], valid: Message
) -> Iterator[Variant]:
    """A variant of `valid` for every change inside its message (and repeated) fields."""
    nested = NESTED[_id(item)]
    root = lambda m: m  # noqa: E731
    for n, (path, label, change) in enumerate(_inside(root, valid, "", "")):
        msg = _copy(valid)
        change(msg)
        path, label = path.lstrip("."), label.lstrip(".")
        for fresh in nested.fresh:
            if not _related(fresh, path):  # a message varied around it stays as varied
                _suffix(msg, fresh, f"-{n}")
        refuse = any(label.endswith(f"={_label(value)}") for value in nested.refuse.get(path, ()))
        yield Variant(path, label, msg.SerializeToString(), refuse)


def _nested_problem(
    what: str, variant: Variant, err: grpc.RpcError | None, also: str | None
) -> str | None:
    """What is wrong with the answer to `variant` (a refusal may name `also` instead, a field
    that only holds together with the varied one), or None."""
    if err is None:
        return f"{what}: accepted; it must be refused" if variant.refuse else None
    code, details = err.code(), err.details() or ""
    if code in NEVER or not details.strip() or "Traceback" in details or 'File "' in details:
        return f"{what}: {code.name}: {details[:300]}"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"{what}: no answer within the call's deadline"
    if "Stream removed" in details:
        return f"{what}: the status was too large to send"
    at_fault = (variant.field, also or variant.field)
    return _judge_status(what, err, from_rpc_error(err), at_fault, variant.refuse)


def _judge_status(
    what: str, err: grpc.RpcError, error: ModelyardError, at_fault: Sequence[str], refuse: bool
) -> str | None:
    """The verdict on a clear status: INVALID_ARGUMENT names a field at fault (`at_fault[0]`,
    or one that may be blamed with it) in its message; a refusal the variant demands is
    INVALID_ARGUMENT; NOT_FOUND names its resource."""
    code, details = err.code(), err.details() or ""
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        if not error.field or not any(_related(error.field, f) for f in at_fault):
            return f"{what}: names field {error.field!r}, not {at_fault[0]!r}: {details[:200]}"
        if not _names(details, error.field):
            return f"{what}: the message does not name {error.field!r}: {details[:200]}"
    elif refuse:
        return f"{what}: {code.name}, not INVALID_ARGUMENT naming the field: {details[:200]}"
    elif code == grpc.StatusCode.NOT_FOUND and not error.resource_type:
        return f"{what}: NOT_FOUND without a resource: {details[:200]}"
    return None


@pytest.mark.parametrize("item", METHODS, ids=_id)
def test_empty_request(shared_channel: grpc.Channel, item) -> None:
    _assert_clear(_call(shared_channel, item[1], b""), f"{_id(item)}(empty)")


# Streams that answer each request on its own, errors included (Triton's error_message): a
# request that does not parse is answered in the stream, which goes on.
PER_MESSAGE_ERRORS = {"GRPCInferenceService.ModelStreamInfer"}


@pytest.mark.parametrize("item", METHODS, ids=_id)
def test_undecodable_bytes(shared_channel: grpc.Channel, item) -> None:
    method = item[1]
    # A length-delimited field running past the end and a broken tag; invalid UTF-8 where
    # field 1 is a string (elsewhere unknown bytes are legal, as protobuf intends).
    payloads = [b"\x0a\xff\x01abc", b"\xff\xff\xff\xff"]
    first = method.input_type.fields_by_number.get(1)
    if first is not None and first.type == FieldDescriptor.TYPE_STRING:
        payloads.append(b"\x0a\x02\xff\xfe")
    if _id(item) in PER_MESSAGE_ERRORS:
        stream = shared_channel.stream_stream(
            f"/{method.containing_service.full_name}/{method.name}",
            response_deserializer=GetMessageClass(method.output_type).FromString,
        )
        answers = list(stream(iter(payloads), timeout=30))
        assert len(answers) == len(payloads), _id(item)
        for answer in answers:
            assert method.input_type.full_name in answer.error_message, _id(item)
        return
    for payload in payloads:
        err = _call(shared_channel, method, payload)
        assert err is not None, f"{_id(item)} accepted garbage {payload!r}"
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (_id(item), err.details())
        assert method.input_type.full_name in err.details()


@pytest.mark.parametrize("item", OTHER_UNARY, ids=_id)
def test_unusual_field_values(channel: grpc.Channel, seed: dict[str, object], item) -> None:
    module, method = item
    for label, msg in _variants(_request_class(module, method), seed):
        _assert_clear(_call(channel, method, msg.SerializeToString()), f"{_id(item)}({label})")
    valid = _nested_valid(item, channel, seed)
    if valid is None:
        return
    answer = _call(channel, method, valid.SerializeToString())
    code = None if answer is None else answer.code()
    assert code in NESTED[_id(item)].answer, f"valid {_id(item)}: {answer}"
    problems = []
    for variant in _nested_variants(item, valid):
        also = NESTED[_id(item)].also_at_fault.get(variant.field)
        outcome = _call(channel, method, variant.payload)
        if problem := _nested_problem(f"{_id(item)}({variant.label})", variant, outcome, also):
            problems.append(problem)
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)


def test_bad_input_loses_no_data(
    channel: grpc.Channel, client: Client, server: ModelyardServer, seed: dict[str, object]
) -> None:
    for module, method in OTHER_UNARY:
        if method.name.startswith(MUTATING):
            continue
        for _label, msg in _variants(_request_class(module, method), seed):
            _call(channel, method, msg.SerializeToString())
        valid = _nested_valid((module, method), channel, seed)
        for variant in _nested_variants((module, method), valid) if valid else ():
            _call(channel, method, variant.payload)
    run = client.get_run(str(seed["run_id"]))
    assert run.data.params["keep"] == "me"
    assert run.data.metrics["m"] == 1.0
    assert client.get_model_version_by_alias("seed", "champion").version == 1
    assert [f.path for f in client.list_model_version_artifacts("seed", 1)] == ["MLmodel"]
    with FeatureStoreClient(server.address) as features:
        assert features.get_definition("feature_view", "seed")[1] == 1
        online = features.get_online_features("seed", [{"driver_id": 1}])
        assert online.to_dict()["trips"] == [35]


def test_a_source_without_a_join_key_fails_the_view_not_the_server(
    channel: grpc.Channel, seed: dict[str, object]
) -> None:
    """A view whose source holds no column for its entity's join key is accepted (the source
    may gain it), but materializing it is the definition's fault: FAILED_PRECONDITION naming
    the view, not a server error."""
    features = features_pb2.DESCRIPTOR.services_by_name["FeatureStoreService"]
    definitions = _definitions(channel, seed)
    definitions.definitions[0].entity.join_keys[0].name = "rider_id"
    apply = features.methods_by_name["ApplyDefinitions"]
    assert _call(channel, apply, definitions.SerializeToString()) is None
    request = NESTED["FeatureStoreService.Materialize"].build(channel, seed)
    assert isinstance(request, features_pb2.MaterializeRequest)
    request.feature_views[:] = ["rides"]
    err = _call(channel, features.methods_by_name["Materialize"], request.SerializeToString())
    assert err is not None and err.code() == grpc.StatusCode.FAILED_PRECONDITION, err
    assert from_rpc_error(err).resource_name == "rides"
    assert "rider_id" in err.details(), err.details()


def test_the_longest_ttl_materializes_from_the_first_day(
    channel: grpc.Channel, seed: dict[str, object]
) -> None:
    """A first materialization without start_time starts a ttl before end_time; for the
    longest ttl accepted (10,000 years) that is before year 1, so it starts at year 1."""
    features = features_pb2.DESCRIPTOR.services_by_name["FeatureStoreService"]
    definitions = _definitions(channel, seed)
    definitions.definitions[1].feature_view.ttl.seconds = 315_576_000_000
    apply = features.methods_by_name["ApplyDefinitions"]
    assert _call(channel, apply, definitions.SerializeToString()) is None
    request = NESTED["FeatureStoreService.Materialize"].build(channel, seed)
    assert isinstance(request, features_pb2.MaterializeRequest)
    request.feature_views[:] = ["rides"]
    request.ClearField("start_time")
    path = f"/{features.full_name}/Materialize"
    response = features_pb2.MaterializeResponse.FromString(
        channel.unary_unary(path)(request.SerializeToString(), timeout=30)
    )
    assert [m.start_time.ToJsonString() for m in response.materializations] == [
        "0001-01-01T00:00:00Z"
    ]


@pytest.mark.postgres
def test_audit_events_keep_what_postgres_cannot_store(postgres_url: str, tmp_path: Path) -> None:
    """An audit record is kept as far as its columns hold it: a NUL (which PostgreSQL text
    cannot hold) must not lose the batch to a server error, so the trail has no holes."""
    settings = Settings(
        home=tmp_path / "home",
        host="127.0.0.1",
        port=0,
        grace_period=0,
        backend_store_uri=postgres_url,
    )
    service = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name
    request = _audit_events()
    texts = ("principal", "service", "method", "resource", "outcome", "request_id")
    for name in texts:
        setattr(request.events[0], name, "nul\x00byte")
    with running_server(settings, ("auth",)) as server, grpc.insecure_channel(server.address) as ch:
        ch.unary_unary(f"/{service}/RecordAuditEvents")(request.SerializeToString(), timeout=30)
        listed = auth_pb2.ListAuditEventsResponse.FromString(
            ch.unary_unary(f"/{service}/ListAuditEvents")(b"", timeout=30)
        )
    recorded = [e for e in listed.events if e.method.startswith("nul")]
    assert [getattr(recorded[0], name) for name in texts] == ["nul\ufffdbyte"] * len(texts)


# -- TrackingService: every RPC from a valid request, one field at a time -----------------------
#
# Each variant differs from a request the server accepts in exactly one field (nested and repeated
# fields included), so the odd value reaches the check that must judge it; a refusal must then
# name that very field, and a refused write must leave the seed data exactly as it was.

pb = tracking_pb2
TRACKING = pb.DESCRIPTOR.services_by_name["TrackingService"]
TEXT = [*STRANGE, "nul\x00byte", "new\nline"]
INT32 = [0, -1, -(2**31), 2**31 - 1]  # 0 is also what a missing field reads as
INT64 = [0, -1, -(2**63), 2**63 - 1]
DOUBLE = [math.nan, math.inf, -math.inf, -0.0, 1.7976931348623157e308, 5e-324]
TRACKING_ODD = OddValues(TEXT, DOUBLE, INT32, INT64, (0, 99, -1))
TOO_MANY = 1001  # one over the largest list limit (metrics, datasets, experiment ids)
UPLOADED = b"seed bytes"
UPLOADED_SHA = hashlib.sha256(UPLOADED).hexdigest()
SEED_TIME = Timestamp(seconds=1_700_000_000, nanos=5_000_000)
CLEAR = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
}
WRITERS = ("Create", "Update", "Delete", "Restore", "Set", "Log", "Upload", "Complete")
# Presigned URLs need an object store; on local files the valid request gets this instead.
SEED_REFUSED = {
    "CreateArtifactUploadUrl": grpc.StatusCode.FAILED_PRECONDITION,
    "CreateArtifactDownloadUrl": grpc.StatusCode.FAILED_PRECONDITION,
}
# (RPC, varied field) -> another field the refusal may name instead: with no experiment_id, a run
# goes to the Default experiment, where the valid request's parent run is not.
ALSO_AT_FAULT = {("CreateRun", "experiment_id"): "parent_run_id"}
# Fields made unique per call (unless they are the field being varied): the same name twice
# would be refused as a duplicate, which is not the check the variant is aimed at.
FRESH = {
    "CreateExperiment": ("name", "artifact_location"),
    "UpdateExperiment": ("new_name",),
    "LogParam": ("key",),
    "LogBatch": ("params.key",),
}

BAD_FILTERS = [
    "name = 'unterminated",
    "name = 'nul\x00byte'",
    'params.p = "unterminated',
    "tags.`unterminated = 'x'",
    "metrics.m >",
    "metrics.m > 1 AND",
    "AND metrics.m > 1",
    "metrics.m ~ 1",
    "metrics.m == 1",
    "metrics.m = 'text'",
    "params.p > 1",
    "tags.t LIKE 1",
    "metrics.m IN ()",
    "metrics.m IN (1",
    "metrics.m > 1 OR metrics.m < 0",
    "(metrics.m > 1)",
    "metrics. = 1",
    "nosuch_attribute = 'x'",
    "nosuch.key = 'x'",
    "datasets.nope = 'x'",
    "attributes.experiment_id = 1e999",
    "attributes.start_time > 1e999",
    "tags.t = 'x' AND " * 5000 + "tags.t = 'x'",
    "1" * 70_000 + "x",
    HUGE,
]
BAD_ORDER_BY = [
    "",
    " ",
    "metrics.m SIDEWAYS",
    "metrics.m ASC DESC",
    "nosuch",
    "metrics.",
    "datasets.name",
    "metrics.m, params.p",
    "'quoted'",
    "a" + " " * 70_000 + "x",
    HUGE,
]
BAD_KEYS = ["", " ", "..", "/abs", "a/../b", "new\nline", "k" * 251]
BAD_PATHS = ["../escape", "a/../../b", "/abs", "a\\b", "nul\x00byte", "p" * 5000]


@dataclass(frozen=True)
class Tracked:
    """A tracking server with seed data, and what the valid requests point at."""

    channel: grpc.Channel
    stub: tracking_pb2_grpc.TrackingServiceStub
    db: Database
    tables: list[Table]
    artifact_root: str
    artifact_dir: Path
    experiment_id: str
    victim_experiment_id: str  # renamed, deleted and restored by the valid requests
    run_id: str  # its data must survive every refused call
    victim_run_id: str  # updated, deleted and restored by the valid requests


@dataclass(frozen=True)
class Variant:
    """A request that differs from a valid one in one field, so a refusal must be about it."""

    field: str  # dotted path of the one field that differs from the valid request
    label: str
    payload: bytes
    refuse: bool  # never valid: must be INVALID_ARGUMENT naming the field


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def tracking(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Tracked]:
    """A tracking-only server on each metadata backend, seeded through the API."""
    settings = Settings(
        home=tmp_path / "home",
        host="127.0.0.1",
        port=0,
        grace_period=0,
        backend_store_uri=(
            request.getfixturevalue("postgres_url") if request.param == "postgres" else None
        ),
    )
    with (
        running_server(settings, ("tracking",)) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        stub = tracking_pb2_grpc.TrackingServiceStub(channel)
        tag = common_pb2.Tag
        experiment_id = stub.CreateExperiment(
            pb.CreateExperimentRequest(
                name="fuzz", tags=[tag(key="team", value="risk"), tag(key="victim", value="v")]
            )
        ).experiment_id
        victim_experiment_id = stub.CreateExperiment(
            pb.CreateExperimentRequest(name="victim")
        ).experiment_id
        run_id, victim_run_id = (
            stub.CreateRun(pb.CreateRunRequest(experiment_id=experiment_id)).run.info.run_id
            for _ in range(2)
        )
        for rid in (run_id, victim_run_id):
            stub.LogBatch(
                pb.LogBatchRequest(
                    run_id=rid,
                    metrics=[
                        pb.Metric(key="m", value=v, timestamp=SEED_TIME, step=v) for v in (1, 2)
                    ],
                    params=[pb.Param(key="keep", value="me")],
                    tags=[tag(key="t", value="v"), tag(key="victim", value="v")],
                )
            )
        stub.LogInputs(pb.LogInputsRequest(run_id=run_id, datasets=[_dataset_input()]))
        for path in ("model/MLmodel", "notes/a.txt", "victim.txt"):
            header = pb.UploadArtifactHeader(run_id=run_id, path=path, sha256=UPLOADED_SHA)
            _upload(stub, header, UPLOADED)
        db = Database.from_settings(settings)
        metadata = MetaData()
        metadata.reflect(db.engine)
        yield Tracked(
            channel,
            stub,
            db,
            list(metadata.sorted_tables),
            settings.artifact_root,
            settings.home_dir / "artifacts",
            experiment_id,
            victim_experiment_id,
            run_id,
            victim_run_id,
        )
        db.dispose()


def _dataset_input() -> pb.DatasetInput:
    return pb.DatasetInput(
        dataset=pb.Dataset(
            name="train",
            digest="abc123",
            source_type="local",
            source="file:///data/train.csv",
            schema='{"x": "int"}',
            profile='{"rows": 3}',
        ),
        tags=[common_pb2.Tag(key="mlflow.data.context", value="training")],
    )


def _upload(
    stub: tracking_pb2_grpc.TrackingServiceStub, header: pb.UploadArtifactHeader, data: bytes
) -> pb.UploadArtifactResponse:
    return stub.UploadArtifact(
        iter([pb.UploadArtifactRequest(header=header), pb.UploadArtifactRequest(chunk=data)])
    )


def _valid_requests(t: Tracked) -> dict[str, Message]:
    """One request per RPC that the seeded server accepts, in an order where each valid request
    leaves what the next needs (a grant to delete, a deleted run to restore)."""
    tag, ts = common_pb2.Tag, SEED_TIME
    exp, run, victim = t.experiment_id, t.run_id, t.victim_run_id
    return {
        "CreateExperiment": pb.CreateExperimentRequest(
            name="fresh",
            artifact_location=f"{t.artifact_root}/fresh",
            tags=[tag(key="team", value="risk")],
        ),
        "GetExperiment": pb.GetExperimentRequest(experiment_id=exp),
        "GetExperimentByName": pb.GetExperimentByNameRequest(experiment_name="fuzz"),
        "SearchExperiments": pb.SearchExperimentsRequest(
            filter="name LIKE '%'",
            order_by=["name ASC"],
            max_results=1,
            view_type=common_pb2.VIEW_TYPE_ALL,
        ),
        "UpdateExperiment": pb.UpdateExperimentRequest(
            experiment_id=t.victim_experiment_id, new_name="renamed"
        ),
        "DeleteExperiment": pb.DeleteExperimentRequest(experiment_id=t.victim_experiment_id),
        "RestoreExperiment": pb.RestoreExperimentRequest(experiment_id=t.victim_experiment_id),
        "SetExperimentTag": pb.SetExperimentTagRequest(experiment_id=exp, key="team", value="r"),
        "DeleteExperimentTag": pb.DeleteExperimentTagRequest(experiment_id=exp, key="victim"),
        "SetExperimentPermission": pb.SetExperimentPermissionRequest(
            experiment_id=exp,
            grant=common_pb2.Grant(principal="alice", level=common_pb2.PERMISSION_LEVEL_READ),
        ),
        "DeleteExperimentPermission": pb.DeleteExperimentPermissionRequest(
            experiment_id=exp, principal="alice"
        ),
        "ListExperimentPermissions": pb.ListExperimentPermissionsRequest(experiment_id=exp),
        "CreateRun": pb.CreateRunRequest(
            experiment_id=exp,
            run_name="child",
            start_time=ts,
            tags=[tag(key="team", value="risk")],
            parent_run_id=run,
            user_id="alice",
        ),
        "GetRun": pb.GetRunRequest(run_id=run),
        "UpdateRun": pb.UpdateRunRequest(
            run_id=victim, status=pb.RUN_STATUS_FINISHED, end_time=ts, run_name="renamed"
        ),
        "DeleteRun": pb.DeleteRunRequest(run_id=victim),
        "RestoreRun": pb.RestoreRunRequest(run_id=victim),
        "SearchRuns": pb.SearchRunsRequest(
            experiment_ids=[exp],
            filter="metrics.m > 0 AND params.keep = 'me'",
            run_view_type=common_pb2.VIEW_TYPE_ALL,
            max_results=1,
            order_by=["metrics.m DESC"],
        ),
        "LogParam": pb.LogParamRequest(run_id=run, key="p", value="v"),
        "LogMetric": pb.LogMetricRequest(run_id=run, key="m", value=3, timestamp=ts, step=3),
        "SetTag": pb.SetTagRequest(run_id=run, key="t", value="v"),
        "DeleteTag": pb.DeleteTagRequest(run_id=run, key="victim"),
        "LogBatch": pb.LogBatchRequest(
            run_id=run,
            metrics=[pb.Metric(key="m", value=4, timestamp=ts, step=4)],
            params=[pb.Param(key="bp", value="v")],
            tags=[tag(key="bt", value="v")],
        ),
        "LogInputs": pb.LogInputsRequest(run_id=run, datasets=[_dataset_input()]),
        "GetMetricHistory": pb.GetMetricHistoryRequest(run_id=run, metric_key="m", max_results=1),
        # Sent as the header of a stream whose one chunk is UPLOADED.
        "UploadArtifact": pb.UploadArtifactHeader(
            run_id=run, path="uploads/new.bin", sha256=UPLOADED_SHA
        ),
        "DownloadArtifact": pb.DownloadArtifactRequest(run_id=run, path="model/MLmodel"),
        "ListArtifacts": pb.ListArtifactsRequest(run_id=run, recursive=True, page_size=1),
        "DeleteArtifact": pb.DeleteArtifactRequest(run_id=run, path="victim.txt"),
        "CreateArtifactUploadUrl": pb.CreateArtifactUploadUrlRequest(
            run_id=run, path="uploads/presigned.bin"
        ),
        "CompleteArtifactUpload": pb.CompleteArtifactUploadRequest(
            run_id=run, path="model/MLmodel", sha256=UPLOADED_SHA
        ),
        "CreateArtifactDownloadUrl": pb.CreateArtifactDownloadUrlRequest(
            run_id=run, path="model/MLmodel"
        ),
    }


def _token(query: object, position: object) -> str:
    raw = json.dumps({"q": query, "p": position}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _bad_tokens(real: str, positions: Sequence[object]) -> list[str]:
    """Garbage, tokens of the wrong shape or of another query, and `real` with each of
    `positions` forged in: none was issued by the server, so each must be refused."""
    assert real, "the valid request must leave a next page, to forge tokens from"
    query = json.loads(base64.urlsafe_b64decode(real + "=" * (-len(real) % 4)))["q"]
    return [
        "not a token",
        "!!!!",
        base64.urlsafe_b64encode(b"\xff\xfe\x00").decode(),
        base64.urlsafe_b64encode(b'"just a string"').decode(),
        base64.urlsafe_b64encode(b'{"p": 1}').decode(),
        _token("0123456789abcdef", 1),
        real[:-2],
        # Arrays nested past json's recursion limit: a RecursionError, INTERNAL, on every RPC.
        base64.urlsafe_b64encode(
            json.dumps({"q": query, "p": "P"}).replace('"P"', "[" * 50_000 + "]" * 50_000).encode()
        ).decode(),
        *(_token(query, p) for p in positions),
    ]


def _refusals(rpc: str, request: Message, t: Tracked) -> dict[str, list[object]]:
    """Field path -> values `rpc` must refuse (INVALID_ARGUMENT naming that field)."""
    refuse: dict[str, list[object]] = {}
    names = {f.name for f in request.DESCRIPTOR.fields}
    if "filter" in names:
        refuse["filter"] = list(BAD_FILTERS)
        refuse["order_by"] = list(BAD_ORDER_BY)
    limits = {"SearchExperiments": 10_000, "SearchRuns": 50_000, "GetMetricHistory": 100_000}
    if rpc in limits:
        refuse["max_results"] = [-1, limits[rpc] + 1, 2**31 - 1]
    if rpc == "ListArtifacts":
        refuse["page_size"] = [-1, 10_001, 2**31 - 1]
    if "page_token" in names:
        real = _raw_call(t.channel, rpc, request.SerializeToString())
        assert isinstance(real, bytes), real
        response = TRACKING_RESPONSES[rpc].FromString(real)
        token = response.next_page_token  # type: ignore[attr-defined]  # a paged rpc's response
        forged: dict[str, list[object]] = {
            "GetMetricHistory": [-1, "1", [1], [1, 2], ["a", "b", "c"], [2**70, 0, 0]],
            "ListArtifacts": [5, [1], {"a": 1}],
            # Keys of the last row: [name, id]; [metric missing, NaN, value, start, run id].
            "SearchExperiments": [-1, None, ["a"], ["a", "1"], [1, 1], ["a", 2**70]],
            "SearchRuns": [
                -1,
                None,
                [False, False, 1.0, 1],
                [False, False, "high", 1, "r"],
                [False, False, 1.0, 2**70, "r"],
                [False, "no", 1.0, 1, "r"],
                [0, False, 1.0, 1, "r"],
                [False, False, 1.0, 1, None],
            ],
        }
        positions = forged.get(rpc, [-1, "1", 1.5, 2**70, [1], {"a": 1}])
        refuse["page_token"] = list(_bad_tokens(token, positions))
    if "path" in names:
        refuse["path"] = list(BAD_PATHS)
    for key_field in ("key", "metric_key", "metrics.key", "params.key", "tags.key"):
        if _has_path(request, key_field):
            refuse[key_field] = list(BAD_KEYS)
    if "sha256" in names:
        refuse["sha256"] = ["0" * 64, "nothex", "a" * 63, "a" * 65]
    if rpc == "LogInputs":
        refuse["datasets.tags.key"] = list(BAD_KEYS)
        refuse["datasets.dataset.name"] = ["", "n" * 501]
        refuse["datasets.dataset.digest"] = ["", "d" * 65]
    for stamp in ("timestamp", "metrics.timestamp", "start_time", "end_time"):
        if _has_path(request, stamp):
            refuse[f"{stamp}.seconds"] = [253_402_300_800, -62_135_596_801, 2**63 - 1]
            refuse[f"{stamp}.nanos"] = [-1, 1_000_000_000]
    return refuse


def _has_path(msg: Message, path: str) -> bool:
    descriptor: AnyDescriptor | None = msg.DESCRIPTOR
    for part in path.split("."):
        assert descriptor is not None, f"{path}: {part} is inside a scalar"
        field = descriptor.fields_by_name.get(part)
        if field is None:
            return False
        descriptor = field.message_type
    return True


def _copy(msg: Message) -> Message:
    out = type(msg)()
    out.CopyFrom(msg)
    return out


def _label(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:30]}...({len(text)} chars)"


def _field_variants(
    seed: Message, refuse: dict[str, list[object]], prefix: str = ""
) -> Iterator[tuple[str, str, Message, bool]]:
    """(field path, label, message, must refuse) for every field of `seed` given each odd value
    in turn, recursing into message fields and the first entry of repeated ones."""
    for field in seed.DESCRIPTOR.fields:
        path = prefix + field.name
        for label, change, must in _changes(seed, field, path, refuse):
            msg = _copy(seed)
            field_path = change(msg)
            yield field_path or path, label, msg, must


def _changes(
    seed: Message, field: AnyField, path: str, refuse: dict[str, list[object]]
) -> Iterator[tuple[str, Callable[[Message], str | None], bool]]:
    """(label, change applied to a copy of `seed` returning the varied path, must refuse)."""
    name = field.name
    current = getattr(seed, name)
    if field.is_repeated:
        entries = list(current)
        yield "[]", lambda m: m.ClearField(name), False
        if not entries:
            return
        first = entries[0]
        yield f"{TOO_MANY} entries", lambda m: _fill(m, name, first, TOO_MANY), False
        yield "a duplicate entry", lambda m: _duplicate(m, name, first), False
        if field.message_type is None:
            for value in refuse.get(path, []):
                yield _label(value), partial(_set_first, name=name, value=value), True
            for value in _odd(field, first, TRACKING_ODD):
                yield _label(value), partial(_set_first, name=name, value=value), False
            return
        for sub_path, label, sub, must in _field_variants(first, refuse, path + "."):
            yield label, partial(_set_first, name=name, value=sub, path=sub_path), must
        return
    if field.message_type is not None:
        yield "missing", lambda m: m.ClearField(name), False
        yield "empty", lambda m: _empty(m, name), False
        for sub_path, label, sub, must in _field_variants(current, refuse, path + "."):
            yield label, partial(_set_message, name=name, value=sub, path=sub_path), must
        return
    for value in refuse.get(path, []):
        yield _label(value), partial(_set_scalar, name=name, value=value), True
    for value in _odd(field, current, TRACKING_ODD):
        yield _label(value), partial(_set_scalar, name=name, value=value), False


def _empty(msg: Message, name: str) -> None:
    msg.ClearField(name)
    getattr(msg, name).SetInParent()


def _set_scalar(msg: Message, *, name: str, value: object) -> None:
    setattr(msg, name, value)


def _set_message(msg: Message, *, name: str, value: Message, path: str) -> str:
    getattr(msg, name).CopyFrom(value)
    return path


def _set_first(msg: Message, *, name: str, value: object, path: str | None = None) -> str | None:
    entries = getattr(msg, name)
    if isinstance(value, Message):
        entries[0].CopyFrom(value)
    else:
        entries[0] = value
    return path


def _fill(msg: Message, name: str, first: object, count: int) -> None:
    entries = getattr(msg, name)
    del entries[:]
    for i in range(count):
        if isinstance(first, Message):
            entry = entries.add()
            entry.CopyFrom(first)
            if "key" in entry.DESCRIPTOR.fields_by_name:
                entry.key = f"{entry.key}{i}"  # distinct, so a map of them keeps them all
        else:
            entries.append(first)


def _duplicate(msg: Message, name: str, first: object) -> None:
    """The first entry again; a keyed entry with another value, which cannot both hold."""
    entries = getattr(msg, name)
    if not isinstance(first, Message):
        entries.append(first)
        return
    entry = entries.add()
    entry.CopyFrom(first)
    value = entry.DESCRIPTOR.fields_by_name.get("value")
    if value is not None and value.type == FieldDescriptor.TYPE_STRING:
        entry.value += "-other"
    elif value is not None:
        entry.value += 1


def _wrong_wire_type(seed: Message, field: AnyField) -> bytes:
    """`seed` with `field` encoded in a wire type its declaration does not allow (the parser
    keeps it aside as an unknown field, so the server sees the field missing)."""
    msg = _copy(seed)
    msg.ClearField(field.name)
    length_delimited = field.is_repeated or field.type in (
        FieldDescriptor.TYPE_STRING,
        FieldDescriptor.TYPE_BYTES,
        FieldDescriptor.TYPE_MESSAGE,
    )
    if length_delimited:
        wrong = _varint(field.number << 3 | 0) + _varint(1)
    else:
        wrong = _varint(field.number << 3 | 2) + _varint(3) + b"abc"
    return msg.SerializeToString() + wrong


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _fresh(rpc: str, msg: Message, varied: str, n: object) -> Message:
    """`msg` with the FRESH fields of `rpc` other than `varied` made unique by suffix `n`."""
    for path in FRESH.get(rpc, ()):
        if path != varied:
            _suffix(msg, path, f"-{n}")
    return msg


def _suffix(msg: Message, path: str, suffix: str) -> None:
    head, _, rest = path.partition(".")
    if not rest:
        setattr(msg, head, f"{getattr(msg, head)}{suffix}")
        return
    children = getattr(msg, head)
    for child in children if isinstance(children, Iterable) else [children]:
        _suffix(child, rest, suffix)


def _tracking_variants(rpc: str, request: Message, t: Tracked) -> Iterator[Variant]:
    refuse = _refusals(rpc, request, t)
    for n, (path, label, msg, must) in enumerate(_field_variants(request, refuse)):
        yield Variant(path, label, _fresh(rpc, msg, path, n).SerializeToString(), must)
    for field in request.DESCRIPTOR.fields:
        msg = _fresh(rpc, _copy(request), field.name, f"wire-{field.number}")
        yield Variant(field.name, "wrong wire type", _wrong_wire_type(msg, field), False)
    unused = [path for path in refuse if not _has_path(request, path)]
    assert not unused, f"{rpc}: refusals for fields it does not have: {unused}"


TRACKING_RESPONSES: dict[str, type[Message]] = {
    m.name: getattr(pb, m.output_type.name) for m in TRACKING.methods
}


def _raw_call(channel: grpc.Channel, rpc: str, payload: bytes) -> bytes | grpc.RpcError:
    """Send `payload` (for UploadArtifact: the header, followed by one chunk of UPLOADED);
    the response bytes (for DownloadArtifact: all of them), or the error."""
    path = f"/{TRACKING.full_name}/{rpc}"
    try:
        if rpc == "UploadArtifact":
            header = b"\x0a" + _varint(len(payload)) + payload
            chunk = pb.UploadArtifactRequest(chunk=UPLOADED).SerializeToString()
            return channel.stream_unary(path)(iter([header, chunk]), timeout=20)
        if rpc == "DownloadArtifact":
            return b"".join(channel.unary_stream(path)(payload, timeout=20))
        return channel.unary_unary(path)(payload, timeout=20)
    except grpc.RpcError as err:
        return err


def _related(reported: str, varied: str) -> bool:
    """Does the field an error names (indices such as [0] or [key] aside) lie on the path of the
    field that was varied, as 'metrics' or 'metrics.timestamp' for 'metrics.timestamp.nanos'?"""
    reported = re.sub(r"\[[^\]]*\]", "", reported)
    return (
        reported == varied or varied.startswith(f"{reported}.") or reported.startswith(f"{varied}.")
    )


def _names(details: str, field: str) -> bool:
    """Does the message name `field`, as 'datasets[0].dataset.name', 'param' for 'params' or
    'parent run' for 'parent_run_id'?"""
    leaf = re.sub(r"\[[^\]]*\]", "", field).rsplit(".", 1)[-1]
    spoken = leaf.removesuffix("_id").replace("_", " ")
    return any(name in details for name in (field, leaf.removesuffix("s"), spoken))


def _judge(rpc: str, variant: Variant, outcome: bytes | grpc.RpcError) -> str | None:
    """What is wrong with the server's answer to `variant`, or None."""
    what = f"{rpc}({variant.field}={variant.label})"
    if not isinstance(outcome, grpc.RpcError):
        return f"{what}: accepted; it must be refused" if variant.refuse else None
    code, details = outcome.code(), outcome.details() or ""
    if code not in CLEAR:
        return f"{what}: {code.name}: {details[:300]}"
    if not details.strip() or "Traceback" in details or 'File "' in details:
        return f"{what}: {code.name} with an unhelpful message {details[:300]!r}"
    at_fault = (variant.field, ALSO_AT_FAULT.get((rpc, variant.field), variant.field))
    return _judge_status(what, outcome, from_rpc_error(outcome), at_fault, variant.refuse)


def _snapshot(t: Tracked) -> list[object]:
    """Every row of every table, and every file under the artifact root (temporary ones
    included): what a refused write must leave exactly as it was. Rows as reprs, so NaN
    compares equal to NaN."""
    with t.db.read() as conn:
        rows = [sorted(repr(tuple(r)) for r in conn.execute(select(table))) for table in t.tables]
    files = sorted(
        (str(f.relative_to(t.artifact_dir)), hashlib.sha256(f.read_bytes()).hexdigest())
        for f in t.artifact_dir.rglob("*")
        if f.is_file()
    )
    return [*rows, files]


def test_every_tracking_rpc_judges_each_field(tracking: Tracked) -> None:
    valid = _valid_requests(tracking)
    assert list(valid) == [m.name for m in TRACKING.methods], "a valid request for each RPC"
    problems: list[str] = []
    before = _snapshot(tracking)
    for rpc, request in valid.items():
        writes = rpc.startswith(WRITERS)
        for variant in _tracking_variants(rpc, request, tracking):
            outcome = _raw_call(tracking.channel, rpc, variant.payload)
            if problem := _judge(rpc, variant, outcome):
                problems.append(problem)
            if writes:
                after = _snapshot(tracking)
                if isinstance(outcome, grpc.RpcError) and after != before:
                    problems.append(
                        f"{rpc}({variant.field}={variant.label}): refused, yet data changed"
                    )
                before = after
        valid_request = _fresh(rpc, _copy(request), "", "valid").SerializeToString()
        outcome = _raw_call(tracking.channel, rpc, valid_request)
        code = outcome.code() if isinstance(outcome, grpc.RpcError) else None
        if code != SEED_REFUSED.get(rpc):
            problems.append(f"valid {rpc}: {outcome!r}")  # the same text as str()
        if writes:
            before = _snapshot(tracking)
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)


def _refusal(outcome: object) -> grpc.RpcError:
    assert isinstance(outcome, grpc.RpcError), f"accepted: {outcome!r}"
    return outcome


def _assert_refused(outcome: object, code: grpc.StatusCode, field: str) -> ModelyardError:
    err = _refusal(outcome)
    assert err.code() == code, (err.code(), err.details())
    error = from_rpc_error(err)
    assert error.field == field, (field, err.details())
    assert _names(err.details(), field), err.details()
    return error


def test_batch_limits_name_the_field(tracking: Tracked) -> None:
    rid = tracking.run_id
    tag = common_pb2.Tag
    cases = {
        "metrics": pb.LogBatchRequest(run_id=rid, metrics=[pb.Metric(key="m", value=1)] * 1001),
        "params": pb.LogBatchRequest(
            run_id=rid, params=[pb.Param(key=f"p{i}", value="v") for i in range(101)]
        ),
        "tags": pb.LogBatchRequest(
            run_id=rid, tags=[tag(key=f"t{i}", value="v") for i in range(101)]
        ),
    }
    before = _snapshot(tracking)
    for field, request in cases.items():
        outcome = _raw_call(tracking.channel, "LogBatch", request.SerializeToString())
        _assert_refused(outcome, grpc.StatusCode.INVALID_ARGUMENT, field)
        assert "at most" in _refusal(outcome).details()
    assert _snapshot(tracking) == before


def test_oversized_values_name_the_limit(tracking: Tracked) -> None:
    rid = tracking.run_id
    for request, field in (
        (pb.LogBatchRequest(run_id=rid, params=[pb.Param(key="big", value="v" * 6001)]), "params"),
        (pb.LogBatchRequest(run_id=rid, metrics=[pb.Metric(key="k" * 251, value=1)]), "metrics"),
        (pb.LogParamRequest(run_id=rid, key="big", value="v" * 6001), "value"),
        (pb.SetTagRequest(run_id=rid, key="big", value="v" * 8001), "value"),
    ):
        rpc = type(request).__name__.removesuffix("Request")
        err = _refusal(_raw_call(tracking.channel, rpc, request.SerializeToString()))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert _related(from_rpc_error(err).field or "", field), err.details()
        assert "the limit is" in err.details(), err.details()


def test_message_over_the_size_limit(tracking: Tracked) -> None:
    request = pb.SetTagRequest(run_id=tracking.run_id, key="k", value="v" * (65 * 1024 * 1024))
    err = _refusal(_raw_call(tracking.channel, "SetTag", request.SerializeToString()))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_timestamps_out_of_range_name_the_field(tracking: Tracked) -> None:
    rid = tracking.run_id
    for bad in (Timestamp(seconds=253_402_300_800), Timestamp(seconds=1, nanos=-1)):
        metric = pb.Metric(key="m", value=1, timestamp=bad)
        for rpc, request, field in (
            ("LogMetric", pb.LogMetricRequest(run_id=rid, key="m", timestamp=bad), "timestamp"),
            ("LogBatch", pb.LogBatchRequest(run_id=rid, metrics=[metric]), "metrics.timestamp"),
            (
                "LogBatch",
                pb.LogBatchRequest(run_id=rid, metrics=[metric], params=[pb.Param(key="p")]),
                "metrics.timestamp",
            ),
            ("CreateRun", pb.CreateRunRequest(start_time=bad), "start_time"),
            ("UpdateRun", pb.UpdateRunRequest(run_id=rid, end_time=bad), "end_time"),
        ):
            outcome = _raw_call(tracking.channel, rpc, request.SerializeToString())
            _assert_refused(outcome, grpc.StatusCode.INVALID_ARGUMENT, field)
            assert "outside 0001-01-01 to 9999-12-31" in _refusal(outcome).details()


def _same_float(got: float, logged: float) -> bool:
    """NaN is NaN; otherwise equal (SQLite keeps -0.0 as 0.0, and no one compares the two)."""
    return math.isnan(got) if math.isnan(logged) else got == logged


def test_nan_and_infinite_metric_values_round_trip(tracking: Tracked) -> None:
    """A diverged loss is data: NaN and +/-inf are stored and returned as logged (MLflow does
    the same), through LogMetric and both paths of LogBatch, not refused or turned into 0."""
    s, rid = tracking.stub, tracking.run_id
    values = [math.nan, math.inf, -math.inf, -0.0, 1.7976931348623157e308, 5e-324]
    for i, value in enumerate(values):
        s.LogMetric(
            pb.LogMetricRequest(run_id=rid, key=f"one{i}", value=value, timestamp=SEED_TIME)
        )
    batch = [
        pb.Metric(key="batch", value=value, timestamp=SEED_TIME, step=i)
        for i, value in enumerate(values)
    ]
    s.LogBatch(pb.LogBatchRequest(run_id=rid, metrics=batch))  # the metrics-only path
    mixed = [
        pb.Metric(key="mixed", value=m.value, timestamp=m.timestamp, step=m.step) for m in batch
    ]
    param = pb.Param(key="x", value="1")
    s.LogBatch(pb.LogBatchRequest(run_id=rid, metrics=mixed, params=[param]))  # the general path
    latest = {m.key: m.value for m in s.GetRun(pb.GetRunRequest(run_id=rid)).run.data.metrics}
    for i, value in enumerate(values):
        assert _same_float(latest[f"one{i}"], value), (value, latest[f"one{i}"])
    for key in ("batch", "mixed"):
        history = s.GetMetricHistory(pb.GetMetricHistoryRequest(run_id=rid, metric_key=key))
        assert [m.step for m in history.metrics] == list(range(len(values)))
        got = [m.value for m in history.metrics]
        assert all(map(_same_float, got, values)), (key, got)
    # Searches compare and order around them without failing.
    found = s.SearchRuns(
        pb.SearchRunsRequest(
            experiment_ids=[tracking.experiment_id],
            filter="metrics.one1 > 0",
            order_by=["metrics.one0 DESC"],
        )
    )
    assert [r.info.run_id for r in found.runs] == [rid]


REPLACEMENT = b"replacement bytes"


def _header(t: Tracked, **fields: str) -> pb.UploadArtifactRequest:
    digest = hashlib.sha256(REPLACEMENT).hexdigest()
    fields = {"run_id": t.run_id, "path": "model/MLmodel", "sha256": digest, **fields}
    return pb.UploadArtifactRequest(header=pb.UploadArtifactHeader(**fields))


def _upload_outcome(t: Tracked, requests: Iterable[pb.UploadArtifactRequest]) -> object:
    try:
        return t.stub.UploadArtifact(iter(requests), timeout=20)
    except grpc.RpcError as err:
        return err


def test_upload_streams_that_break_the_protocol(tracking: Tracked) -> None:
    """An upload is a header (run, safe relative path, sha256), then bytes that hash to the
    sha256. Each breach is refused naming the field, and the file already at the path,
    its record and the rest of the store stay as they were."""
    t, chunk = tracking, pb.UploadArtifactRequest(chunk=REPLACEMENT)
    unknown_run = "0" * 32
    t.stub.DeleteRun(pb.DeleteRunRequest(run_id=t.victim_run_id))
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    cases: dict[str, tuple[list[pb.UploadArtifactRequest], grpc.StatusCode, str]] = {
        "no message": ([], invalid, "header"),
        "bytes before the header": ([chunk, _header(t)], invalid, "header"),
        "two headers": ([_header(t), _header(t), chunk], invalid, "header"),
        "a header after bytes": ([_header(t), chunk, _header(t)], invalid, "header"),
        "a message with neither part": ([_header(t), pb.UploadArtifactRequest()], invalid, "chunk"),
        "an empty header": (
            [pb.UploadArtifactRequest(header=pb.UploadArtifactHeader()), chunk],
            invalid,
            "path",
        ),
        "a path out of the run": ([_header(t, path="../x/MLmodel"), chunk], invalid, "path"),
        "'..' inside the path": ([_header(t, path="model/../../x"), chunk], invalid, "path"),
        "an absolute path": ([_header(t, path="/etc/passwd"), chunk], invalid, "path"),
        "a sha256 that is not hex": ([_header(t, sha256="nothex"), chunk], invalid, "sha256"),
        "no sha256": ([_header(t, sha256=""), chunk], invalid, "sha256"),
        "bytes that do not hash to sha256": (
            [_header(t, sha256=UPLOADED_SHA), chunk],
            invalid,
            "sha256",
        ),
        "a malformed run id": ([_header(t, run_id="r1"), chunk], invalid, "run_id"),
    }
    before = _snapshot(t)
    for case, (requests, code, field) in cases.items():
        outcome = _upload_outcome(t, requests)
        err = _refusal(outcome)
        assert err.code() == code, (case, err.code(), err.details())
        assert from_rpc_error(err).field == field, (case, err.details())
        assert _names(err.details(), field), (case, err.details())
        assert _snapshot(t) == before, f"{case}: refused, yet data changed"
    for case, header, code, resource in (
        ("an unknown run", _header(t, run_id=unknown_run), grpc.StatusCode.NOT_FOUND, "run"),
        (
            "a deleted run",
            _header(t, run_id=t.victim_run_id, path="a.txt"),
            grpc.StatusCode.FAILED_PRECONDITION,
            "run",
        ),
        ("a directory", _header(t, path="model"), grpc.StatusCode.FAILED_PRECONDITION, "artifact"),
        (
            "a path inside a file",
            _header(t, path="model/MLmodel/inner"),
            grpc.StatusCode.FAILED_PRECONDITION,
            "artifact",
        ),
    ):
        err = _refusal(_upload_outcome(t, [header, chunk]))
        assert err.code() == code, (case, err.code(), err.details())
        assert from_rpc_error(err).resource_type == resource, (case, err.details())
        assert _snapshot(t) == before, f"{case}: refused, yet data changed"


def test_an_abandoned_upload_keeps_the_file_it_would_replace(tracking: Tracked) -> None:
    """A client that fails mid-stream cancels the call. gRPC's Python server may still present
    the stream to the handler as complete (a cancelled read looks like the end of the bytes),
    so the sha256 every header must declare is what keeps the half that arrived from replacing
    the file at the path."""
    t, new = tracking, b"the new model, all of it"

    def gives_up() -> Iterator[pb.UploadArtifactRequest]:
        yield _header(t, sha256=hashlib.sha256(new).hexdigest())
        yield pb.UploadArtifactRequest(chunk=new[:10])
        raise ConnectionAbortedError("the client gave up")

    before = _snapshot(t)
    _refusal(_upload_outcome(t, gives_up()))
    download = pb.DownloadArtifactRequest(run_id=t.run_id, path="model/MLmodel")
    parts = list(t.stub.DownloadArtifact(download))
    assert parts[0].file.sha256 == UPLOADED_SHA
    assert b"".join(p.chunk for p in parts[1:]) == UPLOADED
    assert _snapshot(t)[:-1] == before[:-1]  # the record too (files may hold the half in flight)


def test_download_streams_refuse_clearly(tracking: Tracked) -> None:
    t, invalid = tracking, grpc.StatusCode.INVALID_ARGUMENT
    missing = grpc.StatusCode.NOT_FOUND
    for run_id, path, code, at_fault in (
        (t.run_id, "", invalid, "path"),
        (t.run_id, "../escape", invalid, "path"),
        (t.run_id, "/etc/passwd", invalid, "path"),
        (t.run_id, "model", missing, "artifact"),  # a directory: its files download one by one
        (t.run_id, "model/missing", missing, "artifact"),
        ("r1", "model/MLmodel", invalid, "run_id"),
        ("0" * 32, "model/MLmodel", missing, "run"),
    ):
        request = pb.DownloadArtifactRequest(run_id=run_id, path=path)
        err = _refusal(_raw_call(t.channel, "DownloadArtifact", request.SerializeToString()))
        assert err.code() == code, (path, err.code(), err.details())
        error = from_rpc_error(err)
        assert at_fault in (error.field, error.resource_type), (path, err.details())


def test_errors_echoing_huge_input_still_reach_the_client(client: Client) -> None:
    """A status travels in metadata that a gRPC client refuses past 8 KiB at random and past
    16 KiB always (the message percent-encoded: 3 bytes per byte of non-ASCII text). Errors
    that name a 70,000-character input must still arrive as themselves, cut short, not as
    RESOURCE_EXHAUSTED 'Stream removed'."""
    with pytest.raises(ModelyardError) as named:
        client.get_registered_model("é" * 70_000)
    with pytest.raises(NotFound) as missing:
        client.get_endpoint("x" * 70_000)
    for err in (named.value, missing.value):
        assert "Stream removed" not in err.message
        assert err.message.endswith(" characters)") and len(err.message.encode()) < 1100
