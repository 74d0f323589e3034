"""Core statements compiled once and run on the DB-API cursor.

SQLAlchemy's per-execution layer (cache key, compiled-cache lookup, result set-up) costs ~100 µs
a statement, while SQLite answers a primary-key lookup in ~6 µs: it was most of what a point read
such as GetExperiment cost the server. A `Prepared` statement pays for compiling once and applies
the same type conversions SQLAlchemy would, so the schema stays the one definition of the SQL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Select


class Prepared:
    """A SELECT compiled for one dialect; `rows(cursor, **params)` runs it on a DB-API cursor
    (`Database.cursor(conn)`: inside the caller's transaction) and returns dicts keyed by
    column name. Its parameters are `bindparam`s, filled by name; literal values stay as built."""

    def __init__(self, dialect: Dialect, stmt: Select[Any]) -> None:
        compiled = stmt.compile(dialect=dialect)
        if "POSTCOMPILE" in compiled.string or compiled.escaped_bind_names:
            # Expanding IN lists and escaped names are rendered per execution by SQLAlchemy.
            raise ValueError(f"cannot prepare {compiled.string!r}: run it through SQLAlchemy")
        self.sql = compiled.string
        binds = {name: bind for bind, name in compiled.bind_names.items()}
        self._positional = compiled.positional
        self._names: list[str] = (
            list(compiled.positiontup or []) if compiled.positional else list(binds)
        )
        self._fixed = {name: b.value for name, b in binds.items() if not b.required}
        self._bind_processors = {
            name: p
            for name, b in binds.items()
            if (p := b.type.dialect_impl(dialect).bind_processor(dialect))
        }
        columns = list(stmt.selected_columns)
        self.columns: tuple[str, ...] = tuple(str(c.key) for c in columns)
        self._dialect = dialect
        self._types = [c.type.dialect_impl(dialect) for c in columns]
        # Some conversions depend on the type the driver reports (PostgreSQL's numerics), so
        # they are chosen at the first execution, from the cursor's description, as SQLAlchemy
        # does; the statement's result types never change after that.
        self._result_processors: list[tuple[int, Callable[[Any], Any]]] | None = None

    def rows(self, cursor: Any, **params: Any) -> list[dict[str, Any]]:
        values = {**self._fixed, **params}
        for name, convert in self._bind_processors.items():
            values[name] = convert(values[name])
        cursor.execute(
            self.sql,
            tuple(values[n] for n in self._names) if self._positional else values,
        )
        if self._result_processors is None:
            self._result_processors = [
                (i, p)
                for i, (kind, described) in enumerate(
                    zip(self._types, cursor.description, strict=True)
                )
                if (p := kind.result_processor(self._dialect, described[1]))
            ]
        found = [dict(zip(self.columns, row, strict=True)) for row in cursor.fetchall()]
        for row in found:
            for i, process in self._result_processors:
                key = self.columns[i]
                row[key] = process(row[key])
        return found

    def first(self, cursor: Any, **params: Any) -> dict[str, Any] | None:
        found = self.rows(cursor, **params)
        return found[0] if found else None
