"""Reading feature view sources (Parquet/CSV on local files or S3, SQL tables) into DuckDB.

Every source is exposed as a relation with the join keys, `__ts` (the event time as UTC
TIMESTAMPTZ), `__created` (or NULL) and the features. Rows pushed to a view's offline log are
unioned in. S3 objects are read through pyarrow's S3 filesystem with the platform's S3 settings.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import sqlalchemy

from modelyard.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from modelyard.features.definitions import FeatureView, Field, FileSource, SqlSource, ValueType
from modelyard.services.common import call_end
from modelyard.services.common import validation as v
from modelyard.services.common.settings import S3Settings
from modelyard.services.feature_store.offline import push_log

# What a source's data or database can raise while it is read: the view's owner can fix those,
# the server cannot, so they are FAILED_PRECONDITION, not INTERNAL. pyarrow's file systems raise
# OSError for an object store they cannot reach or may not read (a wrong endpoint, no such
# bucket, no credentials).
_SOURCE_ERRORS = (
    duckdb.ConversionException,
    duckdb.IOException,
    duckdb.InvalidInputException,
    duckdb.OutOfRangeException,
    pa.ArrowException,
    sqlalchemy.exc.SQLAlchemyError,
    OSError,
)


def summary(exc: BaseException) -> str:
    """A reader's error in a line, for a message: a database's own words without the SQL
    SQLAlchemy adds, and only the first paragraph of DuckDB's (pages of advice on its API
    follow it)."""
    cause = getattr(exc, "orig", None) or exc
    first = str(cause).strip().split("\n\n")[0].splitlines()
    return "; ".join(first)[:500] or type(cause).__name__


@contextmanager
def within_memory(
    what: str, resource_type: str | None = None, resource_name: str | None = None
) -> Iterator[None]:
    """DuckDB's refusal of work larger than it may hold even spilled, as ResourceExhausted
    saying `what` took too much and what to do: it is no server error."""
    try:
        yield
    except duckdb.OutOfMemoryException as exc:
        raise ResourceExhausted(
            f"{what} took more memory than the feature store's DuckDB may use ({summary(exc)}); "
            "ask for a shorter time window or fewer entity rows, or have the operator raise "
            "features.duckdb_memory_limit",
            resource_type=resource_type,
            resource_name=resource_name,
        ) from None


@contextmanager
def reading(view: FeatureView) -> Iterator[None]:
    """Errors of reading `view`'s source, as FailedPrecondition naming the view (running out of
    memory, as within_memory)."""
    try:
        with within_memory(f"feature view {view.name!r}: its rows", "feature_view", view.name):
            yield
    except _SOURCE_ERRORS as exc:
        raise FailedPrecondition(
            f"feature view {view.name!r}: its source could not be read ({summary(exc)}); fix the "
            "source's data, its path (or url and query), or for s3:// the feature store's S3 "
            "settings (MODELYARD_S3__ENDPOINT and keys)",
            resource_type="feature_view",
            resource_name=view.name,
        ) from None


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


def _typed(feature: Field, source_type: str) -> str:
    """The feature's column read as its declared kind; `source_type` is DuckDB's type of it."""
    name = _quote(feature.name)
    kind = _READ_AS.get(feature.dtype)
    if kind is None:
        return name
    cast = f"CAST({name} AS {kind})"
    if kind in ("INTEGER", "BIGINT") and source_type not in _WHOLE:
        # DuckDB's cast rounds a fraction (2.5 and '2.5' become 2 and 3): refuse it instead of
        # storing a value the source does not hold. Text that is no number fails in the cast.
        # Only for sources not typed as integers: the check costs a quarter of a retrieval.
        declared = _literal(
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


def _times_checked(view: FeatureView, numeric: Collection[str]) -> None:
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


def _time_types_checked(view: FeatureView, kinds: Mapping[str, str]) -> None:
    """Refuse a source whose time column's DuckDB type (in `kinds`, by lower-case column name)
    is no time, naming the column and its type: DuckDB's own error ('Unimplemented type for
    cast (BOOLEAN -> TIMESTAMP WITH TIME ZONE)') came as a source that could not be read, with
    advice on paths."""
    _times_checked(view, {c for c, t in kinds.items() if t in _NUMBERS or t.startswith("DECIMAL")})
    for column in (view.source.timestamp_field, view.source.created_timestamp_column):
        kind = kinds.get(column.lower()) if column else None
        if kind is not None and not kind.startswith(_TIME_LIKE):
            raise _not_a_time(view, column, kind)


def _not_a_time(view: FeatureView, column: str, kind: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"feature view {view.name!r}: its source's time column {column!r} is of type {kind}, "
        "which does not convert to a timestamp; give a timestamp column (or ISO 8601 text)",
        resource_type="feature_view",
        resource_name=view.name,
    )


def _columns_checked(view: FeatureView, keys: list[str], types: Mapping[str, str]) -> None:
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
        _times_checked(view, {column})
    if _sqlstate(exc) == _PG_CANNOT_COERCE:
        raise _not_a_time(view, column, kind)


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
    column = _quote(timestamp_field)
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
                _times_checked(view, {f.name for f in part.schema if _is_number(f.type)})
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


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class SourceReader:
    def __init__(self, s3: S3Settings, push_log_root: str) -> None:
        self._s3 = s3
        self.push_log_root = push_log_root.rstrip("/")

    def _filesystem(self, uri: str) -> tuple[pafs.FileSystem, str]:
        parsed = urlparse(uri)
        if parsed.scheme == "s3":
            endpoint = self._s3.endpoint
            scheme = "https" if self._s3.secure else "http"
            if "://" in endpoint:
                scheme, _, endpoint = endpoint.partition("://")
            secret = self._s3.secret_key.get_secret_value() if self._s3.secret_key else None
            access = self._s3.access_key.get_secret_value() if self._s3.access_key else None
            fs = pafs.S3FileSystem(
                access_key=access,
                secret_key=secret,
                endpoint_override=endpoint,
                scheme=scheme,
                region=self._s3.region or "us-east-1",
            )
            return fs, f"{parsed.netloc}{parsed.path}"
        if parsed.scheme in ("", "file"):
            return pafs.LocalFileSystem(), str(
                Path(parsed.path if parsed.scheme else uri).expanduser()
            )
        raise InvalidArgument(
            f"source path {uri!r}: use a local path, file:// or s3:// URI", field="source.path"
        )

    def _dataset(self, uri: str, file_format: str) -> ds.Dataset | None:
        fs, path = self._filesystem(uri)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            return None
        fmt = ds.CsvFileFormat() if file_format == "csv" else ds.ParquetFileFormat()
        dataset = ds.dataset(path, filesystem=fs, format=fmt)
        # A dataset takes its schema from its first file: a column that later files gained (a
        # feature added to new partitions) would be missing. Read it as all files' columns
        # together; files without one give nulls, an int column beside a float one reads float.
        schemas = [fragment.physical_schema for fragment in dataset.get_fragments()]
        if len(schemas) > 1:
            unified = pa.unify_schemas(schemas, promote_options="permissive")
            dataset = ds.dataset(path, filesystem=fs, format=fmt, schema=unified)
        return dataset

    def register(
        self,
        con: duckdb.DuckDBPyConnection,
        view: FeatureView,
        join_keys: list[str],
        name: str,
        stack: ExitStack,
        window: TimeWindow | None = None,
    ) -> None:
        """Create relation `name` for the view's rows (source plus pushed offline log); of a SQL
        source, those in `window`, streamed from a connection `stack` keeps open: read `name`
        once (a stream cannot be read again), before `stack` closes."""
        source = view.source
        raw = f"{name}__raw"
        if isinstance(source, FileSource):
            parsed = urlparse(source.path)
            local = parsed.scheme in ("", "file")
            path = (
                str(Path(parsed.path if parsed.scheme else source.path).expanduser())
                if local
                else ""
            )
            if local and Path(path).is_file():
                # A CSV source has a header (its columns are named): said, not sniffed, since
                # the sniffer takes a header with no rows under it for a row of data.
                reader = (
                    f"read_csv_auto({_literal(path)}, header = true)"
                    if source.file_format == "csv"
                    else f"read_parquet({_literal(path)})"
                )
                con.execute(f"CREATE OR REPLACE TEMP VIEW {raw} AS SELECT * FROM {reader}")
            else:
                dataset = self._dataset(source.path, source.file_format)
                if dataset is None:
                    raise FailedPrecondition(
                        f"feature view {view.name!r}: source {source.path} does not exist; the "
                        "feature store's server reads it, so give a path on the server (absolute) "
                        "or an s3:// URI",
                        resource_type="feature_view",
                        resource_name=view.name,
                    )
                con.register(raw, dataset)
        else:
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
        pushed = self._dataset(f"{self.push_log_root}/{view.name}", "parquet")
        select = self._normalized(con, view, join_keys, raw)
        if pushed is not None:
            # A dataset takes its schema from its first file, which may predate a feature added
            # since: read every file as the view is defined now, missing columns as nulls.
            keys = [(k, pushed.schema.field(k).type) for k in join_keys]
            pushed = pushed.replace_schema(push_log.log_schema(view, keys))
            con.register(f"{name}__pushed", pushed)
            select += " UNION ALL BY NAME " + self._normalized(
                con, view, join_keys, f"{name}__pushed"
            )
        try:
            con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {select}")
        except duckdb.BinderException as exc:
            raise FailedPrecondition(
                f"feature view {view.name!r}: its source lacks a column the view reads ({exc}); "
                "the source must hold the entities' join keys, the timestamp fields and every "
                "feature of the schema",
                resource_type="feature_view",
                resource_name=view.name,
            ) from None

    @staticmethod
    def _normalized(
        con: duckdb.DuckDBPyConnection, view: FeatureView, keys: list[str], relation: str
    ) -> str:
        source = view.source
        created = (
            f"CAST({_quote(source.created_timestamp_column)} AS TIMESTAMPTZ)"
            if source.created_timestamp_column
            else "CAST(NULL AS TIMESTAMPTZ)"
        )
        types = {row[0]: row[1] for row in con.execute(f"DESCRIBE {relation}").fetchall()}
        _columns_checked(view, keys, types)
        kinds = {c.lower(): t for c, t in types.items()}  # names match as DuckDB matches them
        _time_types_checked(view, kinds)
        features = "".join(f", {_typed(f, kinds.get(f.name.lower(), ''))}" for f in view.schema)
        return (
            f"SELECT {', '.join(_quote(k) for k in keys)}, "
            f"CAST({_quote(source.timestamp_field)} AS TIMESTAMPTZ) AS __ts, {created} AS __created"
            f"{features} FROM {relation}"
        )
