"""A service's identity token, read from a file that is replaced while the process runs.

In a cluster the token is a key of a Secret mounted as a volume; the chart's renewal CronJob (and
the auth pod at start) write a new token into that Secret before the old one expires, and the
kubelet swaps the mounted file in place (an atomic rename of the `..data` symlink). A token read
once at start would outlive its validity in a long-running pod: calls to the auth service fail,
revocations stop reaching the pod and audit events pile up. So the file is read again whenever it
changes, checked with one stat() per call (a few microseconds, no timers).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from modelyard.errors import FailedPrecondition
from modelyard.services.common.logging import get_logger

log = get_logger(__name__)

_SETTING = "MODELYARD_AUTH__SERVICE_TOKEN_FILE"


class TokenFile:
    """Callable giving the token in `path` as it is now; the last good one while the file is
    momentarily unreadable or empty (a renewal half-written by hand)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int, int] | None = None
        self._token: str | None = None
        if not self._reload():
            raise FailedPrecondition(
                f"the service token file {path} is missing or empty ({_SETTING}); mount the "
                "Secret with the service tokens there, or create a token with `modelyard tokens "
                "create --principal svc-<service>` and write it to that file"
            )

    def __call__(self) -> str:
        self._reload()
        assert self._token is not None  # the constructor read one
        return self._token

    def _reload(self) -> bool:
        """Read the file if it changed since the last read; False when no token is there."""
        try:
            st = os.stat(self.path)  # follows the symlinks the kubelet swaps
        except OSError as exc:
            return self._keep(f"cannot read it ({exc.strerror})")
        seen = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
        if seen == self._seen:
            return True
        with self._lock:
            if seen == self._seen:
                return True
            try:
                token = self.path.read_text().strip()
            except OSError as exc:
                return self._keep(f"cannot read it ({exc.strerror})")
            if not token:
                return self._keep("it is empty")
            if self._token is not None and token != self._token:
                log.info("service token file %s changed; calling with the new token", self.path)
            self._token, self._seen = token, seen
            return True

    def _keep(self, why: str) -> bool:
        if self._token is None:
            return False
        log.warning("service token file %s: %s; keeping the previous token", self.path, why)
        return True
