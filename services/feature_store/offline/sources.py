"""Reading feature view sources (Parquet/CSV on local files or S3, SQL tables) into DuckDB.

Every source is exposed as a relation with the join keys, `__ts` (the event time as UTC
TIMESTAMPTZ), `__created` (or NULL) and the features. Rows pushed to a view's offline log are
unioned in. File sources are read by file_sources, SQL sources by sql_sources; the checks of
columns and types both share are in source_types.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import duckdb
import pyarrow as pa
import sqlalchemy

from modelyard.errors import FailedPrecondition, ResourceExhausted
from modelyard.features.definitions import FeatureView, FileSource
from modelyard.services.common.settings import S3Settings
from modelyard.services.feature_store.offline import push_log
from modelyard.services.feature_store.offline.file_sources import dataset, register_file
from modelyard.services.feature_store.offline.source_types import (
    columns_checked,
    quote,
    time_types_checked,
    typed,
)
from modelyard.services.feature_store.offline.sql_sources import TimeWindow, register_sql

__all__ = ["SourceReader", "TimeWindow", "reading", "summary", "within_memory"]


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


class SourceReader:
    def __init__(self, s3: S3Settings, push_log_root: str) -> None:
        self._s3 = s3
        self.push_log_root = push_log_root.rstrip("/")

    def register(
        self,
        con: duckdb.DuckDBPyConnection,
        view: FeatureView,
        online_name: str,
        join_keys: list[str],
        name: str,
        stack: ExitStack,
        window: TimeWindow | None = None,
    ) -> None:
        """Create relation `name` for the view's rows (source plus pushed offline log, kept under
        the view's `online_name`, see base.ViewRequest); of a SQL source, those in `window`,
        streamed from a connection `stack` keeps open: read `name` once (a stream cannot be read
        again), before `stack` closes."""
        source = view.source
        raw = f"{name}__raw"
        if isinstance(source, FileSource):
            register_file(con, view, raw, self._s3)
        else:
            register_sql(con, view, join_keys, raw, stack, window)
        pushed = dataset(self._s3, f"{self.push_log_root}/{online_name}", "parquet")
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
            f"CAST({quote(source.created_timestamp_column)} AS TIMESTAMPTZ)"
            if source.created_timestamp_column
            else "CAST(NULL AS TIMESTAMPTZ)"
        )
        types = {row[0]: row[1] for row in con.execute(f"DESCRIBE {relation}").fetchall()}
        columns_checked(view, keys, types)
        kinds = {c.lower(): t for c, t in types.items()}  # names match as DuckDB matches them
        time_types_checked(view, kinds)
        features = "".join(f", {typed(f, kinds.get(f.name.lower(), ''))}" for f in view.schema)
        return (
            f"SELECT {', '.join(quote(k) for k in keys)}, "
            f"CAST({quote(source.timestamp_field)} AS TIMESTAMPTZ) AS __ts, {created} AS __created"
            f"{features} FROM {relation}"
        )
