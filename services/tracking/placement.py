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

A delete holds leases too, one per file and without staged bytes ("deleting"), taken in the
transaction that forgets the records (so the files vanish from listings at once) and dropped once
the bytes are gone. An upload of such a path meanwhile gets ABORTED, as it would otherwise place and
record bytes that the delete then removes; a read finds no record (NOT_FOUND). A deletion lease
left by a crash is finished like a placement: its bytes are deleted, then the lease. A delete (or
a finishing) that stops on an error, the object store unreachable, expires its leases instead of
leaving them live: a retry of the delete finishes it at once and answers OK, as does the hourly
sweep if nobody retries.

The lease lasts 15 s plus 100 ms per MB (10 MB/s), or for a delete 15 s plus 50 ms per file: far
beyond a rename, a server-side copy and two transactions, yet short, as a path whose placement died
answers "retry" until then. Each such answer says how long that can be, the lease's remaining time
(`busy_for`, an ErrorInfo beside a short RetryInfo), and the SDK keeps retrying for that long (plus
a margin) rather than a fixed 30 s. Its holder is
presumed dead once it expires; one merely stalled that long could still place its bytes after a
successor did, which the expiry is sized to keep away.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace

from modelyard.entities import FileInfo, RunInfo
from modelyard.errors import (
    Aborted,
    FailedPrecondition,
    InvalidArgument,
    ModelyardError,
    NotFound,
    Unavailable,
)
from modelyard.services.common.artifacts import ArtifactStore, PathClash, StagedFile
from modelyard.services.common.logging import get_logger
from modelyard.services.tracking.store.base import ArtifactPlacement, TrackingStore

log = get_logger(__name__)

LEASE_BASE_MS = 15_000
LEASE_BYTES_PER_MS = 10_000  # 10 MB/s
DELETE_MS_PER_FILE = 50
# The longest a "retry" answer says a path can stay busy: the lease of a file of tens of GB could
# outlast it, but no client should be told to hang on for longer.
MAX_BUSY_MS = 3_600_000
# Attempts at taking (or reading past) a lease before answering "retry": each one past the first
# follows the finishing of an abandoned lease, so more than a couple means others keep writing.
_ATTEMPTS = 3
# Refusals that leave storage as it was: the path keeps its file, so the lease can go.
_NOTHING_PLACED = (FailedPrecondition, InvalidArgument, NotFound)


def lease_ms(file_size: int) -> int:
    return LEASE_BASE_MS + file_size // LEASE_BYTES_PER_MS


def deletion_lease_ms(files: int) -> int:
    return LEASE_BASE_MS + files * DELETE_MS_PER_FILE


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
        except _NOTHING_PLACED as exc:
            self.store.drop_placement(lease)
            self._discard(staged.key)
            if isinstance(exc, PathClash):  # found in storage keys: name the run's paths
                raise exc.under(key.removesuffix(path)) from None
            raise
        # Any other failure from here keeps the lease: the bytes may be in place, and whoever
        # finds the lease expired settles it.
        file = self.store.finish_placement(lease)
        self._discard(staged.key)
        return file

    def _take(self, wanted: ArtifactPlacement) -> ArtifactPlacement:
        holder: ArtifactPlacement | None = None
        for _ in range(_ATTEMPTS):
            # Timed from each attempt: finishing an abandoned placement first can take a while.
            lease = replace(wanted, expires_at=self.clock() + lease_ms(wanted.file_size))
            holder = self.store.take_placement(lease)
            if holder is None:
                return lease
            if holder is lease or not self._expired(holder):
                break
            self.finish_abandoned(holder)
        raise self._busy(Aborted, wanted.run_id, wanted.path, holder, "retry the upload")

    # -- reading and deleting ------------------------------------------------------------------

    def settled(self, run_id: str, path: str) -> FileInfo | None:
        """The record of `path` once no placement of it is under way (abandoned ones are
        finished first); UNAVAILABLE while one is, as the bytes may be newer than the record."""
        for _ in range(_ATTEMPTS):
            file, lease = self.store.artifact_state(run_id, path)
            if lease is None or (file is None and not self._expired(lease)):
                # No file yet is no file, even while the first one is placed; and a file being
                # deleted has lost its record already.
                return file
            if not self._expired(lease):
                break
            self.finish_abandoned(lease)
        raise self._busy(Unavailable, run_id, path, lease, "retry")

    def check_unchanged(
        self, run_id: str, path: str, file: FileInfo, chunks: Iterator[bytes]
    ) -> None:
        """After opening the bytes of `file`: UNAVAILABLE (the bytes closed) if a placement of
        the path began or ended since its record was read, so the bytes may not be the record's."""
        now, lease = self.store.artifact_state(run_id, path)
        if (now, lease) == (file, None):
            return
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
        raise self._busy(Unavailable, run_id, path, lease, "retry")

    def settle_below(self, run_id: str, path: str) -> int:
        """Before deleting `path` (a file or a directory): finish abandoned placements there,
        and ABORTED while a live one would put bytes back after the delete. Returns how many
        abandoned deletes it finished: a retry of a delete that stopped half-way is done."""
        finished = 0
        for lease in self.store.find_placements(run_id, path):
            if not self._expired(lease):
                raise self._busy(Aborted, run_id, lease.path, lease, "retry the delete")
            self.finish_abandoned(lease)
            finished += lease.deleting
        return finished

    def delete(self, info: RunInfo, paths: list[str]) -> None:
        """Forget the records of `paths` and delete their bytes, holding a lease on each path
        meanwhile: an upload of one in between would record bytes that this then deletes.
        Statements: a few per 500 paths, whatever their number; one storage delete per path."""
        holder: ArtifactPlacement | None = None
        leases: list[ArtifactPlacement] = []
        for _ in range(_ATTEMPTS):
            expires_at = self.clock() + deletion_lease_ms(len(paths))
            leases = [ArtifactPlacement(info.run_id, p, "", "", 0, expires_at) for p in paths]
            holder = self.store.take_deletion(leases)
            if holder is None:
                break
            if any(holder is lease for lease in leases) or not self._expired(holder):
                break
            self.finish_abandoned(holder)
        if holder is not None:
            raise self._busy(Aborted, info.run_id, holder.path, holder, "retry the delete")
        # A failure from here (the object store unreachable) keeps the leases, as the records
        # are gone already, but expires them: this delete has stopped, so whoever meets one next
        # (a retry of the delete, an upload, the sweep) deletes the rest of the bytes at once,
        # rather than waiting out a lease nobody holds.
        try:
            for lease in leases:
                self.artifacts.delete(self.artifact_key(info, lease.path))
        except Exception:  # not a crash (a BaseException in tests): a dead holder releases nothing
            self._release(lambda: self.store.release_deletion(leases), info.run_id)
            raise
        self.store.drop_deletion(leases)

    def _busy(
        self,
        error: type[ModelyardError],
        run_id: str,
        path: str,
        holder: ArtifactPlacement | None,
        what_next: str,
    ) -> ModelyardError:
        """The answer to a call that met `holder` on its path: retry, for at most the time left
        on the lease (which the SDK follows)."""
        if holder is not None and holder.deleting:
            doing = "being deleted"
        elif error is Unavailable:
            doing = "being replaced by an upload"
        else:
            doing = "being written by another upload"
        left = None if holder is None else max(holder.expires_at - self.clock(), 0)
        return error(
            f"artifact {path!r} of run {run_id!r} is {doing}; {what_next}",
            resource_type="artifact",
            resource_name=path,
            busy_for=None if left is None else min(left, MAX_BUSY_MS) / 1000,
        )

    # -- recovery ------------------------------------------------------------------------------

    def finish_abandoned(self, lease: ArtifactPlacement) -> None:
        """Settle the placement of a holder presumed dead (its lease expired): record the staged
        bytes if the path holds them or they can still be put there, else drop the lease; or,
        for a delete, delete the bytes and the lease. Of several finishing one lease, only the
        one whose claim lands goes on."""
        # Recovery reads the bytes to check them, then may copy them: twice the lease.
        claimed = replace(lease, expires_at=self.clock() + 2 * lease_ms(lease.file_size))
        if not self.store.claim_placement(lease, claimed.expires_at):
            return
        try:
            self._finish_claimed(lease, claimed)
        except Exception:  # stopped (the object store unreachable): the next one goes on
            self._release(
                lambda: self.store.claim_placement(claimed, lease.expires_at), lease.run_id
            )
            raise

    def _finish_claimed(self, lease: ArtifactPlacement, claimed: ArtifactPlacement) -> None:
        try:
            key = self.artifact_key(self.store.get_run_info(lease.run_id), lease.path)
        except _NOTHING_PLACED:  # stored outside this server's root: never placed by it
            key = None
        if lease.deleting:  # its record is gone: delete the bytes, as the delete would have
            if key is not None:
                self.artifacts.delete(key)
            self.store.drop_placement(claimed)
            log.info(
                "finished an abandoned delete of artifact %r of run %s", lease.path, lease.run_id
            )
            return
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

    def _release(self, expire: Callable[[], object], run_id: str) -> None:
        """Expire leases whose holder stopped; if even that fails, they expire in time."""
        try:
            expire()
        except Exception as exc:
            log.warning("could not release the artifact leases of run %s: %s", run_id, exc)

    def _expired(self, lease: ArtifactPlacement) -> bool:
        return lease.expires_at <= self.clock()

    def _discard(self, staged_key: str) -> None:
        """Delete a staged object; a failure leaves it to the sweep, not to the caller."""
        try:
            self.artifacts.delete(staged_key)
        except Exception as exc:
            log.warning("could not delete staged upload %s: %s", staged_key, exc)
