"""The audit trail of mutating calls: who, which RPC, which resource, the outcome, when.

Calls never wait for the audit log: events queue in memory and a background thread hands them to
the sink (the auth service) every second. If the sink is unreachable events wait in the queue;
past `max_pending` the oldest are dropped and counted (modelyard_audit_dropped_total). A crash can
lose at most the last second of audit events; the calls' own writes are unaffected.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence

from prometheus_client import Counter

from modelyard.entities.auth import AuditEvent
from modelyard.services.common.logging import get_logger

log = get_logger(__name__)

AUDIT_DROPPED = Counter(
    "modelyard_audit_dropped_total", "Audit events dropped because the queue was full."
)

Sink = Callable[[Sequence[AuditEvent]], None]


class AuditRecorder:
    def __init__(self, sink: Sink, flush_seconds: float = 1.0, max_pending: int = 100_000) -> None:
        self._sink = sink
        self._flush = flush_seconds
        self._max = max_pending
        self._pending: deque[AuditEvent] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="modelyard-audit", daemon=True)
        self._thread.start()

    def record(self, event: AuditEvent) -> None:
        with self._cond:
            if len(self._pending) >= self._max:
                self._pending.popleft()
                AUDIT_DROPPED.inc()
            self._pending.append(event)

    def flush(self) -> None:
        """Send everything queued now (used at shutdown and by tests)."""
        with self._cond:
            batch = list(self._pending)
            self._pending.clear()
        self._send(batch)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=10)
        self.flush()

    def _send(self, batch: list[AuditEvent]) -> None:
        if not batch:
            return
        try:
            self._sink(batch)
        except Exception:
            log.exception("could not record %d audit events; will retry", len(batch))
            with self._cond:
                self._pending.extendleft(reversed(batch))
                while len(self._pending) > self._max:
                    self._pending.pop()
                    AUDIT_DROPPED.inc()

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait(self._flush)
                if self._closed:
                    return
                batch = list(self._pending)
                self._pending.clear()
            self._send(batch)
