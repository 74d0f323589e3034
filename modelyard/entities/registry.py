"""Registry entities: registered models, versions, events and lineage (MLflow's shapes)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from modelyard.entities.tracking import Experiment, Run


class ModelVersionStatus(enum.StrEnum):
    PENDING_REGISTRATION = "PENDING_REGISTRATION"
    FAILED_REGISTRATION = "FAILED_REGISTRATION"
    READY = "READY"


class Stage(enum.StrEnum):
    """MLflow's legacy stages; aliases are the modern way to mark a version."""

    NONE = "None"
    STAGING = "Staging"
    PRODUCTION = "Production"
    ARCHIVED = "Archived"

    @classmethod
    def parse(cls, value: str) -> Stage:
        for stage in cls:
            if stage.value.lower() == value.strip().lower():
                return stage
        raise ValueError(value)


@dataclass(frozen=True, slots=True)
class ModelVersion:
    name: str
    version: int
    source: str
    run_id: str
    status: ModelVersionStatus
    current_stage: Stage = Stage.NONE
    description: str = ""
    status_message: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)  # lists, as MLflow's entities
    storage_location: str = ""
    creation_timestamp: int | None = None
    last_updated_timestamp: int | None = None
    user_id: str = ""
    run_link: str = ""


@dataclass(frozen=True, slots=True)
class RegisteredModel:
    name: str
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)
    # The newest READY version of each stage.
    latest_versions: list[ModelVersion] = field(default_factory=list)
    creation_timestamp: int | None = None
    last_updated_timestamp: int | None = None
    user_id: str = ""


@dataclass(frozen=True, slots=True)
class ModelEvent:
    event_id: int
    event_type: str
    model_name: str
    version: int | None
    details: dict[str, str]
    user_id: str
    timestamp: int


@dataclass(frozen=True, slots=True)
class ModelVersionLineage:
    model_version: ModelVersion
    run: Run | None
    experiment: Experiment | None
