"""The metadata store's connections: SQLite's commit mode and checkpoint interval hold on every
connection; reads are one snapshot on SQLite and autocommit on PostgreSQL; PostgreSQL
connections are pinged only after idling."""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from modelyard.services.common.db import Database, engine
from modelyard.services.common.settings import Settings

# PRAGMA synchronous reports 1 for NORMAL and 2 for FULL.
_LEVELS = {"normal": 1, "full": 2}


@pytest.mark.parametrize("level", ["normal", "full"])
def test_sqlite_pragmas_hold_on_pooled_and_detached_connections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, level: str
) -> None:
    monkeypatch.setenv("MODELYARD_SQLITE_SYNCHRONOUS", level)
    db = Database.from_settings(Settings(home=tmp_path))
    try:
        with db.write() as conn:
            conn.exec_driver_sql("CREATE TABLE t (v INTEGER)")
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        with db.read() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == _LEVELS[level]
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            checkpoint = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
            assert checkpoint == engine.WAL_CHECKPOINT_PAGES
            assert conn.exec_driver_sql("SELECT v FROM t").scalar() == 1
        hot = db.detached_connection()
        try:
            assert hot.execute("PRAGMA synchronous").fetchone() == (_LEVELS[level],)
            assert hot.execute("PRAGMA wal_autocheckpoint").fetchone() == (
                engine.WAL_CHECKPOINT_PAGES,
            )
        finally:
            hot.close()
    finally:
        db.dispose()


def test_the_default_is_normal(tmp_path: Path) -> None:
    assert Settings(home=tmp_path).sqlite_synchronous == "normal"


def test_postgresql_reads_hold_no_transaction_and_see_each_commit(postgres_url: str) -> None:
    """A read on PostgreSQL is autocommit: no transaction stays open between its statements
    (no BEGIN/ROLLBACK round trips), and each statement sees what was committed before it, as
    it would under READ COMMITTED."""
    db = Database(postgres_url)
    try:
        with db.write() as conn:
            conn.exec_driver_sql("CREATE TABLE t (v INTEGER)")
        with db.read() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0
            status = conn.connection.driver_connection.info.transaction_status
            assert status.name == "IDLE"
            with db.write() as writer:
                writer.exec_driver_sql("INSERT INTO t VALUES (1)")
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 1
        with db.write() as conn:  # writes still commit as one transaction, or not at all
            conn.exec_driver_sql("INSERT INTO t VALUES (2)")
            assert conn.connection.driver_connection.info.transaction_status.name == "INTRANS"
    finally:
        db.dispose()


def test_sqlite_reads_see_one_snapshot(tmp_path: Path) -> None:
    """On SQLite a read is one transaction: a commit made while it runs is not seen by it."""
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        with db.write() as conn:
            conn.exec_driver_sql("CREATE TABLE t (v INTEGER)")
        with db.read() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0
            with db.write() as writer:
                writer.exec_driver_sql("INSERT INTO t VALUES (1)")
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0
        with db.read() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 1
    finally:
        db.dispose()


def _backend_pid(db: Database) -> int:
    with db.read() as conn:
        return conn.connection.driver_connection.info.backend_pid


def test_postgresql_pings_only_connections_idle_a_while(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection back from the pool within IDLE_PING_SECONDS of its last use goes straight to
    work (a busy service pays no ping round trip per request); one idle longer is pinged first,
    and if its server side is gone the pool connects afresh, so the request still succeeds."""
    db = Database(postgres_url)
    pings: list[object] = []
    real_ping = db.engine.dialect.do_ping

    def counting_ping(dbapi_conn: object) -> bool:
        pings.append(dbapi_conn)
        return real_ping(dbapi_conn)

    monkeypatch.setattr(db.engine.dialect, "do_ping", counting_ping)
    try:
        first = _backend_pid(db)
        assert [_backend_pid(db) for _ in range(3)] == [first] * 3
        assert pings == []
        other = Database(postgres_url)  # as a database restart or an idle timeout would
        try:
            with other.read() as conn:
                conn.exec_driver_sql(f"SELECT pg_terminate_backend({first}, 30000)")
        finally:
            other.dispose()
        monkeypatch.setattr(engine, "IDLE_PING_SECONDS", 0.0)  # "idle long enough"
        replaced = {_backend_pid(db) for _ in range(2)}
        assert first not in replaced
        assert len(pings) >= 2
        with db.read() as conn:
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1
    finally:
        db.dispose()


def _driver_connections(db: Database, held: int) -> list[object]:
    """Open `held` connections at once and give the driver connection of each; they go back
    to the pool in reverse opening order, so the first one opened is returned last."""
    with ExitStack() as stack:
        conns = [stack.enter_context(db.read()) for _ in range(held)]
        return [conn.connection.driver_connection for conn in conns]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sequential_reads_reuse_the_connection_returned_last(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """After a burst opened several connections, one caller at a time keeps getting the same
    one (its prepared statements and caches warm), not each idle connection in turn."""
    url = (
        f"sqlite:///{tmp_path / 'lifo.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    db = Database(url)
    try:
        drivers = _driver_connections(db, 3)
        assert len({id(d) for d in drivers}) == 3
        for _ in range(4):
            with db.read() as conn:
                assert conn.connection.driver_connection is drivers[0]
    finally:
        db.dispose()


def _select_one_on_each(db: Database, held: int) -> list[int]:
    """`held` reads at once, each running a statement on its raw cursor."""
    found = []
    with ExitStack() as stack:
        for _ in range(held):
            conn = stack.enter_context(db.read())
            cursor = stack.enter_context(db.cursor(conn))
            cursor.execute("SELECT 1")
            found.append(cursor.fetchone()[0])
    return found


def test_a_dead_connection_met_on_the_cursor_drops_the_pool(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL went away under pooled connections used moments ago (no idle ping guards
    them): the first statement on a raw cursor fails, and, as for a statement SQLAlchemy ran,
    the whole pool is dropped, so the next burst of requests connects afresh instead of
    meeting the other dead connections (SQLAlchemy alone would replace only the one it met)."""
    monkeypatch.setattr(engine, "IDLE_PING_SECONDS", 3600.0)  # "used moments ago"
    db = Database(postgres_url)
    try:
        pids = [d.info.backend_pid for d in _driver_connections(db, 3)]  # type: ignore[attr-defined]
        other = Database(postgres_url)
        try:
            with other.read() as conn:
                for pid in pids:
                    conn.exec_driver_sql(f"SELECT pg_terminate_backend({pid}, 30000)")
        finally:
            other.dispose()
        with pytest.raises(psycopg.OperationalError):
            _select_one_on_each(db, 1)
        assert _select_one_on_each(db, 3) == [1, 1, 1]
    finally:
        db.dispose()


@pytest.mark.postgres
def test_ids_in_commit_order_makes_a_later_insert_wait_for_the_earlier_commit(
    postgres_url: str,
) -> None:
    """The audit log and the inference log are followed by id like the registry's events: a
    row whose id was drawn first must be visible no later than any row drawn after it."""
    db = Database(postgres_url)
    try:
        with db.write() as conn:
            conn.execute(text("CREATE TABLE log (id BIGSERIAL PRIMARY KEY, v TEXT)"))
        later_done = threading.Event()

        def insert_later() -> None:
            with db.write() as conn:
                db.ids_in_commit_order(conn, "log")
                conn.execute(text("INSERT INTO log (v) VALUES ('later')"))
            later_done.set()

        with ExitStack() as stack:
            first = stack.enter_context(db.write())
            db.ids_in_commit_order(first, "log")
            first.execute(text("INSERT INTO log (v) VALUES ('first')"))
            first_pid = first.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            later = threading.Thread(target=insert_later)
            later.start()
            deadline = time.monotonic() + 30
            with db.read() as reader:
                while not reader.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE :p = ANY(pg_blocking_pids(pid))"
                    ),
                    {"p": first_pid},
                ).scalar():
                    assert time.monotonic() < deadline, "the later insert never waited"
                    time.sleep(0.05)  # polling the database's own view of its backends
                assert not later_done.is_set()
                assert reader.execute(text("SELECT count(*) FROM log")).scalar() == 0
        later.join(30)
        assert later_done.is_set()
        with db.read() as reader:
            rows = reader.execute(text("SELECT v FROM log ORDER BY id")).scalars().all()
        assert rows == ["first", "later"]
    finally:
        db.dispose()
