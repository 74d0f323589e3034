"""Who is calling: set per call by the auth interceptor, read by services for authorship and
access decisions.

With authentication off the caller is "anonymous" and nothing is restricted.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Identity:
    name: str
    roles: frozenset[str] = field(default_factory=frozenset)
    # The bearer token the call came with, to act on the caller's behalf towards other services.
    token: str | None = None
    # False when the server does not check tokens: every call may do everything.
    enforced: bool = False

    @property
    def unrestricted(self) -> bool:
        return not self.enforced or "admin" in self.roles


ANONYMOUS = Identity("anonymous")

_current: ContextVar[Identity] = ContextVar("modelyard_identity", default=ANONYMOUS)


def current() -> Identity:
    return _current.get()


def caller() -> str:
    return _current.get().name


def set_current(identity: Identity) -> object:
    return _current.set(identity)


def reset_current(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]
