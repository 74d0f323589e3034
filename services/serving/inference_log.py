"""The inference log ("inference table"): sampled request/response pairs, written off the
request path in batches.

Requests only append to a bounded in-memory queue; a writer thread stores batches every
`flush_seconds`. Under overload the queue fills and new records are dropped, counted per
endpoint (reported on the endpoint and as modelyard_serving_log_dropped_total), never silently.
"""

from __future__ import annotations

import json
import threading
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from prometheus_client import Counter as PromCounter

from modelyard.entities.serving import InferenceRecord
from modelyard.services.common.logging import get_logger

log = get_logger(__name__)

LOG_DROPPED = PromCounter(
    "modelyard_serving_log_dropped_total",
    "Inference log records dropped because the writer fell behind.",
    ["endpoint"],
)


def _jsonable(value: Any) -> Any:
    if isinstance(value, pd.DataFrame):
        return {"columns": [str(c) for c in value.columns], "data": value.to_numpy().tolist()}
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()] if value.dtype == object else value.tolist()
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def to_json(value: Any) -> str:
    return json.dumps(_jsonable(value), default=str)


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
