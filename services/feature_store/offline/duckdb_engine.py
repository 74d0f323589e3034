"""DuckDbEngine: point-in-time joins with DuckDB's ASOF JOIN, over Arrow and Parquet.

Per requested view: rows sharing an entity and event time keep only the latest-created one, then
each entity row takes the latest feature row at or before its event time (ASOF), and values
older than the view's TTL are blanked. Results keep the entity rows' order and stream as Arrow.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from modelyard.errors import InvalidArgument
from modelyard.features.definitions import FeatureView, Field, ValueType
from modelyard.services.common import call_end
from modelyard.services.feature_store.offline.base import OfflineEngine, ViewRequest
from modelyard.services.feature_store.offline.source_types import literal, quote
from modelyard.services.feature_store.offline.sources import (
    SourceReader,
    TimeWindow,
    reading,
    summary,
    within_memory,
)
from modelyard.services.feature_store.online.base import KEY_KINDS

_BATCH_ROWS = 65_536
# Materialization turns each row into Python values (about 1 KB a row) before writing a batch.
_LATEST_BATCH_ROWS = 10_000
_CAST_ERRORS = (duckdb.ConversionException, duckdb.BinderException, duckdb.InvalidInputException)


# The kind (online.base.KEY_KINDS) of each DuckDB type family an entity column may have.
_KINDS = dict.fromkeys(("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT"), "integer")
_KINDS |= dict.fromkeys(("UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT"), "integer")
_KINDS |= dict.fromkeys(("FLOAT", "DOUBLE", "DECIMAL"), "real")
_KINDS |= {"VARCHAR": "text", "BOOLEAN": "bool", "BLOB": "bytes"}
_KINDS |= dict.fromkeys(("TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS"), "time")
# Each declared type's values as DuckDB holds them: a key the cast cannot take (2**63 for INT64,
# NaN for a float), or an integer's that it changes (7.5), is none of its keys. A float32 key
# may change in the cast (0.1): online lookups narrow it alike.
_KEY_VALUES = {
    ValueType.INT32: "INTEGER",
    ValueType.INT64: "BIGINT",
    ValueType.FLOAT32: "FLOAT",
    ValueType.FLOAT64: "DOUBLE",
}


def _family(kind: object) -> str:
    """'DECIMAL' of DECIMAL(18,3), 'TIMESTAMP' of TIMESTAMP WITH TIME ZONE, 'NULL' of the type
    of a column of nothing but nulls (which DuckDB names '"NULL"', quotes and all)."""
    if kind == duckdb.sqltype("NULL"):
        return "NULL"
    name = str(kind)
    return "TIMESTAMP" if name == "TIMESTAMP WITH TIME ZONE" else name.split("(")[0]


def _check_entity_keys(
    con: duckdb.DuckDBPyConnection, source: str, keys: Sequence[Field], view: FeatureView
) -> None:
    """Entity rows whose join key is not a key of its declared type (as online lookups take
    them), or cannot be the source's type, are the caller's to fix: say so, rather than join
    them (True as 1, '7' as 7) or let the join fail as if the source were broken."""
    names = [k.name for k in keys]
    relation = con.sql(f"SELECT {', '.join(map(quote, names))} FROM {source}")
    types = dict(zip(names, relation.types, strict=True))
    entity_keys = con.sql(f"SELECT {', '.join(map(quote, names))} FROM entities")
    given = dict(zip(names, entity_keys.types, strict=True))
    for field in keys:
        key, column = field.name, quote(field.name)
        family = _family(given[key])
        if family != "NULL" and _KINDS.get(family) not in KEY_KINDS[field.dtype]:
            raise InvalidArgument(
                f"the entity rows' {key!r} column holds {given[key]} values, which are not keys "
                f"of type {field.dtype.name} like the join key of feature view {view.name!r} "
                f"(online lookups refuse them too); give {field.dtype.name} keys",
                field=key,
            )
        checks = []
        if field.dtype in _KEY_VALUES:
            as_key = f"TRY_CAST({column} AS {_KEY_VALUES[field.dtype]})"
            checks.append(f"{as_key} IS NULL OR NOT isfinite({as_key})")
            if field.dtype in (ValueType.INT32, ValueType.INT64):
                checks.append(f"{as_key} <> {column}")
        if types[key] != duckdb.sqltype("NULL"):  # a SQL source with no rows has no types
            checks.append(f"TRY_CAST({column} AS {types[key]}) IS NULL")
        if not checks:
            continue
        bad = con.execute(
            f"SELECT {column} FROM entities WHERE {column} IS NOT NULL "
            f"AND ({' OR '.join(checks)}) LIMIT 1"
        ).fetchall()
        if bad:
            raise InvalidArgument(
                f"the entity rows' {key!r} column holds {bad[0][0]!r}, which is not a "
                f"{field.dtype.name} key like the join key of feature view {view.name!r}; "
                "give keys of that type",
                field=key,
            )


def _same_key(key: Field) -> str:
    """The join condition of one key. FLOAT32 keys are compared as float32, as online keys are
    (narrowed): compared as DOUBLE, an entity row's 0.1 missed the source's float32 0.1."""
    e, f = f"e.{quote(key.name)}", f"f.{quote(key.name)}"
    if key.dtype == ValueType.FLOAT32:
        return f"CAST({e} AS FLOAT) = CAST({f} AS FLOAT)"
    return f"{e} = {f}"


def _interrupter(con: duckdb.DuckDBPyConnection) -> Callable[[], None]:
    """`con.interrupt`, without keeping `con` alive: grpc keeps a call's callbacks until its
    serving thread drops the call, which it may do after the server has stopped. The last
    reference to a connection dropped there freed it (releasing the GIL) as the interpreter
    finalized, which aborted the process ('FATAL: exception not rethrown')."""
    ref = weakref.ref(con)

    def interrupt() -> None:
        if (live := ref()) is not None:
            live.interrupt()

    return interrupt


@dataclass(frozen=True)
class DuckDbSettings:
    """A database's settings: worker threads (None: every core), the memory its joins take
    before they spill to disk (DuckDB's memory_limit, e.g. "4GB"; None: DuckDB's 80% of RAM),
    and where they spill (None: DuckDB's `.tmp` in the working directory)."""

    threads: int | None = None
    memory_limit: str | None = None
    temp_directory: str | None = None


# The in-memory databases retrievals connect to, one per settings: opening a database took
# 75-120 ms, paid by every training set and every view materialized (a materialization of 1,000
# entities spent most of its time there). Each retrieval opens a connection of its own to one:
# its temporary tables and registered sources are its alone, and go (with their memory) when it
# is dropped.
_databases: dict[DuckDbSettings, duckdb.DuckDBPyConnection] = {}
_databases_lock = threading.Lock()


def _database(settings: DuckDbSettings) -> duckdb.DuckDBPyConnection:
    with _databases_lock:
        database = _databases.get(settings)
        if database is None:
            database = _databases[settings] = duckdb.connect()
            if settings.threads:
                database.execute(f"SET threads = {int(settings.threads)}")
            if settings.memory_limit:
                database.execute(f"SET memory_limit = {literal(settings.memory_limit)}")
            if settings.temp_directory:
                database.execute(f"SET temp_directory = {literal(settings.temp_directory)}")
            # Closed before the interpreter finalizes (see _interrupter).
            atexit.register(database.close)
        return database.cursor()


def connect(settings: DuckDbSettings | None = None) -> duckdb.DuckDBPyConnection:
    """A connection for one retrieval, interrupted if its call ends first: a client that gave
    up on a training set would otherwise leave its join running for seconds on every core."""
    con = _database(settings or DuckDbSettings())
    call_end.on_end(_interrupter(con))
    con.execute("SET TimeZone = 'UTC'")
    return con


def _memory_bounded(reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
    """A training set's batches; its last join running out of memory as it streams is the
    caller's to shrink (ResourceExhausted), not a server error."""
    with within_memory("the training set"):
        yield from reader


class DuckDbEngine(OfflineEngine):
    def __init__(
        self,
        sources: SourceReader,
        join_keys: Callable[[FeatureView], list[Field]],
        settings: DuckDbSettings | None = None,
    ) -> None:
        self._sources = sources
        self._join_keys = join_keys  # the views' join key fields, their entities' in order
        self._settings = settings or DuckDbSettings()

    def historical(
        self, entities: pa.Table, requests: Sequence[ViewRequest], event_timestamp_column: str
    ) -> pa.RecordBatchReader:
        if event_timestamp_column not in entities.column_names:
            raise InvalidArgument(
                f"the entity rows have no {event_timestamp_column!r} column; add the time each "
                "row's features should be taken at",
                field="event_timestamp_column",
            )
        con = connect(self._settings)
        rows = entities.append_column("__row", pa.array(range(entities.num_rows), pa.int64()))
        con.register("entity_input", rows)
        try:
            with within_memory("the entity rows"):
                con.execute(
                    "CREATE TEMP TABLE entities AS SELECT *, "
                    f"CAST({quote(event_timestamp_column)} AS TIMESTAMPTZ) AS __event_ts "
                    "FROM entity_input"
                )
        except _CAST_ERRORS as exc:
            raise InvalidArgument(
                f"the entity rows' {event_timestamp_column!r} column holds values that are not "
                f"times ({summary(exc)}); give timestamps or ISO 8601 strings",
                field="event_timestamp_column",
            ) from None
        selects = []
        for i, request in enumerate(requests):
            view = request.view
            fields = self._join_keys(view)
            keys = [f.name for f in fields]
            missing = [k for k in keys if k not in entities.column_names]
            if missing:
                raise InvalidArgument(
                    f"the entity rows have no {missing[0]!r} column, the join key of feature view "
                    f"{view.name!r}",
                    field=missing[0],
                )
            with reading(view), ExitStack() as stack:
                self._join_view(con, i, request, fields, stack)
            selects.append((f"joined_{i}", request.output_names))
        columns = ", ".join(f"{table}.{quote(out)}" for table, outs in selects for out in outs)
        joins = " ".join(f"LEFT JOIN {table} USING (__row)" for table, _ in selects)
        query = (
            f"SELECT e.* EXCLUDE (__row, __event_ts){', ' + columns if columns else ''} "
            f"FROM entities e {joins} ORDER BY e.__row"
        )
        with within_memory("the training set"):
            reader = con.sql(query).to_arrow_reader(_BATCH_ROWS)
        return pa.RecordBatchReader.from_batches(reader.schema, _memory_bounded(reader))

    def _join_view(
        self,
        con: duckdb.DuckDBPyConnection,
        i: int,
        request: ViewRequest,
        fields: list[Field],
        stack: ExitStack,
    ) -> None:
        """Table joined_<i>: each entity row's values of one view at its event time (the view's
        source read once, while `stack` is open)."""
        view = request.view
        source = f"src_{i}"
        keys = [f.name for f in fields]
        window = self._needed(con, view)
        self._sources.register(con, view, request.online_name, keys, source, stack, window)
        _check_entity_keys(con, source, fields, view)
        if view.source.created_timestamp_column:
            partition = ", ".join(quote(k) for k in keys)
            con.execute(
                f"CREATE TEMP TABLE dedup_{i} AS SELECT * FROM {source} QUALIFY row_number() "
                f"OVER (PARTITION BY {partition}, __ts ORDER BY __created DESC NULLS LAST) = 1"
            )
            source = f"dedup_{i}"
        on = " AND ".join(_same_key(f) for f in fields)
        if view.ttl:
            micros = int(view.ttl.total_seconds() * 1_000_000)
            fresh = f"f.__ts >= e.__event_ts - INTERVAL '{micros} microseconds'"
        else:
            fresh = "f.__ts IS NOT NULL"
        values = ", ".join(
            f"CASE WHEN {fresh} THEN f.{quote(feature)} END AS {quote(out)}"
            for feature, out in zip(request.features, request.output_names, strict=True)
        )
        con.execute(
            f"CREATE TEMP TABLE joined_{i} AS SELECT e.__row, {values} FROM entities e "
            f"ASOF LEFT JOIN {source} f ON {on} AND e.__event_ts >= f.__ts"
        )

    @staticmethod
    def _needed(con: duckdb.DuckDBPyConnection, view: FeatureView) -> TimeWindow:
        """The event times the entity rows can take a value of `view` from: none after the
        latest row's time, none older than the TTL before the earliest's."""
        ((first, last),) = con.execute(
            "SELECT epoch_us(min(__event_ts)), epoch_us(max(__event_ts)) FROM entities"
        ).fetchall()
        if last is None:  # no row has a time: none takes a value
            return TimeWindow()
        ttl_us = int(view.ttl.total_seconds() * 1_000_000) if view.ttl else None
        return TimeWindow(first - ttl_us if ttl_us else None, last)

    def latest(
        self, view: FeatureView, online_name: str, start_us: int, end_us: int
    ) -> Iterator[pa.RecordBatch]:
        con = connect(self._settings)
        keys = [f.name for f in self._join_keys(view)]
        partition = ", ".join(quote(k) for k in keys)
        features = "".join(f", {quote(f.name)}" for f in view.schema)
        window = TimeWindow(start_us, end_us)
        # The source is read as the batches are.
        with reading(view), ExitStack() as stack:
            self._sources.register(con, view, online_name, keys, "src", stack, window)
            yield from con.sql(
                f"SELECT {partition}, epoch_us(__ts) AS __event_time_us, "
                f"epoch_us(__created) AS __created_time_us{features} "
                "FROM src "
                "WHERE __ts >= make_timestamptz(CAST(? AS BIGINT)) "
                "AND __ts <= make_timestamptz(CAST(? AS BIGINT)) "
                # A row without its key is no entity's: nothing could look it up.
                + "".join(f"AND {quote(k)} IS NOT NULL " for k in keys)
                + f"QUALIFY row_number() OVER (PARTITION BY {partition} "
                "ORDER BY __ts DESC, __created DESC NULLS LAST) = 1 "
                # In key order: an online store keyed by them (SQLite's table) then fills in
                # order, which took a third of the time random order did.
                f"ORDER BY {partition}",
                params=[start_us, end_us],
            ).to_arrow_reader(_LATEST_BATCH_ROWS)
