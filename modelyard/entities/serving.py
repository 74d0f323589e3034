"""Serving entities: endpoints, the models they serve, and their inference log."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class ServedModelState(enum.StrEnum):
    LOADING = "LOADING"
    READY = "READY"
    FAILED = "FAILED"
    UNLOADED = "UNLOADED"


class MissingFeaturePolicy(enum.StrEnum):
    FAIL = "FAIL"
    IMPUTE = "IMPUTE"


@dataclass(frozen=True, slots=True)
class BatchingConfig:
    max_batch_size: int = 64
    max_queue_delay_micros: int = 0


@dataclass(frozen=True, slots=True)
class ServedModel:
    model_uri: str
    traffic_percent: int = 100
    name: str = ""
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    # Set by the server.
    state: ServedModelState | None = None
    version: int = 0
    reason: str = ""
    loaded_time: int | None = None


@dataclass(frozen=True, slots=True)
class InferenceLogConfig:
    enabled: bool = False
    sampling_rate: float = 1.0


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str
    served_models: tuple[ServedModel, ...]
    inference_log: InferenceLogConfig = field(default_factory=InferenceLogConfig)
    missing_features: MissingFeaturePolicy = MissingFeaturePolicy.FAIL
    creation_time: int | None = None
    last_update_time: int | None = None
    user_id: str = ""
    dropped_log_rows: int = 0


@dataclass(frozen=True, slots=True)
class InferenceRecord:
    record_id: int
    request_id: str
    request_time: int
    endpoint: str
    served_model: str
    model_version: int
    latency_ms: float
    inputs_json: str
    outputs_json: str
    status: str
    ground_truth_json: str = ""
