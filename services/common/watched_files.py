"""Files a running server reads again when they change.

In Kubernetes, TLS keys and certificates are a mounted Secret: cert-manager renews the certificate
and the kubelet swaps the new files in (atomically, through the volume's ..data link) while the
pod runs. A server that read them once would present the certificate it started with until it
expired. Checking costs one stat() per file; servers check per new connection, never per call.
"""

from __future__ import annotations

import os
from pathlib import Path


class WatchedFiles:
    """Whether any of `paths` changed since the last look (inode, mtime, size: the kubelet's
    swap gives each file a new inode)."""

    def __init__(self, *paths: Path) -> None:
        self.paths = tuple(Path(p) for p in paths)
        self._seen = self._stamp()

    def _stamp(self) -> tuple[tuple[int, int, int, int], ...]:
        stats = [os.stat(p) for p in self.paths]  # follows the links the kubelet swaps
        return tuple((s.st_dev, s.st_ino, s.st_mtime_ns, s.st_size) for s in stats)

    def changed(self) -> bool:
        """True once per change; raises OSError while a file cannot be read (mid-change)."""
        stamp = self._stamp()
        if stamp == self._seen:
            return False
        self._seen = stamp
        return True

    def retry(self) -> None:
        """Count the files as changed at the next look (reading them after a change failed)."""
        self._seen = ()
