"""Converters for modelyard.registry.v1 messages."""

from __future__ import annotations

from modelyard._gen.registry.v1 import registry_pb2 as pb
from modelyard.convert.common import ms_to_timestamp, tags_to_dict, tags_to_proto, timestamp_to_ms
from modelyard.convert.tracking import (
    experiment_to_entity,
    experiment_to_proto,
    run_to_entity,
    run_to_proto,
)
from modelyard.entities.registry import (
    ModelEvent,
    ModelVersion,
    ModelVersionLineage,
    ModelVersionStatus,
    RegisteredModel,
    Stage,
)

_STATUS = {
    ModelVersionStatus.PENDING_REGISTRATION: pb.MODEL_VERSION_STATUS_PENDING_REGISTRATION,
    ModelVersionStatus.FAILED_REGISTRATION: pb.MODEL_VERSION_STATUS_FAILED_REGISTRATION,
    ModelVersionStatus.READY: pb.MODEL_VERSION_STATUS_READY,
}
_STATUS_BACK = {v: k for k, v in _STATUS.items()}
_STAGE = {
    Stage.NONE: pb.STAGE_NONE,
    Stage.STAGING: pb.STAGE_STAGING,
    Stage.PRODUCTION: pb.STAGE_PRODUCTION,
    Stage.ARCHIVED: pb.STAGE_ARCHIVED,
}
_STAGE_BACK = {v: k for k, v in _STAGE.items()}
_EVENT_PREFIX = "MODEL_EVENT_TYPE_"


def stage_to_proto(stage: Stage) -> pb.Stage.ValueType:
    return _STAGE[stage]


def stage_to_entity(stage: pb.Stage.ValueType) -> Stage | None:
    """None for STAGE_UNSPECIFIED or an unknown number."""
    return _STAGE_BACK.get(stage)


def event_type_to_proto(name: str) -> pb.ModelEventType.ValueType:
    return pb.ModelEventType.Value(_EVENT_PREFIX + name)


def event_type_to_entity(value: pb.ModelEventType.ValueType) -> str:
    return pb.ModelEventType.Name(value).removeprefix(_EVENT_PREFIX)


def model_version_to_proto(v: ModelVersion) -> pb.ModelVersion:
    return pb.ModelVersion(
        name=v.name,
        version=v.version,
        description=v.description,
        source=v.source,
        run_id=v.run_id,
        status=_STATUS[v.status],
        status_message=v.status_message,
        current_stage=_STAGE[v.current_stage],
        tags=tags_to_proto(v.tags),
        aliases=list(v.aliases),
        storage_location=v.storage_location,
        creation_time=ms_to_timestamp(v.creation_timestamp),
        last_update_time=ms_to_timestamp(v.last_updated_timestamp),
        user_id=v.user_id,
        run_link=v.run_link,
    )


def model_version_to_entity(m: pb.ModelVersion) -> ModelVersion:
    return ModelVersion(
        name=m.name,
        version=m.version,
        source=m.source,
        run_id=m.run_id,
        status=_STATUS_BACK.get(m.status, ModelVersionStatus.PENDING_REGISTRATION),
        current_stage=_STAGE_BACK.get(m.current_stage, Stage.NONE),
        description=m.description,
        status_message=m.status_message,
        tags=tags_to_dict(m.tags),
        aliases=list(m.aliases),
        storage_location=m.storage_location,
        creation_timestamp=timestamp_to_ms(m.creation_time, m.HasField("creation_time")),
        last_updated_timestamp=timestamp_to_ms(m.last_update_time, m.HasField("last_update_time")),
        user_id=m.user_id,
        run_link=m.run_link,
    )


def registered_model_to_proto(r: RegisteredModel) -> pb.RegisteredModel:
    return pb.RegisteredModel(
        name=r.name,
        description=r.description,
        tags=tags_to_proto(r.tags),
        aliases=dict(r.aliases),
        latest_versions=[model_version_to_proto(v) for v in r.latest_versions],
        creation_time=ms_to_timestamp(r.creation_timestamp),
        last_update_time=ms_to_timestamp(r.last_updated_timestamp),
        user_id=r.user_id,
    )


def registered_model_to_entity(m: pb.RegisteredModel) -> RegisteredModel:
    return RegisteredModel(
        name=m.name,
        description=m.description,
        tags=tags_to_dict(m.tags),
        aliases=dict(m.aliases),
        latest_versions=[model_version_to_entity(v) for v in m.latest_versions],
        creation_timestamp=timestamp_to_ms(m.creation_time, m.HasField("creation_time")),
        last_updated_timestamp=timestamp_to_ms(m.last_update_time, m.HasField("last_update_time")),
        user_id=m.user_id,
    )


def event_to_proto(e: ModelEvent) -> pb.ModelEvent:
    return pb.ModelEvent(
        event_id=e.event_id,
        event_type=event_type_to_proto(e.event_type),
        model_name=e.model_name,
        version=e.version or 0,
        details=dict(e.details),
        user_id=e.user_id,
        event_time=ms_to_timestamp(e.timestamp),
    )


def event_to_entity(m: pb.ModelEvent) -> ModelEvent:
    return ModelEvent(
        event_id=m.event_id,
        event_type=event_type_to_entity(m.event_type),
        model_name=m.model_name,
        version=m.version or None,
        details=dict(m.details),
        user_id=m.user_id,
        timestamp=m.event_time.ToMilliseconds(),
    )


def lineage_to_proto(lineage: ModelVersionLineage) -> pb.GetModelVersionLineageResponse:
    response = pb.GetModelVersionLineageResponse(
        model_version=model_version_to_proto(lineage.model_version)
    )
    if lineage.run is not None:
        response.run.CopyFrom(run_to_proto(lineage.run))
    if lineage.experiment is not None:
        response.experiment.CopyFrom(experiment_to_proto(lineage.experiment))
    return response


def lineage_to_entity(m: pb.GetModelVersionLineageResponse) -> ModelVersionLineage:
    return ModelVersionLineage(
        model_version=model_version_to_entity(m.model_version),
        run=run_to_entity(m.run) if m.HasField("run") else None,
        experiment=experiment_to_entity(m.experiment) if m.HasField("experiment") else None,
    )
