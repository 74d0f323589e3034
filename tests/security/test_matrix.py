"""The role x RPC matrix over real gRPC: every RPC of every service, called by principals holding
each access level; allowed calls never get PERMISSION_DENIED, the others always do.

The expected policy is written out here on its own, so a change to an access table that loosens
(or tightens) a rule fails this test.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pyarrow as pa
import pytest

from modelyard._gen.auth.v1 import auth_pb2
from modelyard._gen.common.v1 import common_pb2
from modelyard._gen.features.v1 import features_pb2
from modelyard._gen.inference import grpc_predict_v2_pb2
from modelyard._gen.registry.v1 import registry_pb2
from modelyard._gen.serving.v1 import serving_pb2
from modelyard._gen.tracking.v1 import tracking_pb2
from modelyard.convert.common import ms_to_timestamp
from modelyard.entities.common import PermissionLevel as L
from modelyard.entities.serving import ServedModel
from modelyard.features import FeatureService, FeatureStoreClient
from tests.features.repo import NOW, make_repo
from tests.security.conftest import Secure

T, R, A, C = tracking_pb2, registry_pb2, auth_pb2, common_pb2
S, OIP, F = serving_pb2, grpc_predict_v2_pb2, features_pb2

# Who is tried, least privileged first (so a destructive call runs after the refusals).
PRINCIPALS = ["stranger", "service", "reader", "user", "writer", "owner", "admin"]
LEVELS: dict[str, L | None] = {
    "stranger": None,
    "reader": L.READ,
    "user": L.USE,
    "writer": L.EDIT,
    "owner": L.MANAGE,
    "service": None,
    "admin": L.MANAGE,
}
CREATORS = {"writer", "owner", "admin"}  # editor or admin role


@dataclass
class Seed:
    experiment_id: str
    run_id: str
    model: str
    endpoint: str
    feature_view: str
    feature_service: str


def grant(level: L) -> C.Grant:
    return C.Grant(principal="stranger", level=C.PermissionLevel.ValueType(int(level)))


# RPC -> (expected policy, request factory). Policies: ("level", L) on the seeded resource,
# ("create",), ("any",) any authenticated caller, ("admin",), ("service",).
Case = tuple[tuple[Any, ...], Callable[[Seed], Any]]

TRACKING: dict[str, Case] = {
    "CreateExperiment": (
        ("create",),
        lambda s: T.CreateExperimentRequest(name=f"new-{s.run_id[:8]}"),
    ),
    "GetExperiment": (
        ("level", L.READ),
        lambda s: T.GetExperimentRequest(experiment_id=s.experiment_id),
    ),
    "GetExperimentByName": (
        ("level", L.READ),
        lambda s: T.GetExperimentByNameRequest(experiment_name=f"exp-{s.run_id}"),
    ),
    "SearchExperiments": (("any",), lambda s: T.SearchExperimentsRequest()),
    "UpdateExperiment": (
        ("level", L.EDIT),
        lambda s: T.UpdateExperimentRequest(
            experiment_id=s.experiment_id, new_name=f"ren-{s.run_id}"
        ),
    ),
    "DeleteExperiment": (
        ("level", L.MANAGE),
        lambda s: T.DeleteExperimentRequest(experiment_id=s.experiment_id),
    ),
    "RestoreExperiment": (
        ("level", L.MANAGE),
        lambda s: T.RestoreExperimentRequest(experiment_id=s.experiment_id),
    ),
    "SetExperimentTag": (
        ("level", L.EDIT),
        lambda s: T.SetExperimentTagRequest(experiment_id=s.experiment_id, key="k", value="v"),
    ),
    "DeleteExperimentTag": (
        ("level", L.EDIT),
        lambda s: T.DeleteExperimentTagRequest(experiment_id=s.experiment_id, key="seeded"),
    ),
    "SetExperimentPermission": (
        ("level", L.MANAGE),
        lambda s: T.SetExperimentPermissionRequest(
            experiment_id=s.experiment_id, grant=grant(L.READ)
        ),
    ),
    "DeleteExperimentPermission": (
        ("level", L.MANAGE),
        lambda s: T.DeleteExperimentPermissionRequest(
            experiment_id=s.experiment_id, principal="reader"
        ),
    ),
    "ListExperimentPermissions": (
        ("level", L.READ),
        lambda s: T.ListExperimentPermissionsRequest(experiment_id=s.experiment_id),
    ),
    "CreateRun": (("level", L.EDIT), lambda s: T.CreateRunRequest(experiment_id=s.experiment_id)),
    "GetRun": (("level", L.READ), lambda s: T.GetRunRequest(run_id=s.run_id)),
    "UpdateRun": (("level", L.EDIT), lambda s: T.UpdateRunRequest(run_id=s.run_id, run_name="x")),
    "DeleteRun": (("level", L.MANAGE), lambda s: T.DeleteRunRequest(run_id=s.run_id)),
    "RestoreRun": (("level", L.MANAGE), lambda s: T.RestoreRunRequest(run_id=s.run_id)),
    "SearchRuns": (
        ("level", L.READ),
        lambda s: T.SearchRunsRequest(experiment_ids=[s.experiment_id]),
    ),
    "LogParam": (
        ("level", L.EDIT),
        lambda s: T.LogParamRequest(run_id=s.run_id, key="p", value="1"),
    ),
    "LogMetric": (
        ("level", L.EDIT),
        lambda s: T.LogMetricRequest(run_id=s.run_id, key="m", value=1),
    ),
    "SetTag": (("level", L.EDIT), lambda s: T.SetTagRequest(run_id=s.run_id, key="t", value="v")),
    "DeleteTag": (("level", L.EDIT), lambda s: T.DeleteTagRequest(run_id=s.run_id, key="seeded")),
    "LogBatch": (
        ("level", L.EDIT),
        lambda s: T.LogBatchRequest(run_id=s.run_id, metrics=[T.Metric(key="b", value=1)]),
    ),
    "LogInputs": (
        ("level", L.EDIT),
        lambda s: T.LogInputsRequest(
            run_id=s.run_id, datasets=[T.DatasetInput(dataset=T.Dataset(name="d", digest="1"))]
        ),
    ),
    "GetMetricHistory": (
        ("level", L.READ),
        lambda s: T.GetMetricHistoryRequest(run_id=s.run_id, metric_key="m"),
    ),
    "UploadArtifact": (
        ("level", L.EDIT),
        lambda s: [
            T.UploadArtifactRequest(
                header=T.UploadArtifactHeader(
                    run_id=s.run_id, path="up.txt", sha256=hashlib.sha256(b"x").hexdigest()
                )
            ),
            T.UploadArtifactRequest(chunk=b"x"),
        ],
    ),
    "DownloadArtifact": (
        ("level", L.READ),
        lambda s: T.DownloadArtifactRequest(run_id=s.run_id, path="model/MLmodel"),
    ),
    "ListArtifacts": (("level", L.READ), lambda s: T.ListArtifactsRequest(run_id=s.run_id)),
    "DeleteArtifact": (
        ("level", L.EDIT),
        lambda s: T.DeleteArtifactRequest(run_id=s.run_id, path="model/MLmodel"),
    ),
    "CreateArtifactUploadUrl": (
        ("level", L.EDIT),
        lambda s: T.CreateArtifactUploadUrlRequest(run_id=s.run_id, path="x"),
    ),
    "CompleteArtifactUpload": (
        ("level", L.EDIT),
        lambda s: T.CompleteArtifactUploadRequest(run_id=s.run_id, path="x", sha256="0" * 64),
    ),
    "CreateArtifactDownloadUrl": (
        ("level", L.READ),
        lambda s: T.CreateArtifactDownloadUrlRequest(run_id=s.run_id, path="model/MLmodel"),
    ),
}

REGISTRY: dict[str, Case] = {
    "CreateRegisteredModel": (
        ("create",),
        lambda s: R.CreateRegisteredModelRequest(name=f"new-{s.model}"),
    ),
    "GetRegisteredModel": (("level", L.READ), lambda s: R.GetRegisteredModelRequest(name=s.model)),
    "RenameRegisteredModel": (
        ("level", L.MANAGE),
        lambda s: R.RenameRegisteredModelRequest(name=s.model, new_name=f"{s.model}-2"),
    ),
    "UpdateRegisteredModel": (
        ("level", L.EDIT),
        lambda s: R.UpdateRegisteredModelRequest(name=s.model, description="d"),
    ),
    "DeleteRegisteredModel": (
        ("level", L.MANAGE),
        lambda s: R.DeleteRegisteredModelRequest(name=s.model),
    ),
    "SearchRegisteredModels": (("any",), lambda s: R.SearchRegisteredModelsRequest()),
    "SetRegisteredModelTag": (
        ("level", L.EDIT),
        lambda s: R.SetRegisteredModelTagRequest(name=s.model, key="k", value="v"),
    ),
    "DeleteRegisteredModelTag": (
        ("level", L.EDIT),
        lambda s: R.DeleteRegisteredModelTagRequest(name=s.model, key="seeded"),
    ),
    "SetRegisteredModelPermission": (
        ("level", L.MANAGE),
        lambda s: R.SetRegisteredModelPermissionRequest(name=s.model, grant=grant(L.READ)),
    ),
    "DeleteRegisteredModelPermission": (
        ("level", L.MANAGE),
        lambda s: R.DeleteRegisteredModelPermissionRequest(name=s.model, principal="reader"),
    ),
    "ListRegisteredModelPermissions": (
        ("level", L.READ),
        lambda s: R.ListRegisteredModelPermissionsRequest(name=s.model),
    ),
    "CreateModelVersion": (
        ("level", L.EDIT),
        lambda s: R.CreateModelVersionRequest(name=s.model, source=f"runs:/{s.run_id}/model"),
    ),
    "GetModelVersion": (
        ("level", L.READ),
        lambda s: R.GetModelVersionRequest(name=s.model, version=1),
    ),
    "UpdateModelVersion": (
        ("level", L.EDIT),
        lambda s: R.UpdateModelVersionRequest(name=s.model, version=1, description="d"),
    ),
    "DeleteModelVersion": (
        ("level", L.MANAGE),
        lambda s: R.DeleteModelVersionRequest(name=s.model, version=1),
    ),
    "SearchModelVersions": (("any",), lambda s: R.SearchModelVersionsRequest()),
    "GetLatestVersions": (("level", L.READ), lambda s: R.GetLatestVersionsRequest(name=s.model)),
    "SetModelVersionTag": (
        ("level", L.EDIT),
        lambda s: R.SetModelVersionTagRequest(name=s.model, version=1, key="k", value="v"),
    ),
    "DeleteModelVersionTag": (
        ("level", L.EDIT),
        lambda s: R.DeleteModelVersionTagRequest(name=s.model, version=1, key="seeded"),
    ),
    "TransitionModelVersionStage": (
        ("level", L.EDIT),
        lambda s: R.TransitionModelVersionStageRequest(
            name=s.model, version=1, stage=R.STAGE_STAGING
        ),
    ),
    "SetRegisteredModelAlias": (
        ("level", L.EDIT),
        lambda s: R.SetRegisteredModelAliasRequest(name=s.model, alias="challenger", version=1),
    ),
    "DeleteRegisteredModelAlias": (
        ("level", L.EDIT),
        lambda s: R.DeleteRegisteredModelAliasRequest(name=s.model, alias="shadow"),
    ),
    "GetModelVersionByAlias": (
        ("level", L.READ),
        lambda s: R.GetModelVersionByAliasRequest(name=s.model, alias="champion"),
    ),
    "ListModelVersionArtifacts": (
        ("level", L.USE),
        lambda s: R.ListModelVersionArtifactsRequest(name=s.model, version=1),
    ),
    "DownloadModelVersionArtifact": (
        ("level", L.USE),
        lambda s: R.DownloadModelVersionArtifactRequest(name=s.model, version=1, path="MLmodel"),
    ),
    "CreateModelVersionDownloadUrl": (
        ("level", L.USE),
        lambda s: R.CreateModelVersionDownloadUrlRequest(name=s.model, version=1, path="MLmodel"),
    ),
    "ListModelEvents": (("any",), lambda s: R.ListModelEventsRequest(name=s.model)),
    "WatchModelEvents": (("any",), lambda s: R.WatchModelEventsRequest(name=s.model)),
    "GetModelVersionLineage": (
        ("level", L.READ),
        lambda s: R.GetModelVersionLineageRequest(name=s.model, version=1),
    ),
}

# Protected aliases and the Production stage need MANAGE (checked by the same matrix), moving a
# version out of Production as much as into it.
PROTECTED: dict[str, Case] = {
    "SetRegisteredModelAlias": (
        ("level", L.MANAGE),
        lambda s: R.SetRegisteredModelAliasRequest(name=s.model, alias="champion", version=1),
    ),
    "DeleteRegisteredModelAlias": (
        ("level", L.MANAGE),
        lambda s: R.DeleteRegisteredModelAliasRequest(name=s.model, alias="champion"),
    ),
    "TransitionModelVersionStage": (
        ("level", L.MANAGE),
        lambda s: R.TransitionModelVersionStageRequest(
            name=s.model, version=1, stage=R.STAGE_PRODUCTION
        ),
    ),
    "TransitionModelVersionStage[out of Production]": (
        ("level", L.MANAGE),
        lambda s: R.TransitionModelVersionStageRequest(
            name=s.model, version=2, stage=R.STAGE_ARCHIVED
        ),
    ),
}

AUTH: dict[str, Case] = {
    "WhoAmI": (("any",), lambda s: A.WhoAmIRequest()),
    "CreatePrincipal": (
        ("admin",),
        lambda s: A.CreatePrincipalRequest(
            name=f"p-{s.run_id[:8]}", kind=A.PRINCIPAL_KIND_USER, roles=["viewer"]
        ),
    ),
    "ListPrincipals": (("admin",), lambda s: A.ListPrincipalsRequest()),
    "UpdatePrincipal": (
        ("admin",),
        lambda s: A.UpdatePrincipalRequest(name="stranger", roles=["viewer"]),
    ),
    "CreateToken": (("any",), lambda s: A.CreateTokenRequest(description="own")),
    "ListTokens": (("any",), lambda s: A.ListTokensRequest()),
    "RevokeToken": (("any",), lambda s: A.RevokeTokenRequest(token_id="0" * 32)),
    "GetAuthState": (("service",), lambda s: A.GetAuthStateRequest()),
    "RecordAuditEvents": (("service",), lambda s: A.RecordAuditEventsRequest()),
    "ListAuditEvents": (("admin",), lambda s: A.ListAuditEventsRequest()),
}


def _endpoint(s: Seed, name: str | None = None) -> S.Endpoint:
    return S.Endpoint(
        name=name or s.endpoint,
        served_models=[S.ServedModel(model_uri=f"models:/{s.model}/1", traffic_percent=100)],
    )


def _infer(s: Seed) -> OIP.ModelInferRequest:
    request = OIP.ModelInferRequest(model_name=s.endpoint)
    request.inputs.add(name="x", datatype="FP64", shape=[1]).contents.fp64_contents.append(1.0)
    return request


SERVING: dict[str, Case] = {
    "CreateEndpoint": (
        ("create",),
        lambda s: S.CreateEndpointRequest(endpoint=_endpoint(s, f"new-{s.endpoint}")),
    ),
    "GetEndpoint": (("level", L.READ), lambda s: S.GetEndpointRequest(name=s.endpoint)),
    "WatchEndpoint": (("level", L.READ), lambda s: S.WatchEndpointRequest(name=s.endpoint)),
    "ListEndpoints": (("any",), lambda s: S.ListEndpointsRequest()),
    "UpdateEndpoint": (("level", L.EDIT), lambda s: S.UpdateEndpointRequest(endpoint=_endpoint(s))),
    "DeleteEndpoint": (("level", L.MANAGE), lambda s: S.DeleteEndpointRequest(name=s.endpoint)),
    "GetInferenceLog": (("level", L.EDIT), lambda s: S.GetInferenceLogRequest(endpoint=s.endpoint)),
    "LogGroundTruth": (
        ("level", L.EDIT),
        lambda s: S.LogGroundTruthRequest(
            endpoint=s.endpoint, ground_truth=[S.GroundTruth(request_id="r1", value_json="1")]
        ),
    ),
    "SetEndpointPermission": (
        ("level", L.MANAGE),
        lambda s: S.SetEndpointPermissionRequest(name=s.endpoint, grant=grant(L.READ)),
    ),
    "DeleteEndpointPermission": (
        ("level", L.MANAGE),
        lambda s: S.DeleteEndpointPermissionRequest(name=s.endpoint, principal="reader"),
    ),
    "ListEndpointPermissions": (
        ("level", L.READ),
        lambda s: S.ListEndpointPermissionsRequest(name=s.endpoint),
    ),
}

INFERENCE: dict[str, Case] = {
    "ServerLive": (("any",), lambda s: OIP.ServerLiveRequest()),
    "ServerReady": (("any",), lambda s: OIP.ServerReadyRequest()),
    "ServerMetadata": (("any",), lambda s: OIP.ServerMetadataRequest()),
    "ModelReady": (("level", L.READ), lambda s: OIP.ModelReadyRequest(name=s.endpoint)),
    "ModelMetadata": (("level", L.READ), lambda s: OIP.ModelMetadataRequest(name=s.endpoint)),
    "ModelInfer": (("level", L.USE), _infer),
    "ModelConfig": (("level", L.READ), lambda s: OIP.ModelConfigRequest(name=s.endpoint)),
    "ModelStatistics": (
        ("level", L.READ),
        lambda s: OIP.ModelStatisticsRequest(name=s.endpoint),
    ),
    "RepositoryIndex": (("any",), lambda s: OIP.RepositoryIndexRequest()),
    "SystemSharedMemoryStatus": (("any",), lambda s: OIP.SystemSharedMemoryStatusRequest()),
    "CudaSharedMemoryUnregister": (("any",), lambda s: OIP.CudaSharedMemoryUnregisterRequest()),
    "TraceSetting": (("level", L.READ), lambda s: OIP.TraceSettingRequest(model_name=s.endpoint)),
    "RepositoryModelLoad": (
        ("level", L.EDIT),
        lambda s: OIP.RepositoryModelLoadRequest(model_name=s.endpoint),
    ),
    "RepositoryModelUnload": (
        ("level", L.EDIT),
        lambda s: OIP.RepositoryModelUnloadRequest(model_name=s.endpoint),
    ),
}


def _entity_rows() -> list[F.EntityColumn]:
    return [F.EntityColumn(name="driver_id", values=[F.Value(int64_val=1)])]


def _training_set(features: list[str], service: str = "") -> list[F.GetHistoricalFeaturesRequest]:
    import pandas as pd

    from modelyard.features.client import _arrow_bytes

    rows = pd.DataFrame({"driver_id": [1], "event_timestamp": [NOW]})
    return [
        F.GetHistoricalFeaturesRequest(
            header=F.HistoricalFeaturesHeader(features=features, feature_service=service)
        ),
        F.GetHistoricalFeaturesRequest(arrow_chunk=_arrow_bytes(pa.Table.from_pandas(rows))),
    ]


def _push(s: Seed) -> F.PushRequest:
    import pandas as pd

    from modelyard.features.client import _arrow_bytes

    rows = pd.DataFrame({"driver_id": [1], "event_timestamp": [NOW], "trips": [5]})
    return F.PushRequest(
        feature_view=s.feature_view,
        arrow_rows=_arrow_bytes(pa.Table.from_pandas(rows)),
        to_online=True,
    )


FEATURES: dict[str, Case] = {
    "ApplyDefinitions": (
        ("create",),
        lambda s: F.ApplyDefinitionsRequest(
            definitions=[
                F.Definition(
                    entity=F.Entity(name=f"e-{s.run_id[:8]}", join_keys=[F.Field(name="k")])
                )
            ],
            partial=True,
        ),
    ),
    "ListDefinitions": (("any",), lambda s: F.ListDefinitionsRequest()),
    "GetDefinition": (
        ("level", L.READ),
        lambda s: F.GetDefinitionRequest(kind="feature_view", name=s.feature_view),
    ),
    "GetDefinition[entity]": (
        ("any",),
        lambda s: F.GetDefinitionRequest(kind="entity", name="driver"),
    ),
    "GetHistoricalFeatures": (
        ("level", L.USE),
        lambda s: _training_set([f"{s.feature_view}:trips"]),
    ),
    "GetHistoricalFeatures[service]": (
        ("level", L.USE),
        lambda s: _training_set([], s.feature_service),
    ),
    "Materialize": (
        ("level", L.EDIT),
        lambda s: F.MaterializeRequest(
            feature_views=[s.feature_view], end_time=ms_to_timestamp(int(NOW.timestamp() * 1000))
        ),
    ),
    "ListMaterializations": (
        ("level", L.READ),
        lambda s: F.ListMaterializationsRequest(feature_view=s.feature_view),
    ),
    "GetOnlineFeatures": (
        ("level", L.USE),
        lambda s: F.GetOnlineFeaturesRequest(
            features=[f"{s.feature_view}:trips"], entities=_entity_rows()
        ),
    ),
    "GetOnlineFeatures[service]": (
        ("level", L.USE),
        lambda s: F.GetOnlineFeaturesRequest(
            feature_service=s.feature_service, entities=_entity_rows()
        ),
    ),
    "Push": (("level", L.EDIT), _push),
    "SetFeaturePermission": (
        ("level", L.MANAGE),
        lambda s: F.SetFeaturePermissionRequest(
            kind="feature_view", name=s.feature_view, grant=grant(L.READ)
        ),
    ),
    "DeleteFeaturePermission": (
        ("level", L.MANAGE),
        lambda s: F.DeleteFeaturePermissionRequest(
            kind="feature_view", name=s.feature_view, principal="reader"
        ),
    ),
    "ListFeaturePermissions": (
        ("level", L.READ),
        lambda s: F.ListFeaturePermissionsRequest(kind="feature_service", name=s.feature_service),
    ),
}

SERVICES = {
    "modelyard.tracking.v1.TrackingService": TRACKING,
    "modelyard.registry.v1.ModelRegistryService": REGISTRY,
    "modelyard.auth.v1.AuthService": AUTH,
    "modelyard.serving.v1.ServingService": SERVING,
    "inference.GRPCInferenceService": INFERENCE,
    "modelyard.features.v1.FeatureStoreService": FEATURES,
}
FEATURE_STORE = "modelyard.features.v1.FeatureStoreService"
CASES = [(svc, rpc, case) for svc, table in SERVICES.items() for rpc, case in table.items()]
CASES += [
    ("modelyard.registry.v1.ModelRegistryService", f"{rpc}[protected]", case)
    for rpc, case in PROTECTED.items()
]


def expected(policy: tuple[Any, ...], who: str, service: str) -> bool:
    kind = policy[0]
    if kind == "any":
        return True
    if kind == "admin":
        return who == "admin"
    if kind == "service":
        return who == "service"  # not even admins: they must not write the audit log
    if kind == "create":
        return who in CREATORS
    level = LEVELS[who]
    if who == "service" and service.endswith("TrackingService"):
        level = L.READ  # the registry's identity reads every run, to copy model files
    if who == "service" and service == FEATURE_STORE:
        level = L.USE  # the serving identity looks features up for every endpoint
    return level is not None and level >= policy[1]


@pytest.fixture
def world(secure: Secure, tmp_path: Path) -> Iterator[dict[str, Any]]:
    tokens = {"admin": secure.admin_token}
    for who, roles in (
        ("stranger", ["viewer"]),
        ("reader", ["viewer"]),
        ("user", ["viewer"]),
        ("writer", ["editor"]),
        ("owner", ["editor"]),
    ):
        secure.admin.create_principal(who, roles)
        tokens[who] = secure.admin.create_token(who)[0]
    tokens["service"] = secure.admin.create_token("svc-registry")[0]
    tokens["service-features"] = secure.admin.create_token("svc-serving")[0]
    owner = secure.client(tokens["owner"])
    features = FeatureStoreClient(secure.address, tokens["owner"])
    repo = make_repo(tmp_path / "features")
    features.apply([repo.driver])
    counter = iter(range(10_000))

    def seed() -> Seed:
        n = next(counter)
        eid = owner.create_experiment(f"exp-pending-{n}", tags={"seeded": "1"})
        rid = owner.create_run(eid).info.run_id
        owner.rename_experiment(eid, f"exp-{rid}")
        owner.set_tag(rid, "seeded", "1")
        owner.log_metric(rid, "m", 1.0)
        owner.log_text(rid, "manifest", "model/MLmodel")
        model = f"model-{n}"
        owner.create_model_version(model, f"runs:/{rid}/model")
        owner.set_registered_model_tag(model, "seeded", "1")
        owner.set_model_version_tag(model, 1, "seeded", "1")
        owner.set_registered_model_alias(model, "champion", 1)
        owner.set_registered_model_alias(model, "shadow", 1)
        owner.create_model_version(model, f"runs:/{rid}/model")
        owner.transition_model_version_stage(model, 2, "Production")
        endpoint = f"ep-{n}"
        owner.create_endpoint(endpoint, [ServedModel(f"models:/{model}/1")])
        for who, level in (("reader", L.READ), ("user", L.USE), ("writer", L.EDIT)):
            owner._t.call(
                owner._tracking.SetExperimentPermission,
                T.SetExperimentPermissionRequest(
                    experiment_id=eid,
                    grant=C.Grant(principal=who, level=C.PermissionLevel.ValueType(int(level))),
                ),
            )
            owner._t.call(
                owner._registry.SetRegisteredModelPermission,
                R.SetRegisteredModelPermissionRequest(
                    name=model,
                    grant=C.Grant(principal=who, level=C.PermissionLevel.ValueType(int(level))),
                ),
            )
            owner.set_endpoint_permission(endpoint, who, level)
        view = replace(repo.stats, name=f"fv-{n}")
        service = FeatureService(f"fs-{n}", [view[["trips"]]])
        features.apply([view, service])
        features.materialize(NOW - timedelta(days=1), NOW, [view.name])
        for who, level in (("reader", L.READ), ("user", L.USE), ("writer", L.EDIT)):
            features.set_permission("feature_view", view.name, who, level)
            features.set_permission("feature_service", service.name, who, level)
        return Seed(eid, rid, model, endpoint, view.name, service.name)

    with grpc.insecure_channel(secure.address) as channel:
        yield {"tokens": tokens, "seed": seed, "channel": channel}
    features.close()


def call(
    channel: grpc.Channel, service: str, rpc: str, request: Any, token: str
) -> grpc.StatusCode:
    path = f"/{service}/{rpc.split('[')[0]}"
    metadata = (("authorization", f"Bearer {token}"),)
    try:
        if rpc.startswith("GetHistoricalFeatures"):
            stub = channel.stream_stream(path, request_serializer=lambda m: m.SerializeToString())
            list(stub(iter(request), metadata=metadata, timeout=30))
        elif isinstance(request, list):
            channel.stream_unary(path, request_serializer=lambda m: m.SerializeToString())(
                iter(request), metadata=metadata, timeout=30
            )
        elif rpc.startswith(("Download", "Watch")):
            stub = channel.unary_stream(path, request_serializer=lambda m: m.SerializeToString())
            list(stub(request, metadata=metadata, timeout=1 if rpc.startswith("Watch") else 30))
        else:
            channel.unary_unary(path, request_serializer=lambda m: m.SerializeToString())(
                request, metadata=metadata, timeout=30
            )
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize(
    ("service", "rpc", "case"), CASES, ids=[f"{s.rsplit('.', 1)[-1]}.{r}" for s, r, _ in CASES]
)
def test_matrix(world: dict[str, Any], service: str, rpc: str, case: Case) -> None:
    policy, make_request = case
    seed = world["seed"]()
    outcomes = {}
    for who in PRINCIPALS:
        token = world["tokens"][who]
        if who == "service" and service == FEATURE_STORE:
            token = world["tokens"]["service-features"]
        code = call(world["channel"], service, rpc, make_request(seed), token)
        assert code != grpc.StatusCode.UNAUTHENTICATED, f"{rpc} as {who}: UNAUTHENTICATED"
        outcomes[who] = code
    wrong = {
        who: code.name
        for who, code in outcomes.items()
        if (code == grpc.StatusCode.PERMISSION_DENIED) == expected(policy, who, service)
    }
    assert not wrong, (
        f"{rpc} {policy}: unexpected outcomes {wrong} "
        f"(all: { {k: v.name for k, v in outcomes.items()} })"
    )
