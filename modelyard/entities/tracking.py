"""Tracking entities: experiments, runs and what is logged to them (MLflow's shapes)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from typing import Any

from modelyard.entities.common import LifecycleStage


class SystemTag(enum.StrEnum):
    """Tags MLflow defines on runs and inputs, under MLflow's names: code written for MLflow
    reads and filters on them (`tags.mlflow.parentRunId = '<id>'` finds a run's children).

    The server keeps the first two in step with the run's run_name and parent_run_id (setting
    either side changes both) and sets the user's tag from user_id when a run is created.
    """

    RUN_NAME = "mlflow.runName"
    PARENT_RUN_ID = "mlflow.parentRunId"
    USER = "mlflow.user"
    SOURCE_NAME = "mlflow.source.name"
    SOURCE_TYPE = "mlflow.source.type"
    NOTE = "mlflow.note.content"  # the run's description
    DATASET_CONTEXT = "mlflow.data.context"  # a dataset input's role: training, eval, ...
    LOGGED_ARTIFACTS = "mlflow.loggedArtifacts"  # the tables log_table wrote, as a JSON list
    LOGGED_IMAGES = "mlflow.loggedImages"  # log_image wrote an image series under images/


class _IsTerminated:
    """`status.is_terminated`, and MLflow's `RunStatus.is_terminated(status)` on the class."""

    def __get__(self, status: RunStatus | None, cls: type[RunStatus]) -> Any:
        if status is None:
            return lambda other: cls.from_string(other) in _TERMINATED
        return status in _TERMINATED


class RunStatus(enum.StrEnum):
    RUNNING = "RUNNING"
    SCHEDULED = "SCHEDULED"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"

    is_terminated = _IsTerminated()

    # MLflow's RunStatus helpers, for code ported from it (its statuses are ints, ours strings).

    @classmethod
    def from_string(cls, status: str) -> RunStatus:
        try:
            return cls(status)
        except ValueError:
            raise ValueError(
                f"{status!r} is not a run status; use one of {[s.value for s in cls]}"
            ) from None

    @classmethod
    def to_string(cls, status: RunStatus | str) -> str:
        return cls.from_string(status).value

    @classmethod
    def all_status(cls) -> list[RunStatus]:
        return list(cls)


_TERMINATED = frozenset((RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED))


@dataclass(frozen=True, slots=True)
class Experiment:
    experiment_id: str
    name: str
    artifact_location: str
    lifecycle_stage: LifecycleStage = LifecycleStage.ACTIVE
    tags: dict[str, str] = field(default_factory=dict)
    creation_time: int | None = None
    last_update_time: int | None = None


@dataclass(frozen=True, slots=True)
class Metric:
    key: str
    value: float
    timestamp: int
    step: int = 0


@dataclass(frozen=True, slots=True)
class Param:
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class RunTag:
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class RunInfo:
    run_id: str
    experiment_id: str
    run_name: str
    user_id: str
    status: RunStatus
    start_time: int
    end_time: int | None
    artifact_uri: str
    lifecycle_stage: LifecycleStage = LifecycleStage.ACTIVE
    parent_run_id: str | None = None

    @property
    def run_uuid(self) -> str:
        """MLflow's older name for run_id."""
        return self.run_id


@dataclass(frozen=True, slots=True)
class RunData:
    """Latest metric values, params and tags. `metrics` etc. are dicts, as in MLflow."""

    latest_metrics: tuple[Metric, ...] = ()
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, float]:
        return {m.key: m.value for m in self.latest_metrics}


@dataclass(frozen=True, slots=True)
class Dataset:
    name: str
    digest: str
    source_type: str = ""
    source: str = ""
    schema: str = ""
    profile: str = ""


@dataclass(frozen=True, slots=True)
class InputTag:
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class DatasetInput:
    dataset: Dataset
    tags: tuple[InputTag, ...] = ()

    @property
    def context(self) -> str:
        """The input's role (training, eval, ...), kept in MLflow's tag."""
        return next((t.value for t in self.tags if t.key == SystemTag.DATASET_CONTEXT), "")


@dataclass(frozen=True, slots=True)
class RunInputs:
    dataset_inputs: tuple[DatasetInput, ...] = ()


NO_INPUTS = RunInputs()  # most runs have none: one shared instance (it is immutable)


@dataclass(frozen=True, slots=True)
class Run:
    info: RunInfo
    data: RunData = field(default_factory=RunData)
    inputs: RunInputs = NO_INPUTS

    def to_dictionary(self) -> dict[str, Any]:
        """The run as plain dicts, lists and strings in MLflow's Run.to_dictionary layout (for
        JSON dumps of a run written against MLflow)."""
        info = {f.name: getattr(self.info, f.name) for f in fields(RunInfo)}
        info["status"] = self.info.status.value
        info["lifecycle_stage"] = self.info.lifecycle_stage.value
        info["run_uuid"] = self.info.run_id
        return {
            "info": info,
            "data": {
                "metrics": self.data.metrics,
                "params": dict(self.data.params),
                "tags": dict(self.data.tags),
            },
            "inputs": {
                "dataset_inputs": [
                    {
                        "dataset": {f.name: getattr(d.dataset, f.name) for f in fields(Dataset)},
                        "tags": [{"key": t.key, "value": t.value} for t in d.tags],
                    }
                    for d in self.inputs.dataset_inputs
                ]
            },
        }
