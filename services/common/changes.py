"""The change counter that streaming watches wait on (registry events, serving endpoints)."""

from __future__ import annotations

import threading


class ChangeCounter:
    """Writers `bump` it after each change a watch could see. A watch reads `current()` before
    it looks at the state and then waits past that count, so a change made in between still
    wakes it. `close` wakes every wait for good, for a server that is shutting down."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._count = 0
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def current(self) -> int:
        with self._cond:
            return self._count

    def bump(self) -> None:
        with self._cond:
            self._count += 1
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def wait_past(self, seen: int, timeout: float) -> int:
        """Wait until the count is past `seen`, the counter is closed or `timeout` seconds
        pass (watches re-check what a counter cannot see); return the count then."""
        with self._cond:
            self._cond.wait_for(lambda: self._count != seen or self._closed, timeout=timeout)
            return self._count
