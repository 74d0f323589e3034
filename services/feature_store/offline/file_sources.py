"""File sources: Parquet or CSV, a file or a directory of them, on the server's disk or S3
(through pyarrow's S3 filesystem with the platform's S3 settings)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from modelyard.errors import FailedPrecondition, InvalidArgument
from modelyard.features.definitions import FeatureView, FileSource
from modelyard.services.common.settings import S3Settings
from modelyard.services.feature_store.offline.source_types import literal


def _filesystem(s3: S3Settings, uri: str) -> tuple[pafs.FileSystem, str]:
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        endpoint = s3.endpoint
        scheme = "https" if s3.secure else "http"
        if "://" in endpoint:
            scheme, _, endpoint = endpoint.partition("://")
        secret = s3.secret_key.get_secret_value() if s3.secret_key else None
        access = s3.access_key.get_secret_value() if s3.access_key else None
        fs = pafs.S3FileSystem(
            access_key=access,
            secret_key=secret,
            endpoint_override=endpoint,
            scheme=scheme,
            region=s3.region or "us-east-1",
        )
        return fs, f"{parsed.netloc}{parsed.path}"
    if parsed.scheme in ("", "file"):
        return pafs.LocalFileSystem(), str(Path(parsed.path if parsed.scheme else uri).expanduser())
    raise InvalidArgument(
        f"source path {uri!r}: use a local path, file:// or s3:// URI", field="source.path"
    )


def dataset(s3: S3Settings, uri: str, file_format: str) -> ds.Dataset | None:
    """The files at `uri` as one dataset, None where nothing is there."""
    fs, path = _filesystem(s3, uri)
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


def register_file(
    con: duckdb.DuckDBPyConnection, view: FeatureView, raw: str, s3: S3Settings
) -> None:
    """Register relation `raw` for the rows of the view's file source."""
    source = view.source
    assert isinstance(source, FileSource)
    parsed = urlparse(source.path)
    local = parsed.scheme in ("", "file")
    path = str(Path(parsed.path if parsed.scheme else source.path).expanduser()) if local else ""
    if local and Path(path).is_file():
        # A CSV source has a header (its columns are named): said, not sniffed, since
        # the sniffer takes a header with no rows under it for a row of data.
        reader = (
            f"read_csv_auto({literal(path)}, header = true)"
            if source.file_format == "csv"
            else f"read_parquet({literal(path)})"
        )
        con.execute(f"CREATE OR REPLACE TEMP VIEW {raw} AS SELECT * FROM {reader}")
    else:
        files = dataset(s3, source.path, source.file_format)
        if files is None:
            raise FailedPrecondition(
                f"feature view {view.name!r}: source {source.path} does not exist; the "
                "feature store's server reads it, so give a path on the server (absolute) "
                "or an s3:// URI",
                resource_type="feature_view",
                resource_name=view.name,
            )
        con.register(raw, files)
