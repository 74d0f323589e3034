"""Previews of run artifacts: text, images, tables (CSV/Parquet head), model manifests, HTML.

Only the head of a file is read (PREVIEW_BYTES); anything else is offered as a download.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import yaml

PREVIEW_BYTES = 512 * 1024
TABLE_ROWS = 50
IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}
TEXT_SUFFIXES = {
    ".txt", ".log", ".json", ".yaml", ".yml", ".py", ".md", ".cfg", ".ini", ".toml", ".sql",
    ".sh", ".r", ".ipynb", ".xml",
}  # fmt: skip


@dataclass
class Preview:
    kind: str  # text, image, table, manifest, html, none
    text: str = ""
    columns: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    total_rows: int | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    truncated: bool = False
    note: str = ""


def kind_of(path: str) -> str:
    name = PurePosixPath(path)
    suffix = name.suffix.lower()
    if name.name == "MLmodel":
        return "manifest"
    if suffix in IMAGE_TYPES:
        return "image"
    if suffix in (".csv", ".tsv", ".parquet"):
        return "table"
    if suffix in (".html", ".htm"):
        return "html"
    if suffix in TEXT_SUFFIXES:
        return "text"
    return "unknown"


def _table(frame: pd.DataFrame, total: int | None) -> Preview:
    head = frame.head(TABLE_ROWS)
    rows = [[_cell(v) for v in row] for row in head.itertuples(index=False)]
    return Preview(
        "table", columns=[str(c) for c in head.columns], rows=rows, total_rows=total,
        truncated=total is None or total > len(rows),
    )  # fmt: skip


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def build(path: str, head: bytes, size: int) -> Preview:
    """A preview of a file from its first bytes (the whole file for Parquet, up to its size)."""
    kind = kind_of(path)
    truncated = size > len(head)
    if kind == "image" or kind == "html":
        return Preview(kind)
    if kind == "table":
        try:
            if path.lower().endswith(".parquet"):
                if truncated:
                    return Preview("none", note="Parquet file too large to preview; download it.")
                parquet = pq.ParquetFile(io.BytesIO(head))
                total = parquet.metadata.num_rows
                first = next(parquet.iter_batches(batch_size=TABLE_ROWS), None)
                frame = first.to_pandas() if first is not None else pd.DataFrame()
                return _table(frame, total)
            sep = "\t" if path.lower().endswith(".tsv") else ","
            frame = pd.read_csv(io.BytesIO(head), sep=sep, nrows=TABLE_ROWS)
            return _table(frame, None if truncated else _line_count(head) - 1)
        except (ValueError, OSError, pd.errors.ParserError) as exc:
            return Preview("none", note=f"Could not read it as a table ({exc}); download it.")
    text = _decode(head)
    if text is None:
        return Preview("none", note="Binary file; download it.")
    if kind == "manifest":
        try:
            manifest = yaml.safe_load(text) or {}
        except (yaml.YAMLError, RecursionError):  # nested deeper than the stack
            manifest = {}
        return Preview(
            "manifest", text=text, manifest=manifest if isinstance(manifest, dict) else {}
        )
    if path.lower().endswith(".json") and not truncated:
        with contextlib.suppress(ValueError, RecursionError):  # shown as it is
            text = json.dumps(json.loads(text), indent=2)
    return Preview("text", text=text, truncated=truncated)


def _line_count(data: bytes) -> int:
    return data.count(b"\n") + (0 if data.endswith(b"\n") else 1)


def _decode(data: bytes) -> str | None:
    if b"\x00" in data[:8192]:
        return None
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        if exc.start >= len(data) - 4:  # a character cut at the preview's end
            return data[: exc.start].decode()
        return None


def signature_rows(manifest: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(direction, name, type) for a manifest's signature, for the model page."""
    signature = manifest.get("signature") or {}
    rows = []
    for direction in ("inputs", "outputs"):
        for spec in signature.get(direction) or []:
            if isinstance(spec, dict):
                kind = spec.get("dtype") or spec.get("type") or ""
                if spec.get("shape"):
                    kind = f"{kind} {spec['shape']}"
                rows.append((direction[:-1], str(spec.get("name") or ""), str(kind)))
    return rows
