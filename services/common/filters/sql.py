"""Compile single comparisons of the filter grammar to SQLAlchemy expressions.

Services decide which identifiers exist and what type each has; this module owns what every
operator means, so `LIKE`, `IN` and `IS NULL` behave the same in every search of every service.
"""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import ColumnElement, Double, Select, bindparam, literal_column, not_

from modelyard.errors import InvalidArgument
from modelyard.services.common.filters.grammar import Comparison
from modelyard.services.common.validation import shown

Kind = Literal["string", "number"]

STRING_OPS = ("=", "!=", "LIKE", "ILIKE", "IN", "NOT IN")
NUMBER_OPS = ("=", "!=", "<", "<=", ">", ">=")

# PostgreSQL plans each EXISTS lookup (a tag, param or metric of the row) as a semi-join and
# searches the joins' orders: planning took 1 ms at 4 lookups, 30 ms at 8, 0.6 s at 30, and
# 35-60 s and gigabytes of memory at the 100 a filter may hold. Lookups past the first few are
# kept out of that search, each then a check per candidate row (one index probe).
JOINED_LOOKUPS = 4

# LIKE's escape character, named in every LIKE: PostgreSQL escapes with a backslash unless told
# otherwise and SQLite has no escape at all, so without it one pattern matched differently.
LIKE_ESCAPE = "\\"


def lookup_exists(stmt: Select, nth: int) -> ColumnElement[bool]:
    """EXISTS (stmt) for a lookup with `nth` lookups (or comparisons) of the filter before it;
    past JOINED_LOOKUPS with OFFSET 0, which PostgreSQL does not pull up into a join."""
    if nth >= JOINED_LOOKUPS:
        stmt = stmt.offset(literal_column("0"))
    return stmt.exists()


# A key/value lookup (tags, params) also asks whether the key is there at all.
KEY_VALUE_OPS = (*STRING_OPS, "IS NULL", "IS NOT NULL")


def key_value_lookup(
    match: Select,
    value: ColumnElement,
    comparison: Comparison,
    nth: int,
    *,
    field: str = "filter",
    param: str | None = None,
) -> ColumnElement[bool]:
    """A comparison on a key/value table (tags, params), as the filter's `nth` lookup
    (lookup_exists): `match` selects the filtered row's entry of the key; IS NULL and IS NOT
    NULL ask whether there is one, any other operator compares its `value`."""
    if comparison.op == "IS NULL":
        return not_(lookup_exists(match, nth))
    if comparison.op == "IS NOT NULL":
        return lookup_exists(match, nth)
    cond = compare(value, comparison, "string", field=field, ops=KEY_VALUE_OPS, param=param)
    return lookup_exists(match.where(cond), nth)


def compare(
    column: ColumnElement,
    comparison: Comparison,
    kind: Kind,
    *,
    field: str = "filter",
    ops: tuple[str, ...] | None = None,
    param: str | None = None,
) -> ColumnElement[bool]:
    """`column <op> value` for one parsed comparison, with its operator and value checked.

    With `param`, the value is left to a bind parameter of that name, which every execution
    must supply (`bound_value` gives it): the statement then serves any value of the same type,
    so a caller may keep it and skip building it again."""
    allowed = ops or (STRING_OPS if kind == "string" else NUMBER_OPS)
    op, value = comparison.op, comparison.value
    name = (
        f"{comparison.entity}s.{comparison.key}"
        if comparison.entity != "attribute"
        else (comparison.key)
    )
    if op not in allowed:
        raise InvalidArgument(
            f"{field}: {op} cannot be used with {name}; use one of {', '.join(allowed)}",
            field=field,
        )
    if op in ("IN", "NOT IN"):
        assert isinstance(value, tuple)
        items: Any = [_coerce(v, kind, name, field) for v in value]
        if param is not None:
            items = bindparam(param, expanding=True)
        expr = column.in_(items)
        return not_(expr) if op == "NOT IN" else expr
    coerced: Any = _coerce(value, kind, name, field)
    if param is not None:
        # A number is bound as a double, as its literal would be: bound as the column's type,
        # 5.5 against an integer column would be cast to an integer (PostgreSQL rounds it).
        coerced = bindparam(param, type_=Double() if kind == "number" else None)
    if op == "=":
        return column == coerced
    if op == "!=":
        return column != coerced
    if op == "<":
        return column < coerced
    if op == "<=":
        return column <= coerced
    if op == ">":
        return column > coerced
    if op == ">=":
        return column >= coerced
    if op == "LIKE":
        return column.like(coerced, escape=LIKE_ESCAPE)
    if op == "ILIKE":
        return column.ilike(coerced, escape=LIKE_ESCAPE)
    raise InvalidArgument(f"{field}: unsupported operator {op}", field=field)


def _coerce(value: object, kind: Kind, name: str, field: str) -> str | float:
    if kind == "number":
        if isinstance(value, float):
            return value
        raise InvalidArgument(
            f"{field}: {name} is numeric; compare it with a number, not {shown(str(value))}",
            field=field,
        )
    if isinstance(value, str):
        return value
    raise InvalidArgument(
        f"{field}: {name} is a string; quote the value, e.g. '{value:g}'"
        if isinstance(value, float)
        else f"{field}: {name} needs a quoted string value",
        field=field,
    )


def bound_value(comparison: Comparison) -> object:
    """What the bind parameter of `compare(..., param=...)` takes for this comparison."""
    value = comparison.value
    return list(value) if isinstance(value, tuple) else value


def value_shape(comparison: Comparison) -> tuple[str, str, str, object]:
    """The comparison without its value but with the value's type: whatever `compare` checks
    or builds is the same for every comparison of the same shape."""
    value = comparison.value
    kind = (
        tuple(sorted({type(v).__name__ for v in value}))
        if isinstance(value, tuple)
        else (type(value).__name__)
    )
    return (comparison.entity, comparison.key, comparison.op, kind)
