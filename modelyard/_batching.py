"""Background batching of metric logging for the fluent API (opt-in, as in MLflow).

Metrics queue up and a daemon thread sends them with LogBatch (at most 1000 per call) every
`interval` seconds or as soon as a batch is full. `flush()` blocks until everything queued so far
is acknowledged and re-raises the first error the thread met, so `end_run()` and interpreter
exit lose nothing silently.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Sequence

from modelyard.entities import Metric

MAX_BATCH = 1000

Sender = Callable[[str, Sequence[Metric]], None]


class MetricBatcher:
    def __init__(self, send: Sender, interval: float = 0.5) -> None:
        self._send = send
        self._interval = interval
        self._pending: dict[str, list[Metric]] = defaultdict(list)
        self._count = 0
        self._cond = threading.Condition()
        self._in_flight = 0
        self._error: BaseException | None = None
        self._closed = False
        self._flush_requested = False
        self._thread = threading.Thread(target=self._loop, name="modelyard-metrics", daemon=True)
        self._thread.start()

    def add(self, run_id: str, metric: Metric) -> None:
        with self._cond:
            self._raise_pending_error()
            self._pending[run_id].append(metric)
            self._count += 1
            if self._count >= MAX_BATCH:
                self._cond.notify_all()

    def flush(self) -> None:
        """Wait until every metric added before this call is sent; raise what went wrong."""
        with self._cond:
            self._flush_requested = True
            self._cond.notify_all()
            self._cond.wait_for(lambda: (not self._count and not self._in_flight) or self._closed)
            self._raise_pending_error()

    def close(self) -> None:
        self.flush()
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()

    def _raise_pending_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _take(self) -> list[tuple[str, list[Metric]]]:
        batches = []
        for run_id, items in self._pending.items():
            for start in range(0, len(items), MAX_BATCH):
                batches.append((run_id, items[start : start + MAX_BATCH]))
        self._pending.clear()
        self._in_flight = self._count
        self._count = 0
        return batches

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: self._count >= MAX_BATCH or self._closed or self._flush_requested,
                    self._interval,
                )
                self._flush_requested = False
                if self._closed and not self._count:
                    return
                batches = self._take()
            try:
                for run_id, items in batches:
                    self._send(run_id, items)
            except BaseException as exc:  # surfaced to the caller by the next add()/flush()
                with self._cond:
                    self._error = self._error or exc
            finally:
                with self._cond:
                    self._in_flight = 0
                    self._cond.notify_all()
