"""Structured logging: standard-library loggers, rendered by structlog as JSON (clusters) or
for a console (laptop).

Code logs through `get_logger(__name__)` (a plain `logging.Logger`, `extra={...}` for fields), so
libraries and tests see ordinary log records. `request_id` is a context variable the error
interceptor sets; every line written while a call is handled carries it.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


def _add_request_id(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    rid = request_id.get()
    if rid:
        event.setdefault("request_id", rid)
    return event


def configure(level: str = "INFO", fmt: str = "console") -> None:
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.ExtraAdder(),
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_request_id,
    ]
    renderer = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info if fmt == "json" else _passthrough,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def _passthrough(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    return event


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)
