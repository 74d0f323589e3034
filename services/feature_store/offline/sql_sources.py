"""SQL sources (PostgreSQL, SQLite, any SQLAlchemy URL): the view's query, read only and within
the time window wanted, streamed into DuckDB as Arrow batches from a connection kept open until
DuckDB has read them."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa
import sqlalchemy

from modelyard.errors import FailedPrecondition
from modelyard.features.definitions import FeatureView, SqlSource, ValueType
from modelyard.services.common import call_end
from modelyard.services.common import validation as v
from modelyard.services.feature_store.offline import push_log
from modelyard.services.feature_store.offline.source_types import (
    not_a_time,
    quote,
    times_checked,
)

# PostgreSQL's names (format_type) of the number types: a time column holding them cannot be
# cast to a time.
_PG_NUMBERS = ("smallint", "integer", "bigint", "real", "double precision", "numeric", "oid")
# SQLSTATE cannot_coerce: a cast PostgreSQL has no way to make (bigint to timestamptz).
_PG_CANNOT_COERCE = "42846"


def _sqlstate(exc: sqlalchemy.exc.DBAPIError) -> str | None:
    """The error's SQLSTATE, as psycopg (sqlstate) or psycopg2 (pgcode) gives it."""
    return getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)


def _diagnose(
    conn: sqlalchemy.Connection, query: str, view: FeatureView, exc: sqlalchemy.exc.DBAPIError
) -> None:
    """Why the view's query, read within its time window, failed in PostgreSQL, where that is
    the time column, as a FailedPrecondition naming it: the database's own error quoted the
    window's wrapper ('WHERE CAST("ts" AS timestamptz) >= ...'), which is not in the view's
    query, and named no fix. The query is asked for its columns alone (no rows); a query that
    fails on its own raises its own error, without the wrapper. Returns where the failure is
    not the time column's."""
    # Class 42, errors in planning the statement (no such column, no such cast): not a read
    # cancelled because its call ended, say.
    if conn.dialect.name != "postgresql" or not (_sqlstate(exc) or "").startswith("42"):
        return
    conn.rollback()  # the failed statement ended the transaction
    _read_only(conn)
    result = conn.execute(sqlalchemy.text(f"{_subquery(query)} LIMIT 0"))
    names = list(result.keys())
    codes = [d[1] for d in result.cursor.description or ()]
    result.close()
    column = view.source.timestamp_field
    if column not in names:
        raise FailedPrecondition(
            f"feature view {view.name!r}: its source's query gives no column {column!r}, the "
            f"view's timestamp_field; it gives {names}: add it to the query, or name the column "
            "that holds the event time in timestamp_field",
            resource_type="feature_view",
            resource_name=view.name,
        )
    code = codes[names.index(column)]
    if not isinstance(code, int):  # a type OID, as PostgreSQL's drivers give it
        return
    kind = conn.execute(sqlalchemy.text("SELECT format_type(:oid, NULL)"), {"oid": code}).scalar()
    if not isinstance(kind, str):
        return
    if kind.startswith(_PG_NUMBERS):
        times_checked(view, {column})
    if _sqlstate(exc) == _PG_CANNOT_COERCE:
        raise not_a_time(view, column, kind)


def _read_only(conn: sqlalchemy.Connection) -> None:
    """A view's query only reads: where the database can enforce that, it refuses whatever else
    the query tries (a function with side effects, say), whoever defined the view.

    PostgreSQL's session also takes times in UTC, as DuckDB reads them: a time without zone is
    then the same instant in the window's predicate (`_windowed`) and in the rows read."""
    if conn.dialect.name == "postgresql":
        conn.execute(sqlalchemy.text("SET TRANSACTION READ ONLY"))  # the transaction's first
        conn.execute(sqlalchemy.text("SET LOCAL TIME ZONE 'UTC'"))
    elif conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA query_only = ON")


def _stop(conn: sqlalchemy.Connection) -> Callable[[], None]:
    """How to stop the statement `conn` runs from another thread, for a call that ends while a
    source is read: PostgreSQL's backend would go on with a slow query (or wait on a lock) for
    no one. Other drivers have no such function: their read runs to its end."""
    driver = conn.connection.driver_connection
    for name in ("cancel_safe", "interrupt"):  # psycopg's cancel, sqlite3's interrupt
        stop = getattr(driver, name, None)
        if callable(stop):
            return stop
    return lambda: None


@dataclass(frozen=True)
class TimeWindow:
    """The event times a read needs, both ends included (µs since 1970; None: unbounded). A SQL
    source leaves rows outside it in the database; the engine's own filters stay exact, so the
    window may hold more rows than needed, never fewer."""

    since_us: int | None = None
    until_us: int | None = None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The µs a bound may be at: one beyond a datetime's range (a TTL reaching before year 1) bounds
# nothing.
_BOUNDS_US = range(
    (datetime.min.replace(tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1),
    (datetime.max.replace(tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1),
)


def _instant(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _windowed(
    query: str, dialect: str, timestamp_field: str, window: TimeWindow | None
) -> tuple[str, dict[str, Any]]:
    """`query` with the window's bounds as a WHERE on the timestamp column (bound parameters),
    so that the database reads only the rows wanted rather than sending every row it holds.
    Dialects not known here read everything, as before."""
    window = window or TimeWindow()
    bounds = {
        name: us
        for name, us in (("since", window.since_us), ("until", window.until_us))
        if us is not None and us in _BOUNDS_US
    }
    if not bounds or dialect not in ("postgresql", "sqlite"):
        return query, {}
    column = quote(timestamp_field)
    ops = {"since": ">=", "until": "<="}
    if dialect == "postgresql":
        # A timestamptz column is compared as it is (its index serves), a time without zone or
        # ISO text as UTC (`_read_only`).
        kept = " AND ".join(f"CAST({column} AS timestamptz) {ops[name]} :{name}" for name in bounds)
        params: dict[str, Any] = {name: _instant(us) for name, us in bounds.items()}
    else:
        # SQLite holds times as ISO text; julianday reads it with its offset (UTC without one,
        # as DuckDB does), rounding to milliseconds alike on both sides. Values it cannot read
        # as a time are kept, for the read to report them as it does today.
        kept = (
            f"typeof({column}) <> 'text' OR julianday({column}) IS NULL OR ("
            + " AND ".join(f"julianday({column}) {ops[name]} julianday(:{name})" for name in bounds)
            + ")"
        )
        params = {name: _instant(us).isoformat() for name, us in bounds.items()}
    return f"{_subquery(query)} WHERE {kept}", params


def _subquery(query: str) -> str:
    """The query's rows, to add a clause to. On lines of their own: the query may end with a
    comment, or a semicolon."""
    inner = query.rstrip().removesuffix(";")
    return f"SELECT * FROM (\n{inner}\n) AS __source"


# Rows of a SQL source turned into Python values at a time (a server-side cursor where the
# driver has one): the rows of a whole table as Python tuples took 15 times its size as Arrow.
_SQL_BATCH_ROWS = 50_000


# Batches a SQL source's stream reads ahead for the types of a feature's column that holds
# nothing but nulls so far; then the feature's declared type is the column's.
_AHEAD_BATCHES = 4
_FLOATS = (ValueType.FLOAT32, ValueType.FLOAT64)


class _SqlStream:
    """A SQL source's rows as one Arrow stream, fetched as DuckDB reads it (so the connection
    stays open until then), never held whole. Its schema is fixed before the first batch goes
    out: batches are read ahead until each column the view reads has a type (a batch of nulls
    has none; a feature still without one after _AHEAD_BATCHES takes its declared type), a
    float feature's whole numbers read as floats, and later batches are cast to it. Columns
    the view does not read keep their names but not their values. What ends the stream early
    is kept in `failure`: DuckDB reports it only as text."""

    def __init__(
        self, result: sqlalchemy.CursorResult[Any], view: FeatureView, keys: list[str]
    ) -> None:
        self._names = list(result.keys())
        self._view = view
        source = view.source
        read = [*keys, source.timestamp_field, source.created_timestamp_column]
        declared = {f.name.lower(): push_log.ARROW_TYPES[f.dtype] for f in view.schema}
        read_names = {c.lower() for c in read if c} | set(declared)
        self._unread = {n for n in self._names if n.lower() not in read_names}
        self._parts = result.partitions(_SQL_BATCH_ROWS)
        self.failure: BaseException | None = None
        self._ahead: deque[pa.Table] = deque()
        schema = None
        for rows in self._parts:
            part = self._table(rows)
            if schema is None:  # refused before the rest of a table of numeric times is read
                times_checked(view, {f.name for f in part.schema if _is_number(f.type)})
            self._ahead.append(part)
            schema = _unified(schema, part.schema)
            untyped = {f.name for f in schema if pa.types.is_null(f.type)} - self._unread
            if len(self._ahead) >= _AHEAD_BATCHES:
                untyped -= {n for n in untyped if n.lower() in declared}
            if not untyped:
                break
        if schema is None:  # no rows: the columns still have names (all null)
            schema = pa.schema([(n, pa.null()) for n in self._names])
        capped = len(self._ahead) >= _AHEAD_BATCHES
        floats = {f.name.lower() for f in view.schema if f.dtype in _FLOATS}

        def fixed(field: pa.Field) -> pa.Field:
            name = field.name.lower()
            if capped and pa.types.is_null(field.type) and name in declared:
                return field.with_type(declared[name])
            if name in floats and _is_number(field.type):
                return field.with_type(pa.float64())
            return field

        self.schema = pa.schema(map(fixed, schema))

    def _table(self, rows: Sequence[Any]) -> pa.Table:
        columns = map(list, zip(*rows, strict=True))
        return pa.table(
            {
                name: pa.nulls(len(rows)) if name in self._unread else values
                for name, values in zip(self._names, columns, strict=True)
            }
        )

    def _cast(self, part: pa.Table) -> pa.Table:
        """`part` in the stream's schema; a kind the schema's does not take (text after numbers)
        is the source's to fix."""
        if part.schema == self.schema:
            return part
        numbers = {"integer", "real"}
        for field, given in zip(self.schema, part.schema, strict=True):
            if pa.types.is_null(given.type):
                continue
            kinds = {push_log.column_kind(given.type), push_log.column_kind(field.type)}
            if len(kinds) > 1 and not kinds <= numbers:
                raise FailedPrecondition(
                    f"feature view {self._view.name!r}: its source's column {field.name!r} holds "
                    f"{given.type} values after {field.type} ones; give the column one type "
                    "(CAST it in the source's query)",
                    resource_type="feature_view",
                    resource_name=self._view.name,
                )
        return part.cast(self.schema)  # safe: a fraction for an integer column fails

    def _batches(self) -> Iterator[pa.RecordBatch]:
        try:
            while self._ahead:
                yield from self._cast(self._ahead.popleft()).to_batches()
            for rows in self._parts:
                yield from self._cast(self._table(rows)).to_batches()
        except BaseException as exc:
            self.failure = exc
            raise

    def reader(self) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(self.schema, self._batches())

    @contextmanager
    def failures(self) -> Iterator[None]:
        """DuckDB's error for a stream that failed, as the failure itself."""
        try:
            yield
        except duckdb.Error:
            if self.failure is not None:
                raise self.failure from None
            raise


def _unified(schema: pa.Schema | None, part: pa.Schema) -> pa.Schema:
    # A batch of nulls only has no type yet; the others say it.
    return (
        part if schema is None else pa.unify_schemas([schema, part], promote_options="permissive")
    )


def _sql_stream(
    conn: sqlalchemy.Connection,
    query: str,
    params: dict[str, Any],
    view: FeatureView,
    keys: list[str],
) -> _SqlStream:
    """The query's rows, streamed. Column by column from the result's own names: a query with
    no rows still has its columns (all null), where rows alone would give a table of none."""
    result = conn.execute(
        sqlalchemy.text(query), params, execution_options={"stream_results": True}
    )
    twice = v.named_twice(list(result.keys()))
    if twice is not None:  # a table by name keeps one of them: the other's values are lost
        raise FailedPrecondition(
            f"feature view {view.name!r}: its source's query gives two columns named {twice!r} "
            "(a join's SELECT a.*, b.*, say); name each column once, with AS",
            resource_type="feature_view",
            resource_name=view.name,
        )
    return _SqlStream(result, view, keys)


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)


# A SQL source's query that names a table ("stats", "warehouse.stats", '"Daily Stats"') rather
# than being a query of its own: anything else (WITH ..., a leading comment) runs as written.
_NAME_PART = r'(?:[A-Za-z_][\w$]*|"(?:[^"]|"")+")'
_TABLE = re.compile(rf"\s*{_NAME_PART}(?:\s*\.\s*{_NAME_PART})*\s*")


# What SQLAlchemy's text() takes for a bound parameter (':name'), which in a view's query is
# the query's own text (a string holding ':tag', say): escaped, it reaches the database as written.
_BIND_LIKE = re.compile(r"(?<![:\w\\]):(?=\w+(?![:\w]))")


def _as_written(query: str) -> str:
    return _BIND_LIKE.sub(r"\\:", query)


def register_sql(
    con: duckdb.DuckDBPyConnection,
    view: FeatureView,
    join_keys: list[str],
    raw: str,
    stack: ExitStack,
    window: TimeWindow | None,
) -> None:
    """Register relation `raw` for the rows of the view's SQL source in `window`, streamed from a
    connection `stack` keeps open."""
    source = view.source
    assert isinstance(source, SqlSource)
    query = _as_written(source.query)
    if _TABLE.fullmatch(query):
        query = f"SELECT * FROM {query}"
    engine = sqlalchemy.create_engine(source.url)
    stack.callback(engine.dispose)
    conn = stack.enter_context(engine.connect())
    stack.enter_context(call_end.interrupted_when_call_ends(_stop(conn)))
    _read_only(conn)
    windowed, params = _windowed(query, conn.dialect.name, source.timestamp_field, window)
    try:
        stream = _sql_stream(conn, windowed, params, view, join_keys)
    except sqlalchemy.exc.DBAPIError as exc:
        if windowed != query:
            _diagnose(conn, query, view, exc)
        raise
    stack.enter_context(stream.failures())
    con.register(raw, stream.reader())
