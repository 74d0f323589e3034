"""FeatureStoreServicer: modelyard.features.v1 over gRPC."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

import pyarrow as pa
from google.protobuf.timestamp_pb2 import Timestamp

from modelyard._gen.features.v1 import features_pb2 as pb
from modelyard._gen.features.v1 import features_pb2_grpc
from modelyard.convert.common import grant_to_proto, level_to_entity, ms_to_timestamp
from modelyard.convert.features import (
    append_values,
    definition_to_entity,
    definition_to_proto,
    fill_array,
    value_type_to_entity,
    values_to_python,
)
from modelyard.errors import InvalidArgument
from modelyard.services.common import validation as v
from modelyard.services.feature_store.service import FeaturesService, TrainingSetOutput
from modelyard.services.feature_store.store.sql import MaterializationRecord, Stored

CHUNK = 1024 * 1024
MAX_ENTITY_BYTES = 2 * 1024**3
_ACTIONS = {
    "create": pb.PLAN_ACTION_CREATE,
    "update": pb.PLAN_ACTION_UPDATE,
    "delete": pb.PLAN_ACTION_DELETE,
    "unchanged": pb.PLAN_ACTION_UNCHANGED,
}
_STATUS = {
    "PRESENT": pb.FEATURE_STATUS_PRESENT,
    "NOT_FOUND": pb.FEATURE_STATUS_NOT_FOUND,
    "OUTSIDE_MAX_AGE": pb.FEATURE_STATUS_OUTSIDE_MAX_AGE,
}


def _stored(s: Stored) -> pb.Definition:
    msg = definition_to_proto(s.definition)
    msg.version = s.version
    msg.update_time.FromMilliseconds(s.update_time)
    return msg


def _materialization(r: MaterializationRecord) -> pb.Materialization:
    return pb.Materialization(
        feature_view=r.feature_view,
        start_time=ms_to_timestamp(r.start_time),
        end_time=ms_to_timestamp(r.end_time),
        rows=r.rows,
        run_time=ms_to_timestamp(r.run_time),
    )


def _read_arrow(data: bytes, field: str) -> pa.Table:
    try:
        return pa.ipc.open_stream(data).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidArgument(f"{field} is not an Arrow IPC stream ({exc})", field=field) from None


def _arrow_chunks(
    reader: pa.RecordBatchReader, output: TrainingSetOutput | None
) -> Iterator[tuple[bytes, int]]:
    """The result as Arrow IPC stream bytes in chunks, with the rows each chunk completes."""
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, reader.schema) as writer:
        for batch in reader:
            if output is not None:
                output.write(batch)
            writer.write_batch(batch)
            data = sink.getvalue()
            sink.seek(0)
            sink.truncate()
            for start in range(0, len(data), CHUNK):
                last = start + CHUNK >= len(data)
                yield data[start : start + CHUNK], batch.num_rows if last else 0
    tail = sink.getvalue()
    if tail:
        yield tail, 0


def _in_entities(exc: InvalidArgument, request: pb.GetOnlineFeaturesRequest) -> InvalidArgument:
    """`exc` as naming the request's field: the service names a join key by its name (which
    serving's callers know as a model input), here it is an entity column of the request."""
    if exc.field is None or re.split(r"[.\[]", exc.field)[0] in request.DESCRIPTOR.fields_by_name:
        return exc
    for i, column in enumerate(request.entities):
        if column.name == exc.field:
            return InvalidArgument(
                f"entities[{i}].values: {exc.message}", field=f"entities[{i}].values"
            )
    return InvalidArgument(
        f"entities: {exc.message}; add an entity column named {exc.field!r}", field="entities"
    )


def _python_values(field: str, values) -> list:
    """values_to_python, whose one failure (a timestamp no calendar holds) names the value."""
    try:
        return values_to_python(values)
    except ValueError:
        for j, value in enumerate(values):
            if value.WhichOneof("val") == "unix_timestamp_val":
                v.timestamp_ms(f"{field}[{j}].unix_timestamp_val", value.unix_timestamp_val)
        raise


# Duration's range (+/- 10,000 years), which the conversion to a timedelta relies on.
MAX_TTL_SECONDS = 315_576_000_000


def _check_fields(at: str, d: pb.Definition) -> None:
    """The fields of one definition that must make sense on their own (how definitions hold
    together is the service's check): column names and types, and the ttl."""
    columns = (
        [(f"{at}.entity.join_keys[{j}]", k) for j, k in enumerate(d.entity.join_keys)]
        if d.HasField("entity")
        else [(f"{at}.feature_view.schema[{j}]", f) for j, f in enumerate(d.feature_view.schema)]
    )
    for field, column in columns:
        v.require(f"{field}.name", column.name)
        v.max_length(f"{field}.name", column.name, 255)
        if column.dtype and value_type_to_entity(column.dtype) is None:
            raise InvalidArgument(
                f"{field}.dtype {column.dtype} is not a ValueType; use one of "
                + ", ".join(pb.ValueType.keys()[1:]),
                field=f"{field}.dtype",
            )
    ttl = d.feature_view.ttl
    if not 0 <= ttl.seconds <= MAX_TTL_SECONDS or not 0 <= ttl.nanos < 1_000_000_000:
        raise InvalidArgument(
            f"{at}.feature_view.ttl must be 0 (no limit) to {MAX_TTL_SECONDS} seconds, "
            f"got {ttl.seconds}s + {ttl.nanos}ns",
            field=f"{at}.feature_view.ttl",
        )


class FeatureStoreServicer(features_pb2_grpc.FeatureStoreServiceServicer):
    def __init__(self, service: FeaturesService) -> None:
        self.service = service

    def ApplyDefinitions(self, request, context):
        definitions = []
        for i, d in enumerate(request.definitions):
            if d.WhichOneof("kind") is None:
                raise InvalidArgument(
                    f"definitions[{i}] is empty; set its entity, feature_view or feature_service",
                    field="definitions",
                )
            _check_fields(f"definitions[{i}]", d)
            definitions.append(definition_to_entity(d))
        steps = self.service.apply(definitions, request.dry_run, request.partial)
        return pb.ApplyDefinitionsResponse(
            plan=[
                pb.PlanStep(
                    action=_ACTIONS[s.action], kind=s.kind, name=s.name, changes=list(s.changes)
                )
                for s in steps
            ],
            applied=not request.dry_run,
        )

    def ListDefinitions(self, request, context):
        stored = self.service.list_definitions(request.kind)
        return pb.ListDefinitionsResponse(definitions=[_stored(s) for s in stored])

    def GetDefinition(self, request, context):
        stored = self.service.get_definition(request.kind, request.name, request.version)
        return pb.GetDefinitionResponse(definition=_stored(stored))

    def GetHistoricalFeatures(self, request_iterator, context):
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgument("the first message must be the header", field="header")
        header = first.header
        data = bytearray()
        for request in request_iterator:
            if request.WhichOneof("part") != "arrow_chunk":
                raise InvalidArgument("only the first message may be a header", field="header")
            data.extend(request.arrow_chunk)
            if len(data) > MAX_ENTITY_BYTES:
                raise InvalidArgument(
                    "the entity rows exceed 2 GiB; split them", field="arrow_chunk"
                )
        output = self.service.open_output(header.output_uri) if header.output_uri else None
        try:
            entities = _read_arrow(bytes(data), "arrow_chunk")
            reader = self.service.historical(
                list(header.features),
                header.feature_service,
                entities,
                header.event_timestamp_column,
                header.full_feature_names,
            )
            rows = 0
            for chunk, batch_rows in _arrow_chunks(reader, output):
                rows += batch_rows
                yield pb.GetHistoricalFeaturesResponse(arrow_chunk=chunk)
            summary = pb.HistoricalFeaturesSummary(rows=rows, columns=list(reader.schema.names))
            if output is not None:
                summary.output_uri = header.output_uri
                summary.output_sha256 = output.finish(reader.schema)
                output = None
        finally:
            if output is not None:
                output.abort()
        yield pb.GetHistoricalFeaturesResponse(summary=summary)

    def Materialize(self, request, context):
        if not request.HasField("end_time"):
            raise InvalidArgument("end_time is required", field="end_time")
        start = v.timestamp_ms("start_time", request.start_time, request.HasField("start_time"))
        end = v.timestamp_ms("end_time", request.end_time)
        records = self.service.materialize(list(request.feature_views), start, end)
        return pb.MaterializeResponse(materializations=[_materialization(r) for r in records])

    def ListMaterializations(self, request, context):
        records = self.service.materializations(request.feature_view, request.latest_only)
        return pb.ListMaterializationsResponse(
            materializations=[_materialization(r) for r in records]
        )

    def GetOnlineFeatures(self, request, context):
        entities: dict[str, list] = {}
        for i, c in enumerate(request.entities):
            if c.name in entities:
                raise InvalidArgument(
                    f"entities[{i}].name: the entity column {c.name!r} appears twice",
                    field=f"entities[{i}].name",
                )
            entities[c.name] = _python_values(f"entities[{i}].values", c.values)
        try:
            columns = self.service.online_features(
                list(request.features),
                request.feature_service,
                entities,
                request.full_feature_names,
            )
        except InvalidArgument as exc:
            raise _in_entities(exc, request) from None
        response = pb.GetOnlineFeaturesResponse()
        # The join keys as sent. EntityColumn's fields are FeatureColumn's first two (name,
        # values), so each is copied as its bytes: a tenth of the time of copying the messages.
        for c in request.entities:
            response.columns.add().MergeFromString(c.SerializeToString())
        # A view's features share their statuses and event times: those are built and encoded
        # once per view and merged into each of its columns (far cheaper than a message each).
        shared: dict[int, bytes] = {}
        for column in columns:
            if id(column.statuses) not in shared:
                part = pb.FeatureColumn(statuses=[_STATUS[s] for s in column.statuses])
                if request.packed_event_times:
                    part.event_time_micros.extend(
                        [0 if t is None else t * 1000 for t in column.event_times]
                    )
                else:
                    part.event_timestamps.extend(
                        Timestamp() if t is None else ms_to_timestamp(t) for t in column.event_times
                    )
                shared[id(column.statuses)] = part.SerializeToString()
            out = response.columns.add(name=column.name)
            out.MergeFromString(shared[id(column.statuses)])
            if request.typed_arrays:
                fill_array(out.array, column.values, column.dtype)
            else:
                append_values(out.values, column.values, column.dtype)
        return response

    def Push(self, request, context):
        table = _read_arrow(request.arrow_rows, "arrow_rows")
        rows = self.service.push(request.feature_view, table, request.to_online, request.to_offline)
        return pb.PushResponse(rows=rows)

    def SetFeaturePermission(self, request, context):
        self.service.set_permission(
            request.kind,
            request.name,
            request.grant.principal,
            level_to_entity(request.grant.level),
        )
        return pb.SetFeaturePermissionResponse()

    def DeleteFeaturePermission(self, request, context):
        self.service.delete_permission(request.kind, request.name, request.principal)
        return pb.DeleteFeaturePermissionResponse()

    def ListFeaturePermissions(self, request, context):
        grants = self.service.list_permissions(request.kind, request.name)
        return pb.ListFeaturePermissionsResponse(grants=[grant_to_proto(g) for g in grants])
