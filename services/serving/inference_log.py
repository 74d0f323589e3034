"""The inference log ("inference table"): sampled request/response pairs, written off the
request path in batches.

Requests only append to a bounded in-memory queue; a writer thread stores batches every
`flush_seconds`. Under overload the queue fills and new records are dropped, counted per
endpoint (reported on the endpoint and as modelyard_serving_log_dropped_total), never silently.

A record's inputs and its outputs are each strict JSON of at most MAX_LOGGED_BYTES, so logging
costs the request path no more than that and every record can be read back: a tensor that does
not fit, or an empty one of two or more dimensions, is logged as its summary
{"shape": [...], "dtype": ..., "truncated": true}. NaN and infinities are written as protobuf's
JSON mapping writes them ("NaN", "Infinity", "-Infinity"), bytes that are not UTF-8 as
{"base64": ...}.
"""

from __future__ import annotations

import base64
import json
import math
import threading
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from prometheus_client import Counter as PromCounter

from modelyard.convert.common import non_finite_text
from modelyard.entities.serving import InferenceRecord
from modelyard.services.common.logging import get_logger

log = get_logger(__name__)

LOG_DROPPED = PromCounter(
    "modelyard_serving_log_dropped_total",
    "Inference log records dropped because the writer fell behind.",
    ["endpoint"],
)

# For a record's inputs, and again for its outputs: ~13,000 numbers, plenty to debug a request,
# while a GetInferenceLog page still holds several records.
MAX_LOGGED_BYTES = 256 * 1024
# Elements converted at a time, so that a tensor too big to log costs little more than the limit.
_CHUNK = 4096


class _TooBig(Exception):
    """A tensor's JSON would not fit the record."""


def _summary(value: Any) -> dict[str, Any]:
    if isinstance(value, pd.DataFrame):
        columns = [str(c) for c in value.columns]
        return {"columns": columns, "shape": list(value.shape), "truncated": True}
    if isinstance(value, np.ndarray):
        return {"shape": list(value.shape), "dtype": str(value.dtype), "truncated": True}
    return {"type": type(value).__name__, "truncated": True}


def _scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return non_finite_text(value)
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(value).decode()}
    return value


def _plain(chunk: np.ndarray, budget: int) -> Any:
    """The chunk as nested lists of JSON's types (_TooBig once its text exceeds `budget`)."""
    if chunk.dtype.kind in "biu" or (chunk.dtype.kind == "f" and np.isfinite(chunk).all()):
        return chunk.tolist()
    flat = chunk.reshape(-1)
    if sum(len(e) for e in flat if isinstance(e, bytes | str)) > budget:
        raise _TooBig
    out = np.empty(flat.shape, dtype=object)
    for i, element in enumerate(flat):
        out[i] = _scalar(element)
    return out.reshape(chunk.shape).tolist()


def _array(value: np.ndarray, budget: int) -> str:
    """The array's JSON, built a chunk of rows at a time so that no more than about `budget`
    bytes are spent on an array that does not fit (then _TooBig)."""
    if value.ndim == 0:
        return _dumps(_scalar(value.item()))
    if value.size == 0 and value.ndim > 1:
        # [n, m, 0] holds nothing, yet as lists it is n * m of them: never build those.
        return _dumps(_summary(value))
    if value.size * 2 > budget:  # an element takes 2 bytes of JSON at least ("0,")
        raise _TooBig
    step = max(1, _CHUNK * len(value) // max(1, value.size))
    pieces, spent = [], 2
    for start in range(0, len(value), step):
        piece = _dumps(_plain(value[start : start + step], budget))[1:-1]
        spent += len(piece) + 2
        if spent > budget:
            raise _TooBig
        pieces.append(piece)
    return "[" + ", ".join(pieces) + "]"


def _tensor(value: Any, budget: int) -> str:
    if isinstance(value, pd.DataFrame):
        columns = _dumps([str(c) for c in value.columns])
        return f'{{"columns": {columns}, "data": {_array(value.to_numpy(), budget)}}}'
    if isinstance(value, np.ndarray):
        return _array(value, budget)
    if isinstance(value, list | tuple):
        return _array(np.asarray(value, dtype=object), budget)
    return _dumps(_scalar(value))


def _dumps(value: Any) -> str:
    # ASCII (ensure_ascii), so its length in characters is its length in bytes.
    return json.dumps(value, default=str, allow_nan=False)


def to_json(values: Mapping[str, Any], limit: int = MAX_LOGGED_BYTES) -> str:
    """`values` (tensors by name) as JSON of at most `limit` bytes: the largest tensors are
    replaced by their summaries until the rest fits."""
    parts: dict[str, str] = {}
    for name, value in values.items():
        try:
            parts[name] = _tensor(value, limit)
        except _TooBig:
            parts[name] = _dumps(_summary(value))
    keys = {name: _dumps(str(name)) for name in parts}
    size = 2 + sum(len(keys[n]) + len(p) + 4 for n, p in parts.items())
    for name in sorted(parts, key=lambda n: len(parts[n]), reverse=True):
        if size <= limit:
            break
        summary = _dumps(_summary(values[name]))
        size += len(summary) - len(parts[name])
        parts[name] = summary
    if size > limit:  # so many tensors that even their summaries do not fit
        return _dumps({"tensors": len(parts), "truncated": True})
    return "{" + ", ".join(f"{keys[n]}: {p}" for n, p in parts.items()) + "}"


class InferenceLogWriter:
    def __init__(
        self,
        sink: Callable[[Sequence[InferenceRecord]], None],
        flush_seconds: float = 0.5,
        max_pending: int = 50_000,
    ) -> None:
        self._sink = sink
        self._flush = flush_seconds
        self._max = max_pending
        self._pending: deque[InferenceRecord] = deque()
        self._cond = threading.Condition()
        # Held while a batch is taken and stored, so that flush() also waits for a batch the
        # writer thread took just before: after flush() every recorded request is readable.
        self._writing = threading.Lock()
        self._closed = False
        self.dropped: Counter[str] = Counter()
        self._thread = threading.Thread(
            target=self._loop, name="modelyard-inference-log", daemon=True
        )
        self._thread.start()

    def record(self, record: InferenceRecord) -> None:
        with self._cond:
            if len(self._pending) >= self._max:
                self.dropped[record.endpoint] += 1
                LOG_DROPPED.labels(record.endpoint).inc()
                return
            self._pending.append(record)

    def flush(self) -> None:
        """Store every record made so far, including a batch the writer thread is storing."""
        with self._writing:
            with self._cond:
                batch = list(self._pending)
                self._pending.clear()
            self._write(batch)

    def _write(self, batch: list[InferenceRecord]) -> None:
        if not batch:
            return
        try:
            self._sink(batch)
        except Exception:
            log.exception("could not write %d inference log records; dropping them", len(batch))
            for record in batch:
                self.dropped[record.endpoint] += 1
                LOG_DROPPED.labels(record.endpoint).inc()

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait(self._flush)
                closed = self._closed
            self.flush()
            if closed:
                return

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=10)
        self.flush()
