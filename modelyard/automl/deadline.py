"""Stop a trial's training when the AutoML time budget runs out, even mid-fit.

Checking the clock between steps is not enough: one fit (a forest on a large, sparse table) can
take longer than the whole budget. In the main thread of a POSIX process, a real-time timer
(SIGALRM) raises `OutOfTime` at the deadline into whatever Python code is running; the fits
AutoML runs (forests tree by tree, boosting round by round, the solvers' iterations, the
statistical models) all return to Python often, so they stop within moments. Elsewhere (another
thread, Windows) the budget is checked between steps only.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class OutOfTime(BaseException):
    """Raised into a running trial at the deadline. A BaseException, so that no library's
    `except Exception` around a fit swallows it."""


def _raise_out_of_time(signum: int, frame: FrameType | None) -> None:
    raise OutOfTime()


def _can_interrupt() -> bool:
    if not hasattr(signal, "setitimer"):
        return False
    if threading.current_thread() is not threading.main_thread():
        return False
    return signal.getsignal(signal.SIGALRM) is not None  # None: set outside Python, unrestorable


@contextmanager
def interrupt_at(deadline: float | None) -> Iterator[None]:
    """Raise `OutOfTime` in the block once `time.monotonic()` passes `deadline` (None: never),
    where the process allows it. A timer the caller armed (a test's timeout) keeps its handler
    and its time: due first, it is left to fire; due later, it is re-armed on the way out."""
    if deadline is None or not _can_interrupt():
        yield
        return
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise OutOfTime()
    theirs, their_interval = signal.getitimer(signal.ITIMER_REAL)
    if theirs and theirs <= remaining:
        yield
        return
    armed = time.monotonic()
    previous = signal.signal(signal.SIGALRM, _raise_out_of_time)
    try:
        signal.setitimer(signal.ITIMER_REAL, remaining)
        yield
    finally:
        try:
            signal.setitimer(signal.ITIMER_REAL, 0)
        finally:  # even when the alarm fires just as the block ends
            signal.signal(signal.SIGALRM, previous)
            if theirs:
                left = theirs - (time.monotonic() - armed)
                signal.setitimer(signal.ITIMER_REAL, max(left, 1e-6), their_interval)
