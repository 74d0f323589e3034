"""Keyset paging: a page token holds the sort key of the last row returned (one value per Term),
and the next page is the rows that sort after it. Unlike an offset, that position does not move
when rows are created or deleted between pages, so a reader sees each row that existed
throughout once. Tracking's and the registry's searches page this way.

A position longer than INLINE_LIMIT (a 6000-character param a run is sorted by) is not carried:
the token names the row instead (its primary key) with a digest of its position, and the next
page reads the position back from that row (resume), so every token stays short enough for a
link (nginx's default request line is 8 KB).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Connection,
    Float,
    Integer,
    Select,
    and_,
    bindparam,
    false,
    or_,
)

from modelyard.errors import InvalidArgument
from modelyard.services.common.pagination import (
    DIGEST_LENGTH,
    INT64,
    decode_token,
    encode_token,
    short_digest,
)

# Bytes of a position's JSON (UTF-8) a token carries as it is: base64 of that plus the query's
# fingerprint is at most ~380 characters. Longer ones are carried by their row (RowRef).
INLINE_LIMIT = 256


@dataclass(frozen=True)
class Term:
    """One sort term. `missing` marks an IS NULL flag: False (present) sorts first; the terms
    that follow it, up to the next flag, are NULL in the rows where it is True."""

    expr: ColumnElement[Any]
    ascending: bool = True
    missing: bool = False
    nullable: bool = False

    def order(self) -> ColumnElement[Any]:
        return self.expr.asc() if self.ascending else self.expr.desc()

    def read(self, value: object) -> object:
        """The position's value for this term, as the row gave it (SQLite: 0/1 for booleans)."""
        if value is not None and (self.missing or isinstance(self.expr.type, Boolean)):
            return bool(value)
        return value

    def accepts(self, value: object) -> bool:
        """Whether `value` is what read() gives for some row: a forged token is refused instead
        of failing in the SQL."""
        if value is None:
            return self.nullable
        if self.missing or isinstance(self.expr.type, Boolean):
            return type(value) is bool
        if isinstance(self.expr.type, Float):
            return type(value) in (int, float)
        if isinstance(self.expr.type, Integer):
            return type(value) is int and value in INT64
        return type(value) is str


def pattern(terms: Sequence[Term], position: Sequence[object] | None) -> tuple | None:
    """What of `position` shapes the statement after_clause builds (flags and NULLs are
    written into it): statements are kept by this, and each position's values are bound."""
    if position is None:
        return None
    return tuple(v if t.missing else v is None for t, v in zip(terms, position, strict=True))


def after_clause(
    terms: Sequence[Term], position: Sequence[object], prefix: str = "after"
) -> ColumnElement[bool]:
    """Rows that sort after `position` in the order of `terms`: the first term beyond the
    position's value, or equal to it and the rest after. Values are bind parameters named
    `prefix`_i (after_binds)."""
    clause: ColumnElement[bool] | None = None
    for i in reversed(range(len(terms))):
        term, value = terms[i], position[i]
        if term.missing:
            # Present (False) sorts first: after a present row come every missing one and the
            # present ones after it; after a missing one, only missing ones after it.
            if value:
                clause = term.expr if clause is None else and_(term.expr, clause)
            else:
                clause = term.expr if clause is None else or_(term.expr, clause)
        elif value is not None:  # NULL: equal in every row the preceding flag leaves
            bound = bindparam(f"{prefix}_{i}", type_=term.expr.type)
            beyond = term.expr > bound if term.ascending else term.expr < bound
            clause = beyond if clause is None else or_(beyond, and_(term.expr == bound, clause))
    return false() if clause is None else clause


def after_binds(
    terms: Sequence[Term], position: Sequence[object], prefix: str = "after"
) -> dict[str, object]:
    return {
        f"{prefix}_{i}": v
        for i, (t, v) in enumerate(zip(terms, position, strict=True))
        if not t.missing and v is not None
    }


def keyed(stmt: Select, terms: Sequence[Term], order: Sequence[Term] | None = None) -> Select:
    """`stmt` ordered by `order` (by default `terms`), with `terms` selected (as k0, k1, ...)
    for position_of."""
    labels = [t.expr.label(f"k{i}") for i, t in enumerate(terms)]
    ordering = terms if order is None else order
    return stmt.add_columns(*labels).order_by(*(t.order() for t in ordering))


def position_of(row: Mapping[Any, Any], terms: Sequence[Term]) -> list[object]:
    return [t.read(row[f"k{i}"]) for i, t in enumerate(terms)]


@dataclass(frozen=True)
class RowRef:
    """A position too long for a token, by its row: the row's primary key and a digest of the
    position it had when the token was issued."""

    key: tuple[object, ...]
    digest: str


def _json(position: Sequence[object]) -> bytes:
    text = json.dumps(position, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8", "surrogatepass")  # as encode_token writes it


def _digest(position: Sequence[object]) -> str:
    return short_digest(_json(position))


def next_token(
    query: str, terms: Sequence[Term], row: Mapping[Any, Any], key: Sequence[Term]
) -> str:
    """The token of the page after `row` (a row of `keyed`, with the columns of `key`, the
    primary key, under their names): its position, or if that is longer than INLINE_LIMIT,
    the row's key and the position's digest (resume reads the position back)."""
    position = position_of(row, terms)
    if len(_json(position)) <= INLINE_LIMIT:
        return encode_token(query, position)
    ref = {"row": [row[t.expr.key] for t in key], "digest": _digest(position)}
    return encode_token(query, ref)


def read_position(
    terms: Sequence[Term],
    token: str,
    query: str,
    field: str = "page_token",
    key: Sequence[Term] = (),
) -> list[object] | RowRef | None:
    """The position `token` holds (None for no token) if it fits `terms`, or the row it names
    by `key` (next_token); InvalidArgument otherwise, naming `field`."""
    if not token:
        return None
    position = decode_token(token, query, field)
    if (
        isinstance(position, list)
        and len(position) == len(terms)
        and all(t.accepts(v) for t, v in zip(terms, position, strict=True))
    ):
        return position
    if (
        key
        and isinstance(position, dict)
        and position.keys() == {"row", "digest"}
        and isinstance(position["row"], list)
        and len(position["row"]) == len(key)
        and all(t.accepts(v) for t, v in zip(key, position["row"], strict=True))
        and isinstance(position["digest"], str)
        and len(position["digest"]) == DIGEST_LENGTH
    ):
        return RowRef(tuple(position["row"]), position["digest"])
    raise InvalidArgument(
        f"{field} is not a token this server issued for this order; pass the next_page_token "
        "of the previous response unchanged, or start again without a token",
        field=field,
    )


def resume(
    conn: Connection,
    rows: Select,
    terms: Sequence[Term],
    key: Sequence[Term],
    at: list[object] | RowRef | None,
    field: str = "page_token",
) -> list[object] | None:
    """The position `at` stands for: itself, or that of the row it names, read from `rows`
    (the search's rows, joined as `terms` need, not filtered: a row may stop matching the
    filter between pages, as with a position carried whole) by its primary key. A row that
    is gone or sorts elsewhere now is refused: paging on from where it is now would skip or
    repeat rows, and the reader would not know; from the first page it sees each row once."""
    if not isinstance(at, RowRef):
        return at
    found = rows.where(*(t.expr == v for t, v in zip(key, at.key, strict=True)))
    row = conn.execute(keyed(found, terms).limit(1)).first()
    position = None if row is None else position_of(row._mapping, terms)
    if position is None or _digest(position) != at.digest:
        raise InvalidArgument(
            f"{field}: the row the previous page ended at was deleted or its sort value changed "
            f"since, so the next page cannot be found; start again from the first page (without "
            f"{field})",
            field=field,
        )
    return position
