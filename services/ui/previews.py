"""Previews of run artifacts: text, images, tables (CSV/Parquet head), model manifests, HTML.

Only the head of a file is read (PREVIEW_BYTES); anything else is offered as a download. An
artifact is whatever a run's writer logged, so every preview is bounded twice: in what it reads
and decodes (no YAML aliases, Parquet only where its declared decoded size is small), and in what
it shows (each value cut to VALUE_CHARS, a table to TABLE_CHARS), and it says what it cut.
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

PREVIEW_BYTES = 512 * 1024  # the head of a text or CSV file that is read and shown
PARQUET_BYTES = 64 * 1024 * 1024  # Parquet's footer is at its end: read whole, up to this
PARQUET_DECODED_BYTES = 32 * 1024 * 1024  # declared decoded size of the row groups read
MANIFEST_BYTES = 256 * 1024  # an MLmodel larger than this is shown as text, not parsed
TABLE_ROWS = 50
TABLE_COLUMNS = 100
VALUE_CHARS = 2000  # each value shown (a cell, a manifest field)
TABLE_CHARS = 256 * 1024  # all the cells of a table preview together
SIGNATURE_ROWS = 500
PRETTY_JSON_DEPTH = 32  # deeper JSON is shown as it is: indenting it grows it quadratically
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
    rows: list[list[str]] = field(default_factory=list)
    total_rows: int | None = None
    facts: list[tuple[str, str]] = field(default_factory=list)  # a manifest's, shown in a table
    signature: list[tuple[str, str, str]] = field(default_factory=list)
    truncated: bool = False
    note: str = ""  # why there is no preview, or what this one leaves out


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


def read_limit(path: str, size: int) -> int:
    """How many bytes of a file of `size` bytes build() wants: none of an image or HTML (shown
    from the download route), nor of a Parquet file over PARQUET_BYTES (its footer, which
    build() needs, is at the end); reading 64 MiB of a file only to refuse it made each such
    preview cost that much memory."""
    kind = kind_of(path)
    if kind in ("image", "html"):
        return 0
    if path.lower().endswith(".parquet"):
        return PARQUET_BYTES if size <= PARQUET_BYTES else 0
    return PREVIEW_BYTES


def clip(value: Any, limit: int = VALUE_CHARS) -> str:
    """A value as text, cut to `limit` characters (an ellipsis marks the cut)."""
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _table(frame: pd.DataFrame, total: int | None, cut_columns: bool = False) -> Preview:
    width = min(len(frame.columns), TABLE_COLUMNS)
    head = frame.iloc[:TABLE_ROWS, :width]
    cut_values, budget = False, TABLE_CHARS
    rows: list[list[str]] = []
    for row in head.itertuples(index=False):
        cells = [clip(v) for v in row]
        cut_values = cut_values or any(len(c) > VALUE_CHARS for c in cells)
        budget -= sum(len(c) for c in cells)
        if budget < 0 and rows:
            break
        rows.append(cells)
    cut = [
        f"the first {width} of {len(frame.columns)} columns"
        if cut_columns or width < len(frame.columns)
        else "",
        f"values cut to {VALUE_CHARS} characters" if cut_values else "",
        f"rows up to {TABLE_CHARS // 1024} KiB of text" if len(rows) < len(head) else "",
    ]
    return Preview(
        "table", columns=[clip(c) for c in head.columns], rows=rows, total_rows=total,
        truncated=total is None or total > len(rows),
        note=("Showing " + ", ".join(c for c in cut if c) + ".") if any(cut) else "",
    )  # fmt: skip


def _parquet(data: bytes) -> Preview:
    """The first rows of the first columns, read in one batch from the fewest row groups, and
    only when their declared decoded size is within PARQUET_DECODED_BYTES: a few KiB of
    compressed Parquet can decode to gigabytes."""
    parquet = pq.ParquetFile(io.BytesIO(data))
    meta = parquet.metadata
    names = parquet.schema_arrow.names
    shown = set(names[:TABLE_COLUMNS])
    groups, rows, decoded = [], 0, 0
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        size = sum(
            group.column(j).total_uncompressed_size
            for j in range(group.num_columns)
            if group.column(j).path_in_schema.split(".")[0] in shown
        )
        if decoded + size > PARQUET_DECODED_BYTES:
            break
        groups.append(i)
        rows, decoded = rows + group.num_rows, decoded + size
        if rows >= TABLE_ROWS:
            break
    if not groups and meta.num_row_groups:
        return Preview(
            "none",
            note=f"Its first rows decode to more than {PARQUET_DECODED_BYTES // 2**20} MiB, "
            "more than a preview reads; download it.",
        )
    batches = parquet.iter_batches(
        batch_size=TABLE_ROWS, row_groups=groups, columns=names[:TABLE_COLUMNS]
    )
    first = next(batches, None)
    frame = first.to_pandas() if first is not None else pd.DataFrame(columns=names[:TABLE_COLUMNS])
    return _table(frame, meta.num_rows, cut_columns=len(names) > TABLE_COLUMNS)


class _NoAliases(yaml.SafeLoader):
    """YAML without aliases: expanding nested aliases turns a few hundred bytes into gigabytes
    (a "billion laughs"), and an MLmodel has no use for them."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None, None, "uses YAML aliases", self.peek_event().start_mark
            )
        return super().compose_node(parent, index)


def _manifest(text: str, truncated: bool) -> Preview:
    shown = clip(text, PREVIEW_BYTES)
    if truncated or len(text) > MANIFEST_BYTES:
        note = f"It is larger than {MANIFEST_BYTES // 1024} KiB, so only its text is shown."
        return Preview("manifest", text=shown, note=note)
    try:
        manifest = yaml.load(text, Loader=_NoAliases) or {}  # a SafeLoader
    except yaml.composer.ComposerError as exc:
        return Preview("manifest", text=shown, note=f"It {exc.problem}, which are not expanded.")
    except (yaml.YAMLError, RecursionError):  # not YAML, or nested deeper than the stack
        return Preview("manifest", text=shown, note="It is not valid YAML.")
    except ValueError as exc:  # a value its tag cannot hold: a 13th month, `!!int 0x`
        return Preview("manifest", text=shown, note=f"It has a value YAML cannot read ({exc}).")
    if not isinstance(manifest, dict):
        return Preview("manifest", text=shown, note="It is not a YAML mapping.")
    return Preview(
        "manifest", text=shown, facts=manifest_facts(manifest),
        signature=signature_rows(manifest),
    )  # fmt: skip


def build(path: str, head: bytes, size: int) -> Preview:
    """A preview of a file from its first read_limit(path, size) bytes, out of `size`."""
    kind = kind_of(path)
    truncated = size > len(head)
    if kind == "image" or kind == "html":
        return Preview(kind)
    if kind == "table":
        try:
            if path.lower().endswith(".parquet"):
                if truncated:
                    return Preview("none", note="Parquet file too large to preview; download it.")
                return _parquet(head)
            sep = "\t" if path.lower().endswith(".tsv") else ","
            frame = pd.read_csv(io.BytesIO(head), sep=sep, nrows=TABLE_ROWS)
            return _table(frame, None if truncated else _line_count(head) - 1)
        except (ValueError, OSError, pd.errors.ParserError) as exc:
            reason = clip(exc, 200)
            return Preview("none", note=f"Could not read it as a table ({reason}); download it.")
    text = _decode(head)
    if text is None:
        return Preview("none", note="Binary file; download it.")
    if kind == "manifest":
        return _manifest(text, truncated)
    if path.lower().endswith(".json") and not truncated:
        with contextlib.suppress(ValueError, RecursionError):  # shown as it is
            parsed = json.loads(text)
            if _depth(parsed) <= PRETTY_JSON_DEPTH:
                text = json.dumps(parsed, indent=2)
    return Preview("text", text=clip(text, PREVIEW_BYTES), truncated=truncated)


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if deepest > PRETTY_JSON_DEPTH:
                break
            stack.extend(
                (v, depth + 1) for v in (item.values() if isinstance(item, dict) else item)
            )
    return deepest


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


def manifest_facts(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows that sum up a model's manifest, each value cut to VALUE_CHARS."""
    flavors = manifest.get("flavors")
    metadata = manifest.get("metadata")
    facts = [
        ("Flavors", ", ".join(map(str, flavors)) if isinstance(flavors, dict) else ""),
        ("Created", manifest.get("created", "")),
        ("Python", manifest.get("python_version", "")),
    ]
    if isinstance(metadata, dict) and metadata.get("feature_service"):
        facts.append(("Feature service", metadata["feature_service"]))
    return [(label, clip(value)) for label, value in facts]


def signature_rows(manifest: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(direction, name, type) for a manifest's signature, for the model page; the first
    SIGNATURE_ROWS, each value cut to VALUE_CHARS."""
    signature = manifest.get("signature") or {}
    if not isinstance(signature, dict):
        return []
    rows = []
    for direction in ("inputs", "outputs"):
        specs = signature.get(direction) or []
        for spec in specs if isinstance(specs, list) else []:
            if isinstance(spec, dict):
                kind = spec.get("dtype") or spec.get("type") or ""
                if spec.get("shape"):
                    kind = f"{kind} {spec['shape']}"
                rows.append((direction[:-1], clip(spec.get("name") or ""), clip(kind)))
                if len(rows) == SIGNATURE_ROWS:
                    return rows
    return rows
