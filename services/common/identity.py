"""Who is calling: set per call by the auth interceptor, read by services to record authorship.

With authentication off every call is made by "anonymous".
"""

from __future__ import annotations

from contextvars import ContextVar

ANONYMOUS = "anonymous"

current_user: ContextVar[str] = ContextVar("modelyard_current_user", default=ANONYMOUS)


def caller() -> str:
    return current_user.get()
