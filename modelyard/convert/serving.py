"""Converters for modelyard.serving.v1 messages."""

from __future__ import annotations

from modelyard._gen.serving.v1 import serving_pb2 as pb
from modelyard.convert.common import ms_to_timestamp, timestamp_to_ms
from modelyard.entities.serving import (
    BatchingConfig,
    Endpoint,
    InferenceLogConfig,
    InferenceRecord,
    MissingFeaturePolicy,
    ServedModel,
    ServedModelState,
)

_STATE = {
    ServedModelState.LOADING: pb.SERVED_MODEL_STATE_LOADING,
    ServedModelState.READY: pb.SERVED_MODEL_STATE_READY,
    ServedModelState.FAILED: pb.SERVED_MODEL_STATE_FAILED,
    ServedModelState.UNLOADED: pb.SERVED_MODEL_STATE_UNLOADED,
}
_STATE_BACK = {v: k for k, v in _STATE.items()}
_POLICY = {
    MissingFeaturePolicy.FAIL: pb.MISSING_FEATURE_POLICY_FAIL,
    MissingFeaturePolicy.IMPUTE: pb.MISSING_FEATURE_POLICY_IMPUTE,
}
_POLICY_BACK = {v: k for k, v in _POLICY.items()}


def policy_to_entity(value: int) -> MissingFeaturePolicy | None:
    """None for an unknown number; UNSPECIFIED means FAIL."""
    if value == pb.MISSING_FEATURE_POLICY_UNSPECIFIED:
        return MissingFeaturePolicy.FAIL
    return _POLICY_BACK.get(value)  # type: ignore[call-overload]


def served_model_to_proto(s: ServedModel) -> pb.ServedModel:
    msg = pb.ServedModel(
        name=s.name,
        model_uri=s.model_uri,
        traffic_percent=s.traffic_percent,
        batching=pb.BatchingConfig(
            max_batch_size=s.batching.max_batch_size,
            max_queue_delay_micros=s.batching.max_queue_delay_micros,
        ),
        version=s.version,
        reason=s.reason,
    )
    if s.state is not None:
        msg.state = _STATE[s.state]
    if s.loaded_time is not None:
        msg.loaded_time.FromMilliseconds(s.loaded_time)
    return msg


def served_model_to_entity(m: pb.ServedModel) -> ServedModel:
    return ServedModel(
        model_uri=m.model_uri,
        traffic_percent=m.traffic_percent,
        name=m.name,
        batching=BatchingConfig(
            max_batch_size=m.batching.max_batch_size or 64,
            max_queue_delay_micros=m.batching.max_queue_delay_micros,
        ),
        state=_STATE_BACK.get(m.state),
        version=m.version,
        reason=m.reason,
        loaded_time=timestamp_to_ms(m.loaded_time, m.HasField("loaded_time")),
    )


def endpoint_to_proto(e: Endpoint) -> pb.Endpoint:
    return pb.Endpoint(
        name=e.name,
        served_models=[served_model_to_proto(s) for s in e.served_models],
        inference_log=pb.InferenceLogConfig(
            enabled=e.inference_log.enabled, sampling_rate=e.inference_log.sampling_rate
        ),
        missing_features=_POLICY[e.missing_features],
        creation_time=ms_to_timestamp(e.creation_time),
        last_update_time=ms_to_timestamp(e.last_update_time),
        user_id=e.user_id,
        dropped_log_rows=e.dropped_log_rows,
    )


def endpoint_to_entity(m: pb.Endpoint) -> Endpoint:
    return Endpoint(
        name=m.name,
        served_models=tuple(served_model_to_entity(s) for s in m.served_models),
        inference_log=InferenceLogConfig(
            enabled=m.inference_log.enabled,
            sampling_rate=m.inference_log.sampling_rate or 1.0,
        ),
        missing_features=policy_to_entity(m.missing_features) or MissingFeaturePolicy.FAIL,
        creation_time=timestamp_to_ms(m.creation_time, m.HasField("creation_time")),
        last_update_time=timestamp_to_ms(m.last_update_time, m.HasField("last_update_time")),
        user_id=m.user_id,
        dropped_log_rows=m.dropped_log_rows,
    )


def record_to_proto(r: InferenceRecord) -> pb.InferenceRecord:
    return pb.InferenceRecord(
        record_id=r.record_id,
        request_id=r.request_id,
        request_time=ms_to_timestamp(r.request_time),
        endpoint=r.endpoint,
        served_model=r.served_model,
        model_version=r.model_version,
        latency_ms=r.latency_ms,
        inputs_json=r.inputs_json,
        outputs_json=r.outputs_json,
        status=r.status,
        ground_truth_json=r.ground_truth_json,
    )


def record_to_entity(m: pb.InferenceRecord) -> InferenceRecord:
    return InferenceRecord(
        record_id=m.record_id,
        request_id=m.request_id,
        request_time=m.request_time.ToMilliseconds(),
        endpoint=m.endpoint,
        served_model=m.served_model,
        model_version=m.model_version,
        latency_ms=m.latency_ms,
        inputs_json=m.inputs_json,
        outputs_json=m.outputs_json,
        status=m.status,
        ground_truth_json=m.ground_truth_json,
    )
