"""Who each browser session is, kept in the UI's process rather than in its cookie.

The session cookie is signed, not encrypted: a token in it could be read by anyone who sees the
cookie, and a copy of it would keep working until it expired, whatever logout did. So the cookie
carries only a random session id; the caller's identity and API token stay here, and logging out
(or the services refusing the token) forgets them, after which a copied cookie is worth nothing.
Sessions end when the process restarts; several UI replicas need sticky sessions.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

LIFETIME = 12 * 3600  # seconds from signing in; the cookie's max-age too
CAPACITY = 10_000  # sessions kept; past it, the least recently used is forgotten


@dataclass(frozen=True, slots=True)
class Identity:
    user: str
    auth: bool  # whether the services check tokens
    token: str | None = None  # the API token pasted at login; None when auth is off


class SessionStore:
    """Identities by random session id, each for LIFETIME seconds at most."""

    def __init__(self, lifetime: float = LIFETIME, capacity: int = CAPACITY) -> None:
        self._lifetime = lifetime
        self._capacity = capacity
        self._sessions: OrderedDict[str, tuple[float, Identity]] = OrderedDict()
        self._lock = threading.Lock()  # pages run on Starlette's thread pool

    def start(self, identity: Identity) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[sid] = (time.monotonic() + self._lifetime, identity)
            while len(self._sessions) > self._capacity:
                self._sessions.popitem(last=False)
        return sid

    def get(self, sid: str | None) -> Identity | None:
        if sid is None:
            return None
        with self._lock:
            entry = self._sessions.get(sid)
            if entry is None:
                return None
            if entry[0] < time.monotonic():
                del self._sessions[sid]
                return None
            self._sessions.move_to_end(sid)
            return entry[1]

    def end(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)
