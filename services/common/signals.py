"""Serving until SIGTERM/SIGINT, for the commands that run until told to stop.

CPython runs a signal's Python handler on the main thread only, between bytecodes. When the
kernel hands the signal to another thread, or it lands just before the main thread blocks, the C
handler only records it, and a main thread blocked on a lock with no timeout never looks. Under
load `modelyard up` ignored Ctrl-C that way (reproduced: SIGINT raised on a helper thread while
the main thread waited). So the main thread waits in slices and looks between them.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# How long a signal can wait to be noticed, at worst.
WAKE_SECONDS = 0.5


@contextmanager
def on_stop_signals(handler: Callable[[signal.Signals], None]) -> Iterator[None]:
    """Call `handler` on SIGTERM/SIGINT while inside (main thread only); the previous handlers
    come back after."""
    previous = {
        sig: signal.signal(sig, lambda signum, _frame: handler(signal.Signals(signum)))
        for sig in STOP_SIGNALS
    }
    try:
        yield
    finally:
        for sig, restore in previous.items():
            signal.signal(sig, restore)


def wait_for(event: threading.Event) -> None:
    """Block until `event` is set, still running signal handlers (see the module docstring)."""
    while not event.wait(WAKE_SECONDS):
        pass
