"""Work for a call stops when the call ends before its handler does.

A client that gives up (cancels, or its deadline passes) leaves its handler running: grpc only
marks the call inactive. A search that takes seconds would go on holding a database backend, its
memory and an RPC thread for an answer no one reads, and a client retrying a slow search piles
them up. The error interceptor records each call's context here (`current`); a database read or a
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

# The context of the call the current thread is handling, set by the error interceptor.
current: ContextVar[grpc.ServicerContext | None] = ContextVar("call_context", default=None)


class CallEnded(Exception):
    """The call ended (cancelled, or past its deadline) before this work began or finished."""


def on_end(interrupt: Callable[[], None]) -> None:
    """Run `interrupt` (from grpc's thread) when the current call ends, however it ends: for a
    connection opened for this call alone (DuckDB's), which nothing uses after it."""
    context = current.get()
    if context is not None and not context.add_callback(interrupt):
        raise CallEnded("the call ended before its work began")


@contextmanager
def interrupted_when_call_ends(interrupt: Callable[[], None]) -> Iterator[None]:
    """Run `interrupt` (from grpc's thread) if the current call ends while the block runs.

    `interrupt` must be safe to call from another thread while the block's statement runs (the
    drivers' cancel functions are). It is never called once the block has left, so a pooled
    connection handed to the next caller is not interrupted by this one's late end."""
    context = current.get()
    if context is None:
        yield
        return
    lock = threading.Lock()
    running = True

    def on_end() -> None:
        with lock:
            if running:
                interrupt()

    if not context.add_callback(on_end):
        raise CallEnded("the call ended before its work began")
    try:
        yield
    finally:
        with lock:
            running = False
