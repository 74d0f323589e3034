"""The grants cache: a change made in this process is seen at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, MetaData

from modelyard.entities.common import PermissionLevel
from modelyard.services.common.auth.grants import GrantStore, permissions_table
from modelyard.services.common.db import Database


def test_a_read_under_way_when_a_grant_changes_is_not_kept(tmp_path: Path) -> None:
    """A read of a resource's grants that began before a change stored what it had read after
    the change had cleared the cache, so the change (here a revocation) was ignored for the
    cache's lifetime in the very process that made it."""
    db = Database(f"sqlite:///{tmp_path / 'grants.db'}")
    metadata = MetaData()
    table = permissions_table(metadata, "thing_permissions")
    metadata.create_all(db.engine)
    store = GrantStore(db, table, ttl_seconds=3600)
    store.set("thing", "alice", PermissionLevel.EDIT)
    read, changed = threading.Event(), threading.Event()
    real_read = db.read

    @contextmanager
    def read_then_wait() -> Iterator[Connection]:
        with real_read() as conn:
            yield conn
        if threading.current_thread().name == "reader":  # read, not yet stored in the cache
            read.set()
            assert changed.wait(30)

    db.read = read_then_wait  # type: ignore[method-assign]
    reader = threading.Thread(target=store.level, args=("thing", "alice"), name="reader")
    reader.start()
    try:
        assert read.wait(30)
        assert store.delete("thing", "alice")
    finally:
        changed.set()
        reader.join(30)
    assert store.level("thing", "alice") is None
    db.dispose()
