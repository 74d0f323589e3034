"""A logging handler a test can wait on: what a server thread logs arrives after the call ends."""

from __future__ import annotations

import logging
import threading


class LogRecords(logging.Handler):
    """Keeps a logger's records; `first` is set by the first (a test may swap in its own event)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.first = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.first.set()
