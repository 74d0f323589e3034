"""Dynamic batching: concurrent requests to one served model run as one model call.

Whoever finds the model idle runs the batch itself (leader/follower, no hand-off to another
thread), so a lone request pays nothing; while a call runs, new requests queue and the next
leader takes up to `max_batch_size` rows of them at once. With `max_queue_delay_micros` > 0 the
leader first waits that long for more requests to join.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from prometheus_client import Histogram

from modelyard.services.serving.model import concat, rows

BATCH_SIZE = Histogram(
    "modelyard_serving_batch_size",
    "Rows per model call, by endpoint and served model.",
    ["endpoint", "served_model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)


class _Pending:
    __slots__ = ("done", "error", "inputs", "result", "rows")

    def __init__(self, inputs: Any) -> None:
        self.inputs = inputs
        self.rows = rows(inputs)
        self.done = False
        self.result: dict[str, Any] | None = None
        self.error: BaseException | None = None


class DynamicBatcher:
    def __init__(
        self,
        predict: Callable[[Any], dict[str, Any]],
        max_batch_size: int = 64,
        max_queue_delay_micros: int = 0,
        labels: tuple[str, str] = ("", ""),
    ) -> None:
        self._predict = predict
        self._max_rows = max(1, max_batch_size)
        self._delay = max_queue_delay_micros / 1e6
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._busy = False
        self._sizes = BATCH_SIZE.labels(*labels)

    def __call__(self, inputs: Any) -> dict[str, Any]:
        item = _Pending(inputs)
        with self._cond:
            self._queue.append(item)
            self._cond.notify_all()  # a leader waiting out max_queue_delay may now be full
        while True:
            with self._cond:
                while not item.done and self._busy:
                    self._cond.wait()
                if item.done:
                    return self._outcome(item)
                self._busy = True  # this thread leads the next batch
                if self._delay:
                    # Give concurrent requests a moment to join, unless the batch is full.
                    self._cond.wait_for(
                        lambda: sum(p.rows for p in self._queue) >= self._max_rows, self._delay
                    )
                batch = self._take()
            try:
                self._run(batch)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _take(self) -> list[_Pending]:
        batch: list[_Pending] = []
        total = 0
        while self._queue and (not batch or total + self._queue[0].rows <= self._max_rows):
            item = self._queue.pop(0)
            batch.append(item)
            total += item.rows
        return batch

    def _run(self, batch: list[_Pending]) -> None:
        self._sizes.observe(sum(item.rows for item in batch))
        try:
            if len(batch) == 1:
                results = [self._predict(batch[0].inputs)]
            else:
                merged = self._predict(concat([item.inputs for item in batch]))
                results, start = [], 0
                for item in batch:
                    results.append({k: v[start : start + item.rows] for k, v in merged.items()})
                    start += item.rows
        except BaseException as exc:
            if len(batch) > 1:
                # One bad request must not fail its neighbours: rerun each on its own.
                for item in batch:
                    self._run([item])
                return
            batch[0].error = exc
            batch[0].done = True
            return
        for item, result in zip(batch, results, strict=True):
            item.result = result
            item.done = True

    @staticmethod
    def _outcome(item: _Pending) -> dict[str, Any]:
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result
