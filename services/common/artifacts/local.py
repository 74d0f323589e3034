"""Artifacts in a local directory (the laptop default, or a shared volume)."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import time
import uuid
from collections.abc import Collection, Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote, urlparse

from modelyard.errors import InvalidArgument
from modelyard.services.common.artifacts.base import (
    CHUNK_SIZE,
    STAGING_DIR,
    ArtifactStore,
    PathClash,
    StagedFile,
    is_staged_upload,
)
from modelyard.services.common.logging import get_logger

log = get_logger(__name__)

_TMP_MARK = ".modelyard-tmp-"
# Tries at making a staging directory that placements and the sweep may prune (_open_beside).
_PRUNE_RACES = 5


class LocalArtifactStore(ArtifactStore):
    def __init__(self, root_uri: str) -> None:
        super().__init__(root_uri)
        parsed = urlparse(root_uri)
        self.root = Path(unquote(parsed.path)).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve() if key else self.root
        # clean_path already refused '..'; this also guards against symlinks planted inside.
        if path != self.root and self.root not in path.parents:
            raise InvalidArgument(
                f"artifact path {key!r} leads outside the artifact root through a symbolic link; "
                "choose another path, or ask the operator to remove the link",
                field="path",
            )
        return path

    def size(self, key: str) -> int | None:
        path = self._path(key)
        return path.stat().st_size if path.is_file() else None

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            self._path(key).unlink()

    def delete_prefix(self, prefix: str) -> int:
        path = self._path(prefix)
        if not path.is_dir():
            return 0
        count = sum(1 for _ in self.iter_files(prefix))
        shutil.rmtree(path)
        return count

    def iter_files(self, prefix: str) -> Iterator[tuple[str, int]]:
        base = self._path(prefix)
        if not base.is_dir():
            return
        for dirpath, dirs, files in os.walk(base):
            if not prefix and Path(dirpath) == self.root and STAGING_DIR in dirs:
                dirs.remove(STAGING_DIR)  # uploads in flight are no files
            for name in sorted(files):
                if name.startswith(_TMP_MARK):
                    continue
                full = Path(dirpath) / name
                yield full.relative_to(self.root).as_posix(), full.stat().st_size

    def sweep_staged(self, older_than: timedelta, keep: Collection[str] = ()) -> int:
        # Housekeeping (at start-up, and hourly from an upload): a failure is logged, never
        # raised; uploads under way meanwhile are safe (see _open_beside).
        staging = self.root / STAGING_DIR
        cutoff = time.time() - older_than.total_seconds()
        kept = set(keep)
        swept = 0
        emptied: set[Path] = set()  # directories this sweep took something out of
        try:
            for dirpath, _dirs, files in os.walk(staging, topdown=False):
                directory = Path(dirpath)
                for name in files:
                    path = directory / name
                    key = path.relative_to(self.root).as_posix()
                    # Partial writes (a process killed mid-upload) too, but nothing else that
                    # may lie here: a file from before the directory was reserved stays.
                    if key in kept or not (is_staged_upload(key) or name.startswith(_TMP_MARK)):
                        continue
                    with contextlib.suppress(FileNotFoundError):  # placed meanwhile
                        if path.stat().st_mtime <= cutoff:
                            path.unlink()
                            swept += 1
                            emptied.add(directory)
                if directory != staging and (directory in emptied or _older(directory, cutoff)):
                    # Only an empty one goes: an upload that made it for its file just now
                    # makes it again (see _open_beside); one with its file in it keeps it.
                    with contextlib.suppress(OSError):
                        directory.rmdir()
                        emptied.add(directory.parent)
        except OSError as exc:
            log.warning("could not sweep abandoned uploads under %s: %s", staging, exc)
        return swept

    def _put(self, key: str, reader: io.RawIOBase) -> None:
        final, out = self._open_beside(key)
        tmp = Path(out.name)
        try:
            with out:
                shutil.copyfileobj(reader, out, CHUNK_SIZE)
                out.flush()
                os.fsync(out.fileno())
            self._replace(tmp, final, key)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise

    def _place(self, staged_file: StagedFile, key: str) -> None:
        """A rename: atomic, and no byte is copied. The staged file was synced when written; the
        directory is synced after, so the rename outlives a power loss as the record will."""
        staged = self._path(staged_file.key)
        final = self._parent_ready(key)
        try:
            self._replace(staged, final, key)
        except FileNotFoundError:
            raise self._missing(staged_file.key) from None
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            super()._place(staged_file, key)  # the run's directory is another mount
            return
        _sync_directory(final.parent)
        # Every path of every run stages in a directory of its own: leave none of them behind.
        for directory in (staged.parent, staged.parent.parent):
            if directory == self.root / STAGING_DIR:
                break
            try:
                directory.rmdir()
            except OSError:  # another upload of the path is staged there
                break

    def _open_beside(self, key: str) -> tuple[Path, io.BufferedWriter]:
        """The path of `key`, and a new temporary file open in its directory. A placement (and
        the sweep) prunes the empty staging directories it leaves, so one may vanish between
        being made and holding the file: then it is made again."""
        for attempt in range(_PRUNE_RACES):
            final = self._parent_ready(key)
            try:
                tmp = final.parent / f"{_TMP_MARK}{uuid.uuid4().hex}"
                return final, open(tmp, "wb")
            except FileNotFoundError:
                if attempt == _PRUNE_RACES - 1:
                    raise
        raise AssertionError("unreachable")

    def _parent_ready(self, key: str) -> Path:
        """The path of `key`, its directory made; a file where a directory must be is a clash."""
        final = self._path(key)
        for attempt in range(_PRUNE_RACES):
            try:
                final.parent.mkdir(parents=True, exist_ok=True)
                return final
            except (FileExistsError, NotADirectoryError, FileNotFoundError):
                clash = self._clash(key)
                if clash is not None:
                    raise clash from None
                # A placement pruned the directory (or one above it) while mkdir made or checked
                # it: make it again. Anything else in the way is not ours to explain.
                if final.parent.exists() or attempt == _PRUNE_RACES - 1:
                    raise
        raise AssertionError("unreachable")

    def _replace(self, src: Path, final: Path, key: str) -> None:
        try:
            os.replace(src, final)
        except IsADirectoryError:
            # Deleting files leaves their directories behind; S3 has none, so an empty one
            # must not block a file either.
            if not _remove_empty_tree(final):
                # Files in it, or only the temporary files of uploads under way.
                raise self._clash(key) or PathClash(key, f"{key}/...") from None
            os.replace(src, final)

    def _get(self, key: str, chunk_size: int, version: str | None = None) -> Iterator[bytes]:
        path = self._path(key)
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed by the generator below
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise self._missing(key) from None
        return _chunks(handle, chunk_size)


def _older(path: Path, cutoff: float) -> bool:
    try:
        return path.stat().st_mtime <= cutoff
    except FileNotFoundError:
        return False


def _remove_empty_tree(directory: Path) -> bool:
    """Remove `directory` if no file is in it (only empty directories); False if one is."""
    try:
        for dirpath, _dirs, _files in os.walk(directory, topdown=False):
            os.rmdir(dirpath)
    except OSError:
        return False
    return True


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _chunks(handle: io.BufferedReader, chunk_size: int) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(chunk_size):
            yield chunk
