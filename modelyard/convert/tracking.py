"""Converters for modelyard.tracking.v1 messages."""

from __future__ import annotations

import decimal
import math
import numbers
from typing import Any, SupportsFloat, SupportsIndex

from google.protobuf.timestamp_pb2 import Timestamp

from modelyard._gen.tracking.v1 import tracking_pb2 as pb
from modelyard.convert.common import (
    MAX_SECONDS,
    MIN_SECONDS,
    key_text,
    ms_to_timestamp,
    stage_to_entity,
    stage_to_proto,
    tags_to_dict,
    tags_to_proto,
    timestamp_to_ms,
)
from modelyard.entities.tracking import (
    NO_INPUTS,
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
)
from modelyard.errors import InvalidArgument

_STATUS_TO_PROTO = {
    RunStatus.RUNNING: pb.RUN_STATUS_RUNNING,
    RunStatus.SCHEDULED: pb.RUN_STATUS_SCHEDULED,
    RunStatus.FINISHED: pb.RUN_STATUS_FINISHED,
    RunStatus.FAILED: pb.RUN_STATUS_FAILED,
    RunStatus.KILLED: pb.RUN_STATUS_KILLED,
}
_STATUS_FROM_PROTO = {v: k for k, v in _STATUS_TO_PROTO.items()}
_STATUS_NAMES = ", ".join(s.value for s in list(RunStatus)[:-1]) + f" or {list(RunStatus)[-1]}"


def status_to_proto(status: RunStatus | str) -> pb.RunStatus.ValueType:
    try:
        return _STATUS_TO_PROTO[RunStatus(status)]
    except ValueError:
        raise InvalidArgument(
            f"status {status!r} is not a RunStatus; use {_STATUS_NAMES}", field="status"
        ) from None


def status_to_entity(status: pb.RunStatus.ValueType) -> RunStatus | None:
    """None for RUN_STATUS_UNSPECIFIED or a number this version does not know."""
    return _STATUS_FROM_PROTO.get(status)


def experiment_to_proto(e: Experiment) -> pb.Experiment:
    return pb.Experiment(
        experiment_id=e.experiment_id,
        name=e.name,
        artifact_location=e.artifact_location,
        lifecycle_stage=stage_to_proto(e.lifecycle_stage),
        tags=tags_to_proto(e.tags),
        creation_time=ms_to_timestamp(e.creation_time),
        last_update_time=ms_to_timestamp(e.last_update_time),
    )


def experiment_to_entity(m: pb.Experiment) -> Experiment:
    return Experiment(
        experiment_id=m.experiment_id,
        name=m.name,
        artifact_location=m.artifact_location,
        lifecycle_stage=stage_to_entity(m.lifecycle_stage),
        tags=tags_to_dict(m.tags),
        creation_time=timestamp_to_ms(m.creation_time, m.HasField("creation_time")),
        last_update_time=timestamp_to_ms(m.last_update_time, m.HasField("last_update_time")),
    )


# The range of google.protobuf.Timestamp, in milliseconds.
_MIN_MS = MIN_SECONDS * 1000
_MAX_MS = MAX_SECONDS * 1000 + 999
_MIN_INT64 = -(2**63)
_MAX_INT64 = 2**63 - 1


def timestamp_fields(ms: SupportsIndex, field: str = "timestamp") -> Any:
    """What Timestamp.FromMilliseconds sets, as constructor arguments, at half the cost (runs
    and batches carry hundreds of timestamps). Anything else than whole milliseconds within
    Timestamp's range is refused here, naming `field`, rather than by protobuf's TypeError or
    ValueError, which name neither the field nor the unit."""
    if type(ms) is not int or not _MIN_MS <= ms <= _MAX_MS:
        ms = _whole_number(ms, field, "a timestamp", "milliseconds since the Unix epoch")
        if not _MIN_MS <= ms <= _MAX_MS:
            raise InvalidArgument(
                f"{field} {ms} ms is outside 0001-01-01 to 9999-12-31; send a UTC time within "
                "that range, in milliseconds since the Unix epoch",
                field=field,
            )
    return {"seconds": ms // 1000, "nanos": ms % 1000 * 1_000_000}


def _whole_number(value: object, field: str, what: str, unit: str) -> int:
    """`value` as an int, if it is one (numpy's too, not bool): the slow path of the checks."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    raise InvalidArgument(
        f"{field} is {value!r} ({type(value).__name__}); {what} must be an integer ({unit})",
        field=field,
    )


def metric_args(
    key: str,
    value: SupportsFloat,
    timestamp: SupportsIndex,
    step: SupportsIndex,
    index: int | None = None,
) -> dict[str, Any]:
    """pb.Metric's (and LogMetricRequest's) fields of one value, checked: a value that is not
    a real number (None would be sent as 0.0), or a timestamp or step protobuf would refuse, is
    InvalidArgument naming the field (`metrics[<index>].value` in a batch). Type checks first,
    field names only on failure: this is the hot path of logging."""
    if type(key) is not str:
        key = key_text(key, _field(index, "key"))
    if type(value) is not float:
        try:
            number = _real(value)
        except OverflowError:  # an int (or Fraction) past a double's range
            field = _field(index, "value")
            raise InvalidArgument(
                f"{field} of metric {key!r} is too large for a metric value (a 64-bit float, "
                "at most about 1.8e308); log a smaller number, or its logarithm",
                field=field,
            ) from None
        if number is None:
            field = _field(index, "value")
            raise InvalidArgument(
                f"{field} of metric {key!r} is {value!r} ({type(value).__name__}); a metric "
                "value must be a number (int or float)",
                field=field,
            )
        value = number
    if type(step) is not int or not _MIN_INT64 <= step <= _MAX_INT64:
        field = _field(index, "step")
        step = _whole_number(step, field, "a step", "64-bit")
        if not _MIN_INT64 <= step <= _MAX_INT64:
            raise InvalidArgument(
                f"{field} {step} is outside the 64-bit integers a step is stored as", field=field
            )
    if type(timestamp) is int and 0 <= timestamp <= _MAX_MS:
        ts = {"seconds": timestamp // 1000, "nanos": timestamp % 1000 * 1_000_000}
    else:
        field = _field(index, "timestamp")
        ts = timestamp_fields(timestamp, field)
        if ts["seconds"] < 0:  # the server refuses it too; queued, it would fail at flush
            raise metric_time_before_epoch(field, int(timestamp))
    return {"key": key, "value": value, "timestamp": ts, "step": step}


def metric_time_before_epoch(field: str, ms: int) -> InvalidArgument:
    """The refusal of a metric timestamp before 1970, as MLflow refuses it: a metric's time is
    milliseconds since the epoch, and a negative one is almost always a slip (a step, or a
    negated or relative time) that would sort the history and charts wrongly."""
    return InvalidArgument(
        f"{field} {ms} is before 1970-01-01: metric timestamps are milliseconds since the Unix "
        "epoch, 0 or more (as in MLflow); pass int(time.time() * 1000), or leave it out for "
        "the time of logging",
        field=field,
    )


def _real(value: object) -> float | None:
    """A real number as a float, numpy's, a Decimal (a number to MLflow too: a loss summed
    from a database column, say) and a one-element array or tensor's too (its .item(), as
    MLflow takes a torch loss); None for anything else (strings and bools included)."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, decimal.Decimal):
        if value.is_snan():  # float() refuses it
            return None
        number = float(value)
        if math.isinf(number) and value.is_finite():  # past a double's range, as a big int
            raise OverflowError(value)
        return number
    item = getattr(value, "item", None)
    if callable(item) and not isinstance(value, (str, bytes)):
        try:
            inner = item()
        except (TypeError, ValueError, RuntimeError):  # not one element
            return None
        if isinstance(inner, numbers.Real) and not isinstance(inner, bool):
            return float(inner)
    return None


def _field(index: int | None, name: str) -> str:
    return name if index is None else f"metrics[{index}].{name}"


def _ms(ts: Timestamp) -> int:
    """Timestamp.ToMilliseconds without its range check, for messages a server built."""
    return ts.seconds * 1000 + ts.nanos // 1_000_000


def metric_fields(m: Metric, index: int | None = None) -> dict[str, Any]:
    """pb.Metric's constructor arguments: a list of these builds a repeated field in one call.
    `index`, the metric's place in a request's list, names the field at fault (metrics[i])."""
    return metric_args(m.key, m.value, m.timestamp, m.step, index)


def metric_to_proto(m: Metric) -> pb.Metric:
    return pb.Metric(**metric_fields(m))


def metric_to_entity(m: pb.Metric) -> Metric:
    return Metric(m.key, m.value, _ms(m.timestamp), m.step)


def param_to_proto(p: Param) -> pb.Param:
    return pb.Param(key=p.key, value=p.value)


def _run_info_fields(i: RunInfo) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "run_id": i.run_id,
        "run_name": i.run_name,
        "experiment_id": i.experiment_id,
        "user_id": i.user_id,
        "status": status_to_proto(i.status),
        "artifact_uri": i.artifact_uri,
        "lifecycle_stage": stage_to_proto(i.lifecycle_stage),
        "parent_run_id": i.parent_run_id or "",
    }
    if i.start_time is not None:
        fields["start_time"] = timestamp_fields(i.start_time, "start_time")
    if i.end_time is not None:
        fields["end_time"] = timestamp_fields(i.end_time, "end_time")
    return fields


def run_info_to_proto(i: RunInfo) -> pb.RunInfo:
    return pb.RunInfo(**_run_info_fields(i))


def run_info_to_entity(m: pb.RunInfo) -> RunInfo:
    # Positional arguments: a page of runs builds hundreds of these (keywords cost ~30% more).
    return RunInfo(
        m.run_id,
        m.experiment_id,
        m.run_name,
        m.user_id,
        status_to_entity(m.status) or RunStatus.RUNNING,
        _ms(m.start_time),
        _ms(m.end_time) if m.HasField("end_time") else None,
        m.artifact_uri,
        stage_to_entity(m.lifecycle_stage),
        m.parent_run_id or None,
    )


def dataset_to_proto(d: Dataset) -> pb.Dataset:
    return pb.Dataset(
        name=d.name,
        digest=d.digest,
        source_type=d.source_type,
        source=d.source,
        schema=d.schema,
        profile=d.profile,
    )


def dataset_to_entity(m: pb.Dataset) -> Dataset:
    return Dataset(
        name=m.name,
        digest=m.digest,
        source_type=m.source_type,
        source=m.source,
        schema=m.schema,
        profile=m.profile,
    )


def dataset_input_to_proto(d: DatasetInput) -> pb.DatasetInput:
    return pb.DatasetInput(
        dataset=dataset_to_proto(d.dataset),
        tags=tags_to_proto({t.key: t.value for t in d.tags}),
    )


def dataset_input_to_entity(m: pb.DatasetInput) -> DatasetInput:
    return DatasetInput(
        dataset=dataset_to_entity(m.dataset),
        tags=tuple(InputTag(t.key, t.value) for t in m.tags),
    )


def run_fields(r: Run) -> dict[str, Any]:
    """The run as keyword arguments of pb.Run (nested messages as dicts): a page of runs is
    then built by the message constructors in C, in one call, rather than field by field."""
    data = r.data
    return {
        "info": _run_info_fields(r.info),
        "data": {
            "metrics": [metric_fields(m) for m in data.latest_metrics],
            "params": [{"key": k, "value": v} for k, v in data.params.items()],
            "tags": [{"key": k, "value": v} for k, v in data.tags.items()],
        },
        "inputs": {"dataset_inputs": [dataset_input_to_proto(d) for d in r.inputs.dataset_inputs]},
    }


def run_to_proto(r: Run) -> pb.Run:
    return pb.Run(**run_fields(r))


def run_to_entity(m: pb.Run) -> Run:
    """A page of runs is converted in one go by the SDK's searches: every field is read once,
    and runs without inputs share one empty RunInputs."""
    data = m.data
    inputs = m.inputs.dataset_inputs
    return Run(
        run_info_to_entity(m.info),
        RunData(
            tuple([metric_to_entity(x) for x in data.metrics]),
            {p.key: p.value for p in data.params},
            tags_to_dict(data.tags),
        ),
        RunInputs(tuple([dataset_input_to_entity(d) for d in inputs])) if inputs else NO_INPUTS,
    )
