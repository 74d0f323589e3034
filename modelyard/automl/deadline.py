"""Stop a trial's training when the AutoML time budget runs out, even mid-fit.

Checking the clock between steps is not enough: one fit (a forest on a large, sparse table) can
take longer than the whole budget. At the deadline `OutOfTime` is raised into whatever Python
code the trial's thread is running: in the main thread of a POSIX process by a real-time timer
(SIGALRM), which also wakes a blocking wait; in any other thread (a notebook's worker, a web
handler, a job runner's pool), where signals never arrive, by a timer thread that sets the
exception on the trial's thread (CPython's PyThreadState_SetAsyncExc), which raises it as soon
as that thread runs Python again. The fits AutoML runs (forests tree by tree, boosting round by
round, the solvers' iterations, the statistical models) all return to Python often, so they stop
within moments either way. A single call into compiled code stops only when it returns: a kernel
SVM's fit is one, so families.SVM_MAX_ROWS keeps it short. Where neither way exists (another
Python implementation) the budget is checked between steps only.
"""

from __future__ import annotations

import ctypes
import signal
import sys
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


def _can_signal() -> bool:
    if not hasattr(signal, "setitimer"):
        return False
    if threading.current_thread() is not threading.main_thread():
        return False
    return signal.getsignal(signal.SIGALRM) is not None  # None: set outside Python, unrestorable


def _can_raise_in_thread() -> bool:
    return sys.implementation.name == "cpython" and hasattr(ctypes, "pythonapi")


def _set_async_exc(thread_id: int, exc: type[BaseException] | None) -> int:
    """Set (`exc`) or clear (None) the exception a thread raises when it next runs Python.
    Arguments as ctypes objects: setting argtypes on the shared pythonapi would change the
    function for every other caller in the process."""
    return int(
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(thread_id), None if exc is None else ctypes.py_object(exc)
        )
    )


@contextmanager
def interrupt_at(deadline: float | None) -> Iterator[None]:
    """Raise `OutOfTime` in the block once `time.monotonic()` passes `deadline` (None: never),
    in whichever thread runs it. A SIGALRM timer the caller armed (a test's timeout) keeps its
    handler and its time: due first, it is left to fire; due later, it is re-armed on the way
    out."""
    if deadline is None:
        yield
        return
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise OutOfTime()
    if _can_signal():
        with _alarm(remaining):
            yield
    elif _can_raise_in_thread():
        with _raise_in_this_thread(remaining):
            yield
    else:
        yield


@contextmanager
def _alarm(remaining: float) -> Iterator[None]:
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


@contextmanager
def _raise_in_this_thread(remaining: float) -> Iterator[None]:
    """Raise `OutOfTime` in the calling thread after `remaining` seconds, if it is still in the
    block. The lock makes leaving the block and firing exclusive: an exception set just before
    the block was left, and not raised yet, is cleared, so it never escapes into the caller."""
    target = threading.get_ident()
    lock = threading.Lock()
    inside, fired = [True], [False]

    def fire() -> None:
        with lock:
            if inside[0]:
                fired[0] = _set_async_exc(target, OutOfTime) == 1

    timer = threading.Timer(remaining, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        with lock:
            inside[0] = False
            if fired[0]:
                _set_async_exc(target, None)
