"""Work for a call stops when the call ends before its handler does.

A client that gives up (cancels, or its deadline passes) leaves its handler running: grpc only
marks the call inactive. A search that takes seconds would go on holding a database backend, its
memory and an RPC thread for an answer no one reads, and a client retrying a slow search piles
them up. The error interceptor records each call here (`current`); a database read or a
DuckDB query registers how to interrupt itself (`interrupted_when_call_ends`), and grpc's
termination callback runs that while the work is still going (`on_end` for a DuckDB
connection opened for one call). A statement that begins after the interrupt (the call ended
between two statements of one read) runs to its end: the drivers interrupt only what runs. Work
outside a call (start-up,
background threads) is never interrupted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import grpc


class CallEnded(Exception):
    """The call ended (cancelled, or past its deadline) before this work began or finished."""


class Call:
    """One call's end and what to interrupt at it. grpc gets a single termination callback per
    call, however many blocks register: each of a stream's requests does, and a callback per
    request would keep every finished request's data until the stream ends."""

    def __init__(self, context: grpc.ServicerContext) -> None:
        self._context = context
        # Held while interrupts run, so that a block that has left is never interrupted.
        self._lock = threading.Lock()
        self._interrupts: dict[int, Callable[[], None]] = {}
        self._next = 0
        self._watched = False
        self._ended = False

    def _end(self) -> None:
        with self._lock:
            self._ended = True
            for interrupt in self._interrupts.values():
                interrupt()
            self._interrupts.clear()

    def register(self, interrupt: Callable[[], None]) -> int:
        """Run `interrupt` when the call ends (its key, to `unregister`); CallEnded if it has."""
        with self._lock:
            if not self._watched:
                self._watched = True
                if not self._context.add_callback(self._end):
                    self._ended = True
            if self._ended:
                raise CallEnded("the call ended before its work began")
            self._next += 1
            self._interrupts[self._next] = interrupt
            return self._next

    def unregister(self, key: int) -> None:
        with self._lock:
            self._interrupts.pop(key, None)


# The call the current thread is handling, set by the error interceptor.
current: ContextVar[Call | None] = ContextVar("call", default=None)


def on_end(interrupt: Callable[[], None]) -> None:
    """Run `interrupt` (from grpc's thread) when the current call ends, however it ends: for a
    connection opened for this call alone (DuckDB's), which nothing uses after it."""
    call = current.get()
    if call is not None:
        call.register(interrupt)


@contextmanager
def interrupted_when_call_ends(interrupt: Callable[[], None]) -> Iterator[None]:
    """Run `interrupt` (from grpc's thread) if the current call ends while the block runs;
    CallEnded if it ended before.

    `interrupt` must be safe to call from another thread while the block runs (the drivers'
    cancel functions are). It is never called once the block has left, so a pooled connection
    handed to the next caller is not interrupted by this one's late end."""
    call = current.get()
    if call is None:
        yield
        return
    key = call.register(interrupt)
    try:
        yield
    finally:
        call.unregister(key)
