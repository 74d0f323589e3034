"""Dynamic batching: concurrent requests to one served model run as one model call.

Whoever finds the model idle runs the batch itself (leader/follower, no hand-off to another
thread), so a lone request pays nothing; while a call runs, new requests queue and the next
leader takes up to `max_batch_size` rows of them at once. With `max_queue_delay_micros` > 0 the
leader first waits that long for more requests to join.

Only requests whose inputs have the same columns and types (or array dtype and row shape) are
merged: a column one request left out would otherwise reach the model as NaN, and its answer
would depend on its neighbours. Merging is only right for a model that answers row by row: one
whose output has another number of rows than its input (it drops rows with NaNs, say) would
hand callers each other's rows, so such a batch is run again request by request, and the model
is never batched again. A request whose caller's deadline passes while it waits behind a slow
model leaves the queue, so callers that gave up do not hold the server's threads nor get
computed later; so does one whose call ends (the client cancelled it, or the stream it came on).
A request's own timeout (Triton's `timeout` parameter) counts from when it joins the queue: one
still waiting when it passes is answered DEADLINE_EXCEEDED without being run, as Triton's queue
policy rejects it; once in a batch, it runs to its answer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import Gauge, Histogram

from modelyard.errors import DeadlineExceeded
from modelyard.services.common.call_end import CallEnded, interrupted_when_call_ends
from modelyard.services.common.logging import get_logger
from modelyard.services.serving.model import batch_key, concat, rows
from modelyard.services.serving.statistics import InferenceStats, Timing

log = get_logger(__name__)

BATCH_SIZE = Histogram(
    "modelyard_serving_batch_size",
    "Rows per model call, by endpoint and served model.",
    ["endpoint", "served_model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
# Triton's nv_inference_pending_request_count: a queue that only grows says the model is too
# slow for its traffic (scale out, or raise max_batch_size) before callers' deadlines say it.
PENDING = Gauge(
    "modelyard_serving_pending_requests",
    "Requests waiting for their turn at the model, by endpoint and served model.",
    ["endpoint", "served_model"],
)


class _Pending:
    __slots__ = (
        "_key",
        "deadline",
        "done",
        "enqueued",
        "error",
        "expired",
        "inputs",
        "result",
        "rows",
        "timing",
    )

    def __init__(
        self,
        inputs: Any,
        deadline: float | None,
        timing: Timing | None,
        timeout: float | None = None,
    ) -> None:
        self.inputs = inputs
        self.rows = rows(inputs)
        self.enqueued = time.perf_counter_ns()
        self.timing = timing
        self._key: tuple[Any, ...] | None = None
        self.deadline = deadline  # time.monotonic() by which the caller wants its answer
        # What passing `deadline` means, for the caller: its own, or the request's timeout.
        self.expired = "the request's deadline passed"
        if timeout is not None:
            until = time.monotonic() + timeout
            if deadline is None or until < deadline:
                self.deadline = until
                self.expired = (
                    f"request timeout expired: the request's timeout ({timeout * 1e6:.0f} us, "
                    "its timeout parameter) passed"
                )
        self.done = False
        self.result: dict[str, Any] | None = None
        self.error: BaseException | None = None

    @property
    def key(self) -> tuple[Any, ...]:
        """Only requests of one key are merged. Read only when there is another request to
        merge with: a request served alone (the usual case at low load) never pays for it."""
        if self._key is None:
            self._key = batch_key(self.inputs)
        return self._key


_UNRUN = (
    "it was not run. Give it longer, or send when the model is less busy (more replicas, or a "
    "larger max batch so that the queue moves faster)"
)


class _NotRowWise(Exception):
    """The model's output rows do not match the batch's input rows."""


class DynamicBatcher:
    def __init__(
        self,
        predict: Callable[[Any], dict[str, Any]],
        max_batch_size: int = 64,
        max_queue_delay_micros: int = 0,
        labels: tuple[str, str] = ("", ""),
    ) -> None:
        self._predict = predict
        # This model version's counters (ModelStatistics): each model call, by batch size.
        self.stats = InferenceStats()
        self._max_rows = max(1, max_batch_size)
        self._delay = max_queue_delay_micros / 1e6
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._busy = False
        self._sizes = BATCH_SIZE.labels(*labels)
        # Raised and lowered, never set: a reload's old and new batcher share the labels.
        self._pending = PENDING.labels(*labels)
        self._labels = labels
        self._row_wise = True  # until a batch's output says otherwise

    def __call__(
        self,
        inputs: Any,
        deadline: float | None = None,
        timing: Timing | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """The model's outputs for `inputs`; DeadlineExceeded once `deadline` (a monotonic time)
        passes, or `timeout` seconds from now, while the request still waits for its turn.
        `timing` gets the time the request queued and its batch took."""
        item = _Pending(inputs, deadline, timing, timeout)
        with interrupted_when_call_ends(lambda: self._abandon(item)):
            with self._cond:
                self._queue.append(item)
                self._pending.inc()
                self._cond.notify_all()  # a leader waiting out max_queue_delay may now be full
            return self._wait_or_lead(item)

    def _wait_or_lead(self, item: _Pending) -> dict[str, Any]:
        deadline = item.deadline
        while True:
            with self._cond:
                while not item.done and self._busy:
                    if deadline is None:
                        self._cond.wait()
                    elif time.monotonic() < deadline:
                        # Condition.wait refuses more than TIMEOUT_MAX (OverflowError).
                        self._cond.wait(min(deadline - time.monotonic(), threading.TIMEOUT_MAX))
                    else:
                        self._give_up(item)
                if item.done:
                    return self._outcome(item)
                self._busy = True  # this thread leads the next batch
                if self._delay and self._row_wise:
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

    def _abandon(self, item: _Pending) -> None:
        """The item's call ended (from grpc's thread): out of the queue, so no model call
        computes what nobody reads (a batch under way finishes unread)."""
        with self._cond:
            if item in self._queue:
                self._queue.remove(item)
                self._pending.dec()
                item.error = CallEnded("the call ended while the request waited for the model")
                item.done = True
                self._cond.notify_all()

    def _give_up(self, item: _Pending) -> None:
        """The caller's deadline passed: leave the queue (a batch under way finishes unread)."""
        if item in self._queue:
            self._queue.remove(item)
            self._pending.dec()
        raise DeadlineExceeded(f"{item.expired} while it waited for the model; {_UNRUN}")

    def _take(self) -> list[_Pending]:
        """The next batch: the oldest request and, in order, those of its key that fit. Others
        stay queued, in order, for a later batch."""
        batch: list[_Pending] = []
        total = 0
        now = time.monotonic()
        i = 0
        while i < len(self._queue):
            item = self._queue[i]
            if item.deadline is not None and item.deadline <= now:
                # Its thread has not woken to leave yet: do not compute what nobody will read.
                del self._queue[i]
                self._pending.dec()
                item.error = DeadlineExceeded(f"{item.expired} before its turn; {_UNRUN}")
                item.done = True
                continue
            if batch and item.key != batch[0].key and self._row_wise:
                i += 1
                continue
            if batch and (not self._row_wise or total + item.rows > self._max_rows):
                break
            del self._queue[i]
            self._pending.dec()
            batch.append(item)
            total += item.rows
        return batch

    def _run(self, batch: list[_Pending]) -> None:
        if not batch:
            return
        total = sum(item.rows for item in batch)
        self._sizes.observe(total)
        started = time.perf_counter_ns()
        try:
            if len(batch) == 1:
                merged_at = started
                results = [self._predict(batch[0].inputs)]
                predicted = time.perf_counter_ns()
            else:
                joined = concat([item.inputs for item in batch])
                merged_at = time.perf_counter_ns()
                merged = self._predict(joined)
                predicted = time.perf_counter_ns()
                if not all(getattr(v, "ndim", 0) >= 1 and len(v) == total for v in merged.values()):
                    raise _NotRowWise
                results, start = [], 0
                for item in batch:
                    results.append({k: v[start : start + item.rows] for k, v in merged.items()})
                    start += item.rows
        except BaseException as exc:
            if isinstance(exc, _NotRowWise):
                # The model did run, though its answer is thrown away.
                self.stats.executed(total, merged_at - started, predicted - merged_at, 0)
                self._row_wise = False  # one request at a time from now on
                log.warning(
                    "endpoint %s, served model %s: the model's output rows differ from its "
                    "input rows, so its requests are no longer batched",
                    *self._labels,
                )
            if len(batch) > 1:
                # One bad request must not fail its neighbours: rerun each on its own.
                for item in batch:
                    self._run([item])
                return
            batch[0].error = exc
            batch[0].done = True
            return
        ended = time.perf_counter_ns()
        self.stats.executed(total, merged_at - started, predicted - merged_at, ended - predicted)
        for item, result in zip(batch, results, strict=True):
            if item.timing is not None:
                item.timing.queue_ns = started - item.enqueued
                item.timing.infer_ns = predicted - merged_at
                item.timing.output_ns = ended - predicted
            item.result = result
            item.done = True

    @staticmethod
    def _outcome(item: _Pending) -> dict[str, Any]:
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result
