"""Converters for modelyard.features.v1: definitions and values."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.duration_pb2 import Duration

from modelyard._gen.features.v1 import features_pb2 as pb
from modelyard.convert.common import tags_to_dict, tags_to_proto
from modelyard.features.definitions import (
    Definition,
    Entity,
    FeatureService,
    FeatureView,
    FeatureViewProjection,
    Field,
    FileSource,
    SqlSource,
    ValueType,
)

_TYPES = {t: getattr(pb, f"VALUE_TYPE_{t.value}") for t in ValueType}
_TYPES_BACK = {v: k for k, v in _TYPES.items()}


def value_type_to_entity(value: int) -> ValueType | None:
    return _TYPES_BACK.get(value)  # type: ignore[call-overload]


def _field(f: Field) -> pb.Field:
    return pb.Field(name=f.name, dtype=_TYPES[f.dtype], description=f.description)


def _field_back(m: pb.Field) -> Field:
    return Field(m.name, _TYPES_BACK.get(m.dtype, ValueType.STRING), m.description)


def _source(s: FileSource | SqlSource) -> pb.DataSource:
    msg = pb.DataSource(
        name=s.name,
        timestamp_field=s.timestamp_field,
        created_timestamp_column=s.created_timestamp_column,
    )
    if isinstance(s, FileSource):
        msg.file.CopyFrom(pb.FileSource(path=s.path, file_format=s.file_format))
    else:
        msg.sql.CopyFrom(pb.SqlSource(url=s.url, query=s.query))
    return msg


def _source_back(m: pb.DataSource) -> FileSource | SqlSource:
    if m.WhichOneof("kind") == "sql":
        return SqlSource(
            m.sql.url, m.sql.query, m.timestamp_field, m.created_timestamp_column, m.name
        )
    return FileSource(
        m.file.path,
        m.timestamp_field,
        m.created_timestamp_column,
        m.file.file_format or "parquet",
        m.name,
    )


def definition_to_proto(d: Definition) -> pb.Definition:
    if isinstance(d, Entity):
        return pb.Definition(
            entity=pb.Entity(
                name=d.name,
                join_keys=[_field(k) for k in d.join_keys],
                description=d.description,
                tags=tags_to_proto(d.tags),
                owner=d.owner,
            )
        )
    if isinstance(d, FeatureView):
        view = pb.FeatureView(
            name=d.name,
            entities=list(d.entities),
            schema=[_field(f) for f in d.schema],
            source=_source(d.source),
            online=d.online,
            description=d.description,
            tags=tags_to_proto(d.tags),
            owner=d.owner,
        )
        if d.ttl:
            view.ttl.FromTimedelta(d.ttl)
        return pb.Definition(feature_view=view)
    return pb.Definition(
        feature_service=pb.FeatureService(
            name=d.name,
            projections=[
                pb.FeatureViewProjection(feature_view=p.feature_view, features=list(p.features))
                for p in d.projections
            ],
            description=d.description,
            tags=tags_to_proto(d.tags),
            owner=d.owner,
        )
    )


def _ttl(duration: Duration) -> timedelta | None:
    value = duration.ToTimedelta()
    return value if value > timedelta(0) else None


def definition_to_entity(m: pb.Definition) -> Definition:
    kind = m.WhichOneof("kind")
    if kind == "entity":
        e = m.entity
        return Entity(
            e.name,
            [_field_back(k) for k in e.join_keys],
            description=e.description,
            tags=tags_to_dict(e.tags),
            owner=e.owner,
        )
    if kind == "feature_view":
        v = m.feature_view
        return FeatureView(
            v.name,
            list(v.entities),
            [_field_back(f) for f in v.schema],
            _source_back(v.source),
            ttl=_ttl(v.ttl),
            online=v.online,
            description=v.description,
            tags=tags_to_dict(v.tags),
            owner=v.owner,
        )
    s = m.feature_service
    return FeatureService(
        s.name,
        projections=tuple(
            FeatureViewProjection(p.feature_view, tuple(p.features)) for p in s.projections
        ),
        description=s.description,
        tags=tags_to_dict(s.tags),
        owner=s.owner,
    )


def value_to_proto(value: Any, dtype: ValueType) -> pb.Value:
    """A Python value as a typed Value; None (or NaN) stays unset."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return pb.Value()
    if dtype == ValueType.INT32:
        return pb.Value(int32_val=int(value))
    if dtype == ValueType.INT64:
        return pb.Value(int64_val=int(value))
    if dtype == ValueType.FLOAT32:
        return pb.Value(float_val=float(value))
    if dtype == ValueType.FLOAT64:
        return pb.Value(double_val=float(value))
    if dtype == ValueType.BOOL:
        return pb.Value(bool_val=bool(value))
    if dtype == ValueType.BYTES:
        return pb.Value(bytes_val=bytes(value))
    if dtype == ValueType.UNIX_TIMESTAMP:
        msg = pb.Value()
        moment = value if isinstance(value, datetime) else datetime.fromtimestamp(float(value), UTC)
        msg.unix_timestamp_val.FromDatetime(moment.astimezone(UTC) if moment.tzinfo else moment)
        return msg
    return pb.Value(string_val=str(value))


# Per type: the Value field a Python value goes in, and how it is made that field's type.
_FIELDS: dict[ValueType, tuple[str, Any]] = {
    ValueType.INT32: ("int32_val", int),
    ValueType.INT64: ("int64_val", int),
    ValueType.FLOAT32: ("float_val", float),
    ValueType.FLOAT64: ("double_val", float),
    ValueType.BOOL: ("bool_val", bool),
    ValueType.BYTES: ("bytes_val", bytes),
    ValueType.STRING: ("string_val", str),
}


def append_values(values: Any, items: Sequence[Any], dtype: ValueType) -> None:
    """Append Python values to a repeated Value field, built in place (the fast path for
    responses of many values; same result as value_to_proto for each)."""
    if dtype not in _FIELDS:
        values.extend(value_to_proto(v, dtype) for v in items)
        return
    field, cast = _FIELDS[dtype]
    add = values.add
    for v in items:
        if v is None or (isinstance(v, float) and v != v):  # None or NaN: unset
            add()
        else:
            add(**{field: cast(v)})


def value_to_python(m: pb.Value) -> Any:
    kind = m.WhichOneof("val")
    if kind is None:
        return None
    if kind == "unix_timestamp_val":
        return m.unix_timestamp_val.ToDatetime(tzinfo=UTC)
    return getattr(m, kind)


def python_value(value: Any) -> pb.Value:
    """A request value, typed by its Python type (the server checks it against the key's type)."""
    if isinstance(value, bool):
        return pb.Value(bool_val=value)
    if isinstance(value, int):
        return pb.Value(int64_val=value)
    if isinstance(value, float):
        return pb.Value(double_val=value)
    if isinstance(value, bytes):
        return pb.Value(bytes_val=value)
    if isinstance(value, datetime):
        return value_to_proto(value, ValueType.UNIX_TIMESTAMP)
    if hasattr(value, "item"):  # numpy scalars
        return python_value(value.item())
    return pb.Value(string_val=str(value))
