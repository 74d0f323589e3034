"""Revocations and roles, cached in every process and refreshed from the auth service.

Tokens verify offline; what can change after issue (revocation, disabled principals, roles) is
pulled every `refresh_seconds`. A revoked token stops working within that interval.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from modelyard.services.common.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class PrincipalState:
    roles: frozenset[str]
    disabled: bool = False


@dataclass(frozen=True)
class Snapshot:
    revoked: frozenset[str] = frozenset()
    principals: dict[str, PrincipalState] = field(default_factory=dict)


class AuthState:
    def __init__(self, fetch: Callable[[], Snapshot], refresh_seconds: float = 5.0) -> None:
        self._fetch = fetch
        self._refresh = refresh_seconds
        self._snapshot = Snapshot()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._generation = 0
        self._lock = threading.Lock()

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def refresh_now(self) -> None:
        self._snapshot = self._fetch()
        self._generation += 1

    def refresh_soon(self) -> Snapshot:
        """Refresh now, once for all threads asking together (a token of a principal created a
        moment ago should not wait for the next poll)."""
        seen = self._generation
        with self._lock:
            if self._generation == seen:
                self.refresh_now()
        return self._snapshot

    def start(self) -> None:
        self.refresh_now()
        self._thread = threading.Thread(target=self._loop, name="modelyard-auth-state", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._refresh):
            try:
                self.refresh_now()
            except Exception:  # keep serving with the last state; say why in the log
                log.exception("could not refresh the auth state; keeping the previous one")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
