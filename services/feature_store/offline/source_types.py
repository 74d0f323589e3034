"""Checks of a feature view source's columns and types shared by every kind of source (files,
SQL): DuckDB reads each, and these name the view's column and the fix where DuckDB's own errors
named neither; plus quoting for the SQL the feature store builds around a source."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from modelyard.errors import FailedPrecondition
from modelyard.features.definitions import FeatureView, Field, SqlSource, ValueType

# A feature's values, read as the kind its declared type is, so a source holding text where
# numbers belong fails the read naming the value, rather than reaching the online store. FLOAT32
# is read as DOUBLE (no narrowing); times and bytes are read as they are.
_READ_AS = {
    ValueType.INT32: "INTEGER",
    ValueType.INT64: "BIGINT",
    ValueType.FLOAT32: "DOUBLE",
    ValueType.FLOAT64: "DOUBLE",
    ValueType.STRING: "VARCHAR",
    ValueType.BOOL: "BOOLEAN",
}


# Source column types whose values are whole numbers already: their cast cannot round.
_WHOLE = frozenset(
    [
        "TINYINT",
        "SMALLINT",
        "INTEGER",
        "BIGINT",
        "HUGEINT",
        "UTINYINT",
        "USMALLINT",
        "UINTEGER",
        "UBIGINT",
        "UHUGEINT",
        "BOOLEAN",
    ]
)


def typed(feature: Field, source_type: str) -> str:
    """The feature's column read as its declared kind; `source_type` is DuckDB's type of it."""
    name = quote(feature.name)
    kind = _READ_AS.get(feature.dtype)
    if kind is None:
        return name
    cast = f"CAST({name} AS {kind})"
    if kind in ("INTEGER", "BIGINT") and source_type not in _WHOLE:
        # DuckDB's cast rounds a fraction (2.5 and '2.5' become 2 and 3): refuse it instead of
        # storing a value the source does not hold. Text that is no number fails in the cast.
        # Only for sources not typed as integers: the check costs a quarter of a retrieval.
        declared = literal(
            f"feature {feature.name!r} is declared {feature.dtype.name}, its source holds "
        )
        cast = (
            f"CASE WHEN TRY_CAST({name} AS DOUBLE) % 1 <> 0 "
            f"THEN error({declared} || CAST({name} AS VARCHAR) || ', which is not an integer') "
            f"ELSE {cast} END"
        )
    return f"{cast} AS {name}"


# DuckDB types of numbers: a time column holding them (epoch seconds or milliseconds, which
# the numbers alone do not tell apart) cannot be read as a time.
_NUMBERS = (_WHOLE - {"BOOLEAN"}) | {"FLOAT", "DOUBLE", "REAL"}


def times_checked(view: FeatureView, numeric: Collection[str]) -> None:
    """Refuse a source whose time column holds numbers (is among `numeric`), naming the
    column and how to give times instead: DuckDB has no cast of a number to a time, and its
    own error named neither the view's column nor the fix."""
    source = view.source
    numeric = {c.lower() for c in numeric}  # names match as DuckDB matches them
    for column in (source.timestamp_field, source.created_timestamp_column):
        if not column or column.lower() not in numeric:
            continue
        if isinstance(source, SqlSource) and source.url.startswith("sqlite"):
            example = f"datetime({column}, 'unixepoch') AS {column}"
        elif isinstance(source, SqlSource) and source.url.startswith("postgres"):
            example = f"to_timestamp({column}) AS {column}"
        else:
            example = "a timestamp column, or ISO 8601 text"
        raise FailedPrecondition(
            f"feature view {view.name!r}: its source's time column {column!r} holds numbers, "
            "not times (epoch seconds and milliseconds look alike); give times, e.g. "
            f"{example} in the source's query (epoch milliseconds divided by 1000 first)",
            resource_type="feature_view",
            resource_name=view.name,
        )


# DuckDB types a time column may have: times, dates and text (ISO 8601) cast to TIMESTAMPTZ; a
# column of nothing but nulls has type "NULL".
_TIME_LIKE = ("TIMESTAMP", "DATE", "VARCHAR", "ENUM", '"NULL"', "NULL")


def time_types_checked(view: FeatureView, kinds: Mapping[str, str]) -> None:
    """Refuse a source whose time column's DuckDB type (in `kinds`, by lower-case column name)
    is no time, naming the column and its type: DuckDB's own error ('Unimplemented type for
    cast (BOOLEAN -> TIMESTAMP WITH TIME ZONE)') came as a source that could not be read, with
    advice on paths."""
    times_checked(view, {c for c, t in kinds.items() if t in _NUMBERS or t.startswith("DECIMAL")})
    for column in (view.source.timestamp_field, view.source.created_timestamp_column):
        kind = kinds.get(column.lower()) if column else None
        if kind is not None and not kind.startswith(_TIME_LIKE):
            raise not_a_time(view, column, kind)


def not_a_time(view: FeatureView, column: str, kind: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"feature view {view.name!r}: its source's time column {column!r} is of type {kind}, "
        "which does not convert to a timestamp; give a timestamp column (or ISO 8601 text)",
        resource_type="feature_view",
        resource_name=view.name,
    )


def columns_checked(view: FeatureView, keys: list[str], types: Mapping[str, str]) -> None:
    """Refuse a source lacking a column the view reads, naming it, what it is to the view and
    the columns the source has: DuckDB's binder error quoted the statement the feature store
    builds around the source ('CREATE OR REPLACE TEMP VIEW src AS SELECT ...'), which is not
    the view owner's. Names match as DuckDB matches them, whatever their case."""
    source = view.source
    wanted = [(k, "a join key of its entities") for k in keys]
    wanted.append((source.timestamp_field, "its timestamp_field"))
    if source.created_timestamp_column:
        wanted.append((source.created_timestamp_column, "its created_timestamp_column"))
    wanted += [(f.name, "a feature of its schema") for f in view.schema]
    present = {c.lower() for c in types}
    for column, role in wanted:
        if column.lower() not in present:
            shown = ", ".join(repr(c) for c in list(types)[:20])
            more = f" and {len(types) - 20} more" if len(types) > 20 else ""
            raise FailedPrecondition(
                f"feature view {view.name!r}: its source has no column {column!r}, {role}; its "
                f"columns are {shown}{more}. Add the column to the source (or its query), or "
                "name the view's column as the source does",
                resource_type="feature_view",
                resource_name=view.name,
            )


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
