"""Plain, immutable domain objects shared by the SDK and the services.

They never import generated protobuf code; `modelyard.convert` maps them to and from the wire.
Times are integer milliseconds since the epoch, as in MLflow, so MLflow code ports unchanged.
"""

from modelyard.entities.common import (
    FileInfo,
    Grant,
    LifecycleStage,
    PagedList,
    PermissionLevel,
    PresignedUrl,
    ViewType,
)
from modelyard.entities.registry import (
    ModelEvent,
    ModelVersion,
    ModelVersionLineage,
    ModelVersionStatus,
    RegisteredModel,
    Stage,
)
from modelyard.entities.tracking import (
    Dataset,
    DatasetInput,
    Experiment,
    InputTag,
    Metric,
    Param,
    Run,
    RunData,
    RunInfo,
    RunInputs,
    RunStatus,
    RunTag,
    SystemTag,
)

__all__ = [
    "Dataset",
    "DatasetInput",
    "Experiment",
    "FileInfo",
    "Grant",
    "InputTag",
    "LifecycleStage",
    "Metric",
    "ModelEvent",
    "ModelVersion",
    "ModelVersionLineage",
    "ModelVersionStatus",
    "PagedList",
    "Param",
    "PermissionLevel",
    "PresignedUrl",
    "RegisteredModel",
    "Run",
    "RunData",
    "RunInfo",
    "RunInputs",
    "RunStatus",
    "RunTag",
    "Stage",
    "SystemTag",
    "ViewType",
]
