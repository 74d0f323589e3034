"""The offline push log: pushed rows kept as Parquet beside the view's source.

Every file holds the view's full, declared schema (join keys, event time, created time, every
feature; a push here sends every feature), so files from different pushes read as one dataset;
files pushed before a feature was added read it as null.
"""

from __future__ import annotations

import pyarrow as pa

from modelyard.errors import InvalidArgument
from modelyard.features.definitions import FeatureView, Field, ValueType
from modelyard.services.feature_store.online.base import KEY_KINDS

ARROW_TYPES: dict[ValueType, pa.DataType] = {
    ValueType.INT32: pa.int32(),
    ValueType.INT64: pa.int64(),
    ValueType.FLOAT32: pa.float32(),
    ValueType.FLOAT64: pa.float64(),
    ValueType.STRING: pa.string(),
    ValueType.BOOL: pa.bool_(),
    ValueType.BYTES: pa.binary(),
    ValueType.UNIX_TIMESTAMP: pa.timestamp("us", tz="UTC"),
}
TIMESTAMP = pa.timestamp("us", tz="UTC")


def log_root(artifact_root: str) -> str:
    """Where pushed rows land when sent to the offline log (read back by training sets)."""
    return f"{artifact_root}/features/push"


def _column(table: pa.Table, name: str, dtype: pa.DataType) -> pa.Array | pa.ChunkedArray:
    if name not in table.column_names:
        return pa.nulls(table.num_rows, dtype)
    given = table[name].type
    if pa.types.is_timestamp(dtype) and (pa.types.is_integer(given) or pa.types.is_floating(given)):
        # Arrow would read a number as µs since 1970: epoch seconds would land in January 1970.
        raise InvalidArgument(
            f"pushed column {name!r} holds numbers ({given}); send timestamps or ISO 8601 text",
            field=name,
        )
    try:
        if pa.types.is_timestamp(dtype) and pa.types.is_timestamp(given) and given.unit == "ns":
            # Finer than µs (pandas' ns) is cut to µs, all a stored time keeps, not refused.
            return table[name].cast(dtype, safe=False)
        return table[name].cast(dtype)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidArgument(
            f"pushed column {name!r} is {table[name].type}, which does not convert to {dtype}: "
            f"{exc}",
            field=name,
        ) from None


def log_schema(view: FeatureView, join_keys: list[tuple[str, pa.DataType]]) -> pa.Schema:
    """The columns of the view's push log files as the view is defined now: what pushes write,
    and what the log is read as (files pushed before a feature was added lack it: nulls)."""
    source = view.source
    columns = [*join_keys, (source.timestamp_field, TIMESTAMP)]
    if source.created_timestamp_column:
        columns.append((source.created_timestamp_column, TIMESTAMP))
    # A feature may be the event or created time itself (Feast lets a schema list it): one column.
    taken = {name for name, _ in columns}
    columns += [(f.name, ARROW_TYPES[f.dtype]) for f in view.schema if f.name not in taken]
    return pa.schema(columns)


def column_kind(dtype: pa.DataType) -> str | None:
    """A column type's kind of key (online.base.KEY_KINDS); None for all-null columns."""
    for test, kind in (
        (pa.types.is_integer, "integer"),
        (pa.types.is_floating, "real"),
        (pa.types.is_decimal, "real"),
        (lambda t: pa.types.is_string(t) or pa.types.is_large_string(t), "text"),
        (pa.types.is_boolean, "bool"),
        (lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t), "bytes"),
        (pa.types.is_fixed_size_binary, "bytes"),
        (pa.types.is_timestamp, "time"),
    ):
        if test(dtype):
            return kind
    return None if pa.types.is_null(dtype) else str(dtype)


def normalize(view: FeatureView, join_keys: list[Field], table: pa.Table) -> pa.Table:
    """The pushed rows in the view's declared schema, missing features as nulls. A join key
    column must hold keys online lookups take for its type: Arrow's cast would store True as
    driver 1, '7' as 7 and a time as its µs, which no lookup finds (or another entity's)."""
    for key in join_keys:
        if key.name in table.column_names:
            kind = column_kind(table[key.name].type)
            if kind is not None and kind not in KEY_KINDS[key.dtype]:
                raise InvalidArgument(
                    f"pushed column {key.name!r} holds {table[key.name].type} values, which are "
                    f"not keys of type {key.dtype.name} (online lookups refuse them too); send "
                    f"{key.dtype.name} keys",
                    field=key.name,
                )
    schema = log_schema(view, [(k.name, ARROW_TYPES[k.dtype]) for k in join_keys])
    return pa.table({f.name: _column(table, f.name, f.type) for f in schema}, schema=schema)
