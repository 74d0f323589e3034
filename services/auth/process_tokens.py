"""The tokens the services of one process call each other with, when the auth service runs in
that process (`modelyard up --auth`).

A token minted once for the life of the process had to outlive any uptime (366 days), and a
process that died without stopping (kill -9, the OOM killer, a power cut) never revoked it: a
valid service credential, with USE on every model and feature view, was left behind by every
such crash. These live PROCESS_TOKEN_TTL and are renewed at half that, so a crash leaves one
valid for at most an hour; a clean stop revokes them at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from modelyard.entities.auth import TokenInfo

PROCESS_TOKEN_TTL = 3600.0

Mint = Callable[[], tuple[str, TokenInfo]]


class ProcessToken:
    """Callable giving the current token of one service, minting the next when less than half
    of the current one's life is left. The token it replaces stays valid until it expires, so
    a call that picked it up just before a renewal still passes."""

    def __init__(
        self,
        mint: Mint,
        revoke: Callable[[str], None],
        delete: Callable[[list[str]], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._mint, self._revoke, self._delete, self._clock = mint, revoke, delete, clock
        self._lock = threading.Lock()
        self._live: list[TokenInfo] = []  # oldest first; the last is the one handed out
        self._token = ""
        self._renew_at = 0.0
        self._renew()

    def __call__(self) -> str:
        if self._clock() >= self._renew_at:
            with self._lock:
                if self._clock() >= self._renew_at:
                    self._renew()
        return self._token

    def _renew(self) -> None:
        token, info = self._mint()
        now = self._clock()
        self._renew_at = now + (info.expires - info.created) / 2000
        # Expired rows are dead weight: no check can accept them, revoked or not.
        expired = [t.token_id for t in self._live if t.expires <= now * 1000]
        if expired:
            self._delete(expired)
        self._live = [t for t in self._live if t.token_id not in expired] + [info]
        self._token = token

    def revoke(self) -> None:
        """Revoke every token handed out that may still be valid (the process is stopping)."""
        with self._lock:
            for info in self._live:
                self._revoke(info.token_id)
            self._live.clear()
