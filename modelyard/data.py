"""Describe datasets for `log_input`: a name, a content digest, where it came from, its schema.

    ds = modelyard.data.from_pandas(df, source="s3://bucket/train.parquet", name="train")
    modelyard.log_input(ds, context="training")

The digest hashes the content, so the same data logged twice is recognized as one dataset.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pandas as pd

from modelyard.entities import Dataset

# Dataset profiles travel with the run (at most 16 KiB, MLflow's limit): per-column bins are what
# drift checks compare live inputs against.
_PROFILE_BUDGET = 15_000
_BINS = 10
_TOP_VALUES = 20


def _column_profile(column: pd.Series) -> dict[str, Any] | None:
    present = column.dropna()
    missing = round(1 - len(present) / len(column), 6) if len(column) else 0.0
    if pd.api.types.is_bool_dtype(column) or not pd.api.types.is_numeric_dtype(column):
        counts = present.astype(str).value_counts(normalize=True)
        top = counts.head(_TOP_VALUES)
        return {
            "kind": "categorical",
            "values": {str(k): round(float(v), 6) for k, v in top.items()},
            "other": round(float(1 - top.sum()), 6),
            "missing": missing,
        }
    values = present.to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    edges = np.unique(np.quantile(values, np.linspace(0, 1, _BINS + 1)))
    counts = np.histogram(values, bins=edges)[0] if len(edges) > 1 else np.array([len(values)])
    return {
        "kind": "numeric",
        "edges": [float(f"{e:.8g}") for e in edges],
        "fractions": [round(float(c) / len(values), 6) for c in counts],
        "mean": float(f"{values.mean():.8g}"),
        "std": float(f"{values.std():.8g}"),
        "missing": missing,
    }


def profile(df: pd.DataFrame, **extra: Any) -> dict[str, Any]:
    """Row count and, per column while the size budget lasts, its distribution: decile edges
    and bin fractions for numbers, top values for categories."""
    out: dict[str, Any] = {"num_rows": len(df), "num_elements": int(df.size), **extra}
    columns: dict[str, Any] = {}
    used = len(json.dumps(out))
    for name in df.columns:
        summary = _column_profile(df[name])
        if summary is None:
            continue
        size = len(json.dumps({str(name): summary})) + 2
        if used + size > _PROFILE_BUDGET:
            out["columns_truncated"] = True
            break
        columns[str(name)] = summary
        used += size
    out["columns"] = columns
    return out


def _schema(df: pd.DataFrame) -> str:
    return json.dumps({"columns": [{"name": str(c), "type": str(t)} for c, t in df.dtypes.items()]})


def from_pandas(
    df: pd.DataFrame,
    source: str | None = None,
    targets: str | None = None,
    name: str | None = None,
    digest: str | None = None,
    predictions: str | None = None,
) -> Dataset:
    """`targets` and `predictions` name the label and prediction columns, as in MLflow; a
    `digest` given replaces the content's."""
    if digest is None:
        hashed = pd.util.hash_pandas_object(df, index=False).to_numpy()
        h = hashlib.sha256(hashed.tobytes())
        h.update(json.dumps([str(c) for c in df.columns]).encode())
        digest = h.hexdigest()[:16]
    roles = {"targets": targets, "predictions": predictions}
    return Dataset(
        name=name or f"dataset-{digest[:8]}",
        digest=digest,
        source_type="uri" if source else "code",
        source=json.dumps({"uri": source}) if source else "{}",
        schema=_schema(df),
        profile=json.dumps(profile(df, **{k: v for k, v in roles.items() if v})),
    )


def _content(array: np.ndarray) -> bytes:
    """Bytes that stand for what the array holds: an object array's own bytes are pointers,
    different in every process, so its values are hashed instead."""
    if array.dtype == object:
        return pd.util.hash_array(array.ravel()).tobytes()
    return np.ascontiguousarray(array).tobytes()


def _array_dataset(
    parts: list[bytes], schema: dict[str, Any], profile: dict[str, Any], source: str | None,
    name: str | None, digest: str | None = None,
) -> Dataset:  # fmt: skip
    if digest is None:
        h = hashlib.sha256()
        for part in parts:
            h.update(part)
        digest = h.hexdigest()[:16]
    return Dataset(
        name=name or f"dataset-{digest[:8]}",
        digest=digest,
        source_type="uri" if source else "code",
        source=json.dumps({"uri": source}) if source else "{}",
        schema=json.dumps(schema),
        profile=json.dumps(profile),
    )


Arrays = np.ndarray | dict[str, np.ndarray]


def _arrays(role: str, arrays: Arrays) -> tuple[list[bytes], dict[str, Any], int]:
    """Digest parts, schema and row count of one array, or of named arrays (as MLflow's
    from_numpy takes them), by name."""
    named = arrays if isinstance(arrays, dict) else {"": arrays}
    parts, schema, rows = [], {}, 0
    for key in sorted(named):
        array = np.asarray(named[key])
        parts += [key.encode()] if key else []
        parts += [_content(array), str((array.shape, array.dtype)).encode()]
        schema[f"{role}.{key}" if key else role] = {
            "dtype": str(array.dtype),
            "shape": list(array.shape),
        }
        rows = max(rows, int(array.shape[0]) if array.ndim else 1)
    return parts, schema, rows


def from_numpy(
    features: Arrays,
    source: str | None = None,
    targets: Arrays | None = None,
    name: str | None = None,
    digest: str | None = None,
) -> Dataset:
    """An array, or a dict of named arrays (features and targets alike), as in MLflow."""
    parts, schema, rows = _arrays("features", features)
    if targets is not None:
        more, target_schema, _ = _arrays("targets", targets)
        # One array's part is its content alone (without its shape), as before named arrays
        # were taken, so its digest is unchanged.
        parts += more[:1] if isinstance(targets, np.ndarray) else more
        schema |= target_schema
    return _array_dataset(parts, schema, {"num_rows": rows}, source, name, digest)


def from_scipy(
    features: Any,
    source: str | None = None,
    targets: np.ndarray | None = None,
    name: str | None = None,
) -> Dataset:
    """A scipy sparse matrix, digested from its stored entries: a dense copy could be far
    larger than memory."""
    csr = features.tocsr()
    if not csr.has_canonical_format:
        csr = csr.copy()
        csr.sum_duplicates()
    parts = [np.ascontiguousarray(p).tobytes() for p in (csr.data, csr.indices, csr.indptr)]
    parts.append(str((csr.shape, csr.dtype)).encode())
    schema: dict[str, Any] = {
        "features": {"dtype": str(csr.dtype), "shape": list(csr.shape), "format": "csr"}
    }
    if targets is not None:
        parts.append(_content(targets))
        schema["targets"] = {"dtype": str(targets.dtype), "shape": list(targets.shape)}
    profile = {"num_rows": int(csr.shape[0]), "num_stored": int(csr.nnz)}
    return _array_dataset(parts, schema, profile, source, name)
