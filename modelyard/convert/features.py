"""Converters for modelyard.features.v1: definitions and values."""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

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
    return _TYPES_BACK.get(value)


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


def _moment(value: Any) -> datetime:
    """A timestamp feature's value as an aware datetime: online rows hold ISO strings, Python
    callers pass datetimes or epoch seconds."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value)
    else:
        return datetime.fromtimestamp(float(value), UTC)
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _bytes(value: Any) -> bytes:
    """Online rows hold bytes as base64 text (they are stored as JSON)."""
    return base64.b64decode(value) if isinstance(value, str) else bytes(value)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(value: Any) -> int:
    """A timestamp feature's value as ValueArray carries it: microseconds since the epoch."""
    return (_moment(value) - EPOCH) // timedelta(microseconds=1)


def from_micros(micros: int) -> datetime:
    """The inverse of _micros: how ValueArray and packed event times carry a moment."""
    return EPOCH + timedelta(microseconds=micros)


# Per type: the Value field a Python value goes in, and how it is made that field's type.
_FIELDS: dict[ValueType, tuple[str, Any]] = {
    ValueType.INT32: ("int32_val", int),
    ValueType.INT64: ("int64_val", int),
    ValueType.FLOAT32: ("float_val", float),
    ValueType.FLOAT64: ("double_val", float),
    ValueType.BOOL: ("bool_val", bool),
    ValueType.BYTES: ("bytes_val", _bytes),
    ValueType.STRING: ("string_val", str),
}
# Per type: the ValueArray list that holds it, the cast, and the placeholder for a missing row.
_ARRAYS: dict[ValueType, tuple[str, Any, Any]] = {
    ValueType.INT32: ("int64_values", int, 0),
    ValueType.INT64: ("int64_values", int, 0),
    ValueType.FLOAT32: ("float_values", float, 0.0),
    ValueType.FLOAT64: ("double_values", float, 0.0),
    ValueType.BOOL: ("bool_values", bool, False),
    ValueType.BYTES: ("bytes_values", _bytes, b""),
    ValueType.STRING: ("string_values", str, ""),
    ValueType.UNIX_TIMESTAMP: ("unix_timestamp_micros", _micros, 0),
}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)  # None or NaN


def value_to_proto(value: Any, dtype: ValueType) -> pb.Value:
    """A Python value as a typed Value; None (or NaN) stays unset."""
    if _missing(value):
        return pb.Value()
    if dtype == ValueType.UNIX_TIMESTAMP:
        msg = pb.Value()
        msg.unix_timestamp_val.FromDatetime(_moment(value))
        return msg
    field, cast = _FIELDS.get(dtype, _FIELDS[ValueType.STRING])
    return pb.Value(**{field: cast(value)})


def append_values(values: Any, items: Sequence[Any], dtype: ValueType) -> None:
    """Append Python values to a repeated Value field, built in place (the fast path for
    responses of many values; same result as value_to_proto for each)."""
    if dtype not in _FIELDS:
        values.extend(value_to_proto(v, dtype) for v in items)
        return
    field, cast = _FIELDS[dtype]
    add = values.add
    for v in items:
        if v is None or (isinstance(v, float) and v != v):  # inlined _missing: the hot loop
            add()
        else:
            add(**{field: cast(v)})


_NUMBERS = frozenset({ValueType.INT32, ValueType.INT64, ValueType.FLOAT32, ValueType.FLOAT64})


def _missing_rows(items: Sequence[Any], dtype: ValueType) -> list[int]:
    """The rows that are None or NaN. A numeric column with neither, the common case of an
    online lookup, is told in two C-speed passes rather than a call per value."""
    if dtype in _NUMBERS:
        try:
            if None not in items and not any(map(math.isnan, items)):
                return []
        except TypeError:  # a value that is no number: looked at one by one below
            pass
    return [i for i, v in enumerate(items) if _missing(v)]


def fill_array(array: pb.ValueArray, items: Sequence[Any], dtype: ValueType) -> None:
    """Python values (None or NaN where missing) as one typed ValueArray."""
    field, cast, placeholder = _ARRAYS.get(dtype, _ARRAYS[ValueType.STRING])
    array.type = _TYPES.get(dtype, pb.VALUE_TYPE_STRING)
    missing = _missing_rows(items, dtype)
    if missing:
        gaps = set(missing)
        items = [placeholder if i in gaps else v for i, v in enumerate(items)]
        array.missing.extend(missing)
    getattr(array, field).extend(items if cast is float else [cast(v) for v in items])


def array_to_python(array: pb.ValueArray) -> list[Any]:
    """A ValueArray's values as Python values, None for missing rows."""
    dtype = _TYPES_BACK.get(array.type, ValueType.STRING)
    values: list[Any] = list(getattr(array, _ARRAYS[dtype][0]))
    if dtype == ValueType.UNIX_TIMESTAMP:
        values = [from_micros(v) for v in values]
    for i in array.missing:
        values[i] = None
    return values


def values_to_python(values: Iterable[pb.Value]) -> list[Any]:
    """Python values of a repeated Value field (None where unset, datetimes for timestamps),
    in one comprehension: responses carry thousands of them."""
    out = [None if (kind := v.WhichOneof("val")) is None else getattr(v, kind) for v in values]
    if any(isinstance(x, Timestamp) for x in out):
        return [x.ToDatetime(tzinfo=UTC) if isinstance(x, Timestamp) else x for x in out]
    return out


# A request value's field, by its exact Python type; other types go through python_value.
_PYTHON_FIELDS: dict[type, str] = {
    bool: "bool_val",
    int: "int64_val",
    float: "double_val",
    str: "string_val",
    bytes: "bytes_val",
}


def python_value(value: Any) -> pb.Value:
    """A request value, typed by its Python type (the server checks it against the key's type);
    None is left unset, a missing key, never the text 'None'."""
    if value is None:
        return pb.Value()
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


def append_python_values(values: Any, items: Iterable[Any]) -> None:
    """python_value for each item, built in place in a repeated Value field."""
    add = values.add
    for item in items:
        field = _PYTHON_FIELDS.get(type(item))
        if field is None:
            values.append(python_value(item))
        else:
            add(**{field: item})
