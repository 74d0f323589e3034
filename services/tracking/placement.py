"""Moving uploaded artifact bytes into place so that a file's record always describes its bytes.

Every upload is staged under a key of its own first (`staged_upload_key`), then placed at the
artifact's key and recorded. Per path, a lease in the metadata DB (`artifact_placements`) orders
the steps: take the lease (committed), place the bytes, record the file and delete the lease in
one transaction, delete the staged object. Hence:

- A crash between placing and recording leaves the lease, which names the staged bytes and their
  digest. Whoever meets it expired (the next upload, read or delete of the path, or the sweep at
  start-up) finishes the placement: records the bytes if the path holds them, places them again
  from the staged object if it is still there, and otherwise drops the lease.
- A second upload of a path while a lease is live gets ABORTED (the SDK retries it), so two
  uploads can no longer interleave place A, place B, record B, record A.
- A read of a path whose lease is live gets UNAVAILABLE: its bytes may already be the new ones
  while the record is the old one. A read also checks, once the bytes are open, that no placement
  began meanwhile (same record, no lease), so it never pairs new bytes with an old digest.

The lease lasts 15 s plus 100 ms per MB (10 MB/s): far beyond a rename, a server-side copy and two
transactions, yet short, as a path whose placement died answers "retry" until then (the SDK waits
it out). Its holder is presumed dead once it expires; one merely stalled that long could still
place its bytes after a successor did, which the expiry is sized to keep away.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace

from modelyard.entities import FileInfo, RunInfo
from modelyard.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from modelyard.services.common.artifacts import ArtifactStore, StagedFile
from modelyard.services.common.logging import get_logger
from modelyard.services.tracking.store.base import ArtifactPlacement, TrackingStore

log = get_logger(__name__)

LEASE_BASE_MS = 15_000
LEASE_BYTES_PER_MS = 10_000  # 10 MB/s
# Attempts at taking (or reading past) a lease before answering "retry": each one past the first
# follows the finishing of an abandoned lease, so more than a couple means others keep writing.
_ATTEMPTS = 3
# Refusals that leave storage as it was: the path keeps its file, so the lease can go.
_NOTHING_PLACED = (FailedPrecondition, InvalidArgument, NotFound)


def lease_ms(file_size: int) -> int:
    return LEASE_BASE_MS + file_size // LEASE_BYTES_PER_MS


def _now_ms() -> int:
    return int(time.time() * 1000)


class ArtifactPlacer:
    """The placement protocol above; `artifact_key` maps a run and path to a storage key."""

    def __init__(
        self,
        store: TrackingStore,
        artifacts: ArtifactStore,
        artifact_key: Callable[[RunInfo, str], str],
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        self.store = store
        self.artifacts = artifacts
        self.artifact_key = artifact_key
        self.clock = clock

    # -- writing -------------------------------------------------------------------------------

    def place(self, run_id: str, path: str, key: str, staged: StagedFile) -> FileInfo:
        """Move verified staged bytes to `key` and record them; the staged object goes."""
        wanted = ArtifactPlacement(
            run_id=run_id,
            path=path,
            staged_key=staged.key,
            sha256=staged.sha256,
            file_size=staged.size,
            expires_at=0,
        )
        try:
            lease = self._take(wanted)
        except Exception:
            # Even if the lease was stored after all (a lost reply), nothing was placed: whoever
            # meets it finds neither the staged bytes nor them at the path, and drops it.
            self._discard(staged.key)
            raise
        try:
            self.artifacts.place(staged, key)
        except _NOTHING_PLACED:
            self.store.drop_placement(lease)
            self._discard(staged.key)
            raise
        # Any other failure from here keeps the lease: the bytes may be in place, and whoever
        # finds the lease expired settles it.
        file = self.store.finish_placement(lease)
        self._discard(staged.key)
        return file

    def _take(self, wanted: ArtifactPlacement) -> ArtifactPlacement:
        for _ in range(_ATTEMPTS):
            # Timed from each attempt: finishing an abandoned placement first can take a while.
            lease = replace(wanted, expires_at=self.clock() + lease_ms(wanted.file_size))
            holder = self.store.take_placement(lease)
            if holder is None:
                return lease
            if not self._expired(holder):
                break
            self.finish_abandoned(holder)
        raise Aborted(
            f"artifact {wanted.path!r} of run {wanted.run_id!r} is being written by another "
            "upload; retry the upload",
            resource_type="artifact",
            resource_name=wanted.path,
        )

    # -- reading and deleting ------------------------------------------------------------------

    def settled(self, run_id: str, path: str) -> FileInfo | None:
        """The record of `path` once no placement of it is under way (abandoned ones are
        finished first); UNAVAILABLE while one is, as the bytes may be newer than the record."""
        for _ in range(_ATTEMPTS):
            file, lease = self.store.artifact_state(run_id, path)
            if lease is None or (file is None and not self._expired(lease)):
                return file  # no file yet is no file, even while the first one is placed
            if not self._expired(lease):
                break
            self.finish_abandoned(lease)
        raise self._being_replaced(run_id, path)

    def check_unchanged(
        self, run_id: str, path: str, file: FileInfo, chunks: Iterator[bytes]
    ) -> None:
        """After opening the bytes of `file`: UNAVAILABLE (the bytes closed) if a placement of
        the path began or ended since its record was read, so the bytes may not be the record's."""
        if self.store.artifact_state(run_id, path) == (file, None):
            return
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
        raise self._being_replaced(run_id, path)

    def settle_below(self, run_id: str, path: str) -> None:
        """Before deleting `path` (a file or a directory): finish abandoned placements there,
        and ABORTED while a live one would put bytes back after the delete."""
        for lease in self.store.find_placements(run_id, path):
            if not self._expired(lease):
                raise Aborted(
                    f"artifact {lease.path!r} of run {run_id!r} is being written by an upload; "
                    "retry the delete",
                    resource_type="artifact",
                    resource_name=lease.path,
                )
            self.finish_abandoned(lease)

    @staticmethod
    def _being_replaced(run_id: str, path: str) -> Unavailable:
        return Unavailable(
            f"artifact {path!r} of run {run_id!r} is being replaced by an upload; retry",
            resource_type="artifact",
            resource_name=path,
        )

    # -- recovery ------------------------------------------------------------------------------

    def finish_abandoned(self, lease: ArtifactPlacement) -> None:
        """Settle the placement of a holder presumed dead (its lease expired): record the staged
        bytes if the path holds them or they can still be put there, else drop the lease. Of
        several finishing one lease, only the one whose claim lands goes on."""
        # Recovery reads the bytes to check them, then may copy them: twice the lease.
        claimed = replace(lease, expires_at=self.clock() + 2 * lease_ms(lease.file_size))
        if not self.store.claim_placement(lease, claimed.expires_at):
            return
        try:
            key = self.artifact_key(self.store.get_run_info(lease.run_id), lease.path)
        except _NOTHING_PLACED:  # stored outside this server's root: never placed by it
            key = None
        placed = key is not None and (
            self._place_again(lease, key)
            # Staged bytes gone (or refused) may have been moved into place by their holder.
            or self._holds(key, lease.sha256)
        )
        if placed:
            self.store.finish_placement(claimed)
        else:
            self.store.drop_placement(claimed)
        self._discard(lease.staged_key)
        log.info(
            "finished an abandoned upload of artifact %r of run %s: %s",
            lease.path,
            lease.run_id,
            "recorded its bytes" if placed else "nothing had been placed",
        )

    def finish_all_abandoned(self) -> int:
        """Settle every expired lease (at start-up: placements that died with a process)."""
        done = 0
        for lease in self.store.find_placements():
            if not self._expired(lease):
                continue
            try:
                self.finish_abandoned(lease)
            except Exception as exc:  # one bad lease must not stop a server from starting
                log.warning(
                    "could not finish the upload of artifact %r of run %s: %s",
                    lease.path,
                    lease.run_id,
                    exc,
                )
            else:
                done += 1
        return done

    def _holds(self, key: str, sha256: str) -> bool:
        try:
            return self.artifacts.digest(key).sha256 == sha256
        except _NOTHING_PLACED:
            return False

    def _place_again(self, lease: ArtifactPlacement, key: str) -> bool:
        """Copy the staged bytes (once they hash to the lease's digest: a presigned URL may have
        rewritten them) to `key`; False if they are gone or refused."""
        try:
            self.artifacts.promote(lease.staged_key, key, lease.sha256)
        except _NOTHING_PLACED:
            return False
        return True

    def _expired(self, lease: ArtifactPlacement) -> bool:
        return lease.expires_at <= self.clock()

    def _discard(self, staged_key: str) -> None:
        """Delete a staged object; a failure leaves it to the sweep, not to the caller."""
        try:
            self.artifacts.delete(staged_key)
        except Exception as exc:
            log.warning("could not delete staged upload %s: %s", staged_key, exc)
