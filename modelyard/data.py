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


def _schema(df: pd.DataFrame) -> str:
    return json.dumps({"columns": [{"name": str(c), "type": str(t)} for c, t in df.dtypes.items()]})


def from_pandas(
    df: pd.DataFrame,
    source: str | None = None,
    name: str | None = None,
    targets: str | None = None,
) -> Dataset:
    hashed = pd.util.hash_pandas_object(df, index=False).to_numpy()
    h = hashlib.sha256(hashed.tobytes())
    h.update(json.dumps([str(c) for c in df.columns]).encode())
    digest = h.hexdigest()[:16]
    profile: dict[str, Any] = {"num_rows": len(df), "num_elements": int(df.size)}
    if targets:
        profile["targets"] = targets
    return Dataset(
        name=name or f"dataset-{digest[:8]}",
        digest=digest,
        source_type="uri" if source else "code",
        source=json.dumps({"uri": source}) if source else "{}",
        schema=_schema(df),
        profile=json.dumps(profile),
    )


def from_numpy(
    features: np.ndarray,
    source: str | None = None,
    name: str | None = None,
    targets: np.ndarray | None = None,
) -> Dataset:
    h = hashlib.sha256(np.ascontiguousarray(features).tobytes())
    h.update(str((features.shape, features.dtype)).encode())
    if targets is not None:
        h.update(np.ascontiguousarray(targets).tobytes())
    digest = h.hexdigest()[:16]
    schema = {"features": {"dtype": str(features.dtype), "shape": list(features.shape)}}
    if targets is not None:
        schema["targets"] = {"dtype": str(targets.dtype), "shape": list(targets.shape)}
    return Dataset(
        name=name or f"dataset-{digest[:8]}",
        digest=digest,
        source_type="uri" if source else "code",
        source=json.dumps({"uri": source}) if source else "{}",
        schema=json.dumps(schema),
        profile=json.dumps({"num_rows": int(features.shape[0]) if features.ndim else 1}),
    )
