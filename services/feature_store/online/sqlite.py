"""SqliteOnlineStore: the embedded default, one table keyed by (view, entity key), `view` being
the view's online name (its name and generation, see base.online_name)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelyard.services.feature_store.online.base import (
    OnlineRow,
    OnlineStore,
    decode_values,
    encode_values,
    merge_all,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS online_features (
    view TEXT NOT NULL,
    entity_key TEXT NOT NULL,
    feature_values TEXT NOT NULL,
    event_time INTEGER NOT NULL,
    tiebreak TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (view, entity_key)
) WITHOUT ROWID
"""
# Tables made before rows had a tiebreak get the column; their rows keep "" (sorts first).
_ADD_TIEBREAK = "ALTER TABLE online_features ADD COLUMN tiebreak TEXT NOT NULL DEFAULT ''"
_UPSERT = (
    "INSERT INTO online_features (view, entity_key, feature_values, event_time, tiebreak) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (view, entity_key) DO UPDATE SET "
    "feature_values = excluded.feature_values, event_time = excluded.event_time, "
    "tiebreak = excluded.tiebreak "
    "WHERE (excluded.event_time, excluded.tiebreak) >= "
    "(online_features.event_time, online_features.tiebreak)"
)
_CHUNK = 500


class SqliteOnlineStore(OnlineStore):
    def __init__(self, uri: str) -> None:
        path = uri.removeprefix("sqlite:///")
        if path != ":memory:":
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._local = threading.local()
        self._write_lock = threading.Lock()
        conn = self._conn()
        conn.executescript(_SCHEMA)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(online_features)")}
        if "tiebreak" not in columns:
            try:
                conn.execute(_ADD_TIEBREAK)
            except sqlite3.OperationalError as exc:  # another process added it first
                if "duplicate column" not in str(exc):
                    raise

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self._path, isolation_level=None, check_same_thread=False, timeout=30
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def write(self, view: str, rows: Sequence[OnlineRow], partial: bool = False) -> int:
        conn = self._conn()
        offered = len(rows)
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if partial:  # read under the write lock: no other write comes between
                    rows = self._merged(conn, view, rows)
                conn.executemany(
                    _UPSERT,
                    [
                        (view, r.entity_key, encode_values(r.values), r.event_time_ms, r.tiebreak)
                        for r in rows
                    ],
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return offered

    @staticmethod
    def _merged(conn: sqlite3.Connection, view: str, rows: Sequence[OnlineRow]) -> list[OnlineRow]:
        """Each row over the stored one (see base.merge_all)."""
        stored: dict[str, OnlineRow] = {}
        keys = [r.entity_key for r in rows]
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for key, values, event_time, tiebreak in conn.execute(
                f"SELECT entity_key, feature_values, event_time, tiebreak FROM online_features "
                f"WHERE view = ? AND entity_key IN ({marks})",
                [view, *chunk],
            ):
                stored[key] = OnlineRow(key, decode_values(values), event_time, tiebreak)
        return merge_all(rows, stored)

    def read(self, view: str, keys: Sequence[str]) -> list[tuple[dict[str, Any], int] | None]:
        conn = self._conn()
        found: dict[str, tuple[dict[str, Any], int]] = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = list(keys[start : start + _CHUNK])
            marks = ",".join("?" * len(chunk))
            for key, values, event_time in conn.execute(
                f"SELECT entity_key, feature_values, event_time FROM online_features "
                f"WHERE view = ? AND entity_key IN ({marks})",
                [view, *chunk],
            ):
                found[key] = (decode_values(values), event_time)
        return [found.get(k) for k in keys]

    def delete_view(self, view: str) -> None:
        with self._write_lock:
            self._conn().execute("DELETE FROM online_features WHERE view = ?", (view,))
