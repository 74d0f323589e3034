"""Which of grpc's I/O engines a Modelyard process runs on: the polling engine, not EventEngine.

grpcio 1.80 moved Python from its polling engine onto EventEngine. Under EventEngine a call's
bytes are read by one of grpc's own threads, which then wakes the thread waiting for the call:
one more thread hand-off per call, in the client and in the server. On a small VM that hand-off
is a cross-CPU wake-up. With the polling engine (Python's default up to grpcio 1.79) the waiting
thread reads the socket itself. On this project's 2-core benchmark machine a bare unary call's
p50 fell from 0.68 to 0.31 ms with both ends on the polling engine, and `log_metric` from 1,056 to
1,489 calls/s (bench/tracking_placement.py; bench/README.md, "Thread hand-offs").

grpc reads its experiments once, when it is first imported, so this must run before anything
imports grpc: `modelyard/__init__.py` calls it first. It leaves alone a process that has already
imported grpc or that sets GRPC_EXPERIMENTS itself (an empty value keeps grpc's defaults), and
it does not leave the variable behind for child processes.
"""

from __future__ import annotations

import os
import sys

EXPERIMENTS = "-event_engine_client,-event_engine_listener"


def use_polling_engine() -> bool:
    """Import grpc on the polling engine; False if this process had already chosen."""
    if "grpc" in sys.modules or "GRPC_EXPERIMENTS" in os.environ:
        return False
    os.environ["GRPC_EXPERIMENTS"] = EXPERIMENTS
    try:
        import grpc  # noqa: F401  (grpc reads GRPC_EXPERIMENTS here, once)
    finally:
        del os.environ["GRPC_EXPERIMENTS"]
    return True
