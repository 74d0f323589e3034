"""SQLAlchemy engines for the metadata store: SQLite (embedded, WAL) and PostgreSQL (psycopg 3).

SQLite allows one writer at a time; instead of letting threads spin on "database is locked",
`Database.write()` serializes writers in-process and opens the transaction with BEGIN IMMEDIATE.
Readers never wait (WAL). PostgreSQL needs neither.

PostgreSQL connections are checked with a ping only when they come out of the pool after being
idle a while (`IDLE_PING_SECONDS`), as HikariCP does, not on every checkout as `pool_pre_ping`
would: a server restart or a dropped idle connection still costs no request, and a busy service
saves a round trip per request.

Both pools hand out the connection returned last (LIFO), not the one idle longest: after a burst
has opened several, a sequential caller keeps reusing one whose prepared statements (psycopg
prepares a statement at its fifth use on a connection) and caches are warm, instead of rotating
through all of them. In-process on PostgreSQL, SearchRuns at 10k runs after 8 connections had
been opened, 9 alternating rounds of 50: p95 lower in 8 of them, medians 20.2 against 23.3 ms
(p50 15.1 against 16.2 ms).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError
from sqlalchemy.pool import QueuePool

from modelyard.errors import InvalidArgument
from modelyard.services.common.call_end import interrupted_when_call_ends
from modelyard.services.common.settings import Settings, SQLiteSynchronous

# How long a PostgreSQL connection may sit unused before it is pinged on its next use.
IDLE_PING_SECONDS = 1.0


def normalize_url(url: str) -> str:
    """Accept the URLs users write and pick our drivers: postgresql:// means psycopg 3."""
    forms = "use sqlite:///path/to.db or postgresql://user@host/db"
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:  # no scheme, a port that is not a number, ...
        raise InvalidArgument(
            f"backend store URL {url!r} does not parse ({exc}); {forms}", field="backend_store_uri"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise InvalidArgument(
            f"unsupported backend store {backend!r}; {forms}", field="backend_store_uri"
        )
    if not parsed.database or parsed.database == ":memory:":
        # postgresql:// alone would use a database named after the OS user; sqlite:// alone
        # keeps everything in memory, gone when the server stops.
        raise InvalidArgument(
            f"backend store URL {url!r} names no database; {forms}", field="backend_store_uri"
        )
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


# How SQLAlchemy shows a URL's password it hides.
MASKED_PASSWORD = "***"


def shown_url(url: str) -> str:
    """`url` as it may be printed or logged: its password masked (a URL that does not parse is
    returned as it is, having no recognisable password to mask)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return url


class Database:
    """An engine plus the write discipline of its dialect."""

    def __init__(
        self, url: str, *, pool_size: int = 8, sqlite_synchronous: SQLiteSynchronous = "normal"
    ) -> None:
        self.url = normalize_url(url)
        parsed = make_url(self.url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(
                self.url,
                poolclass=QueuePool,
                pool_size=pool_size,
                max_overflow=pool_size * 4,
                pool_use_lifo=True,
                connect_args={"check_same_thread": False, "timeout": 30},
            )
            _configure_sqlite(self.engine, sqlite_synchronous)
        else:
            self.engine = create_engine(
                self.url, pool_size=pool_size, max_overflow=pool_size * 4, pool_use_lifo=True
            )
            _ping_when_idle(self.engine)
        # Reads on PostgreSQL run in autocommit mode: under READ COMMITTED every statement
        # takes its own snapshot anyway, so a read transaction bought only its BEGIN and
        # ROLLBACK round trips (1.5 ms of a 16 ms SearchRuns). SQLite readers keep theirs: there
        # it is one snapshot for all the statements of a read.
        self._reader = (
            self.engine
            if self.is_sqlite
            else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        self._write_lock: threading.Lock | None = threading.Lock() if self.is_sqlite else None

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        """The metadata store a service's settings name."""
        return cls(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for queries, which must not write: on SQLite a transaction rolled back
        when the block ends, on PostgreSQL autocommit (see __init__). The SQLite transaction
        begins at once, so statements run on its DB-API cursor (`Prepared`) share its snapshot."""
        with self._reader.connect() as conn:
            driver = conn.connection.driver_connection
            assert driver is not None  # a connection just checked out of the pool
            # A read for a call that ends meanwhile stops (call_end): PostgreSQL cancels the
            # backend's statement, SQLite interrupts the connection's.
            stop = driver.interrupt if self.is_sqlite else driver.cancel_safe
            with interrupted_when_call_ends(stop):
                if self.is_sqlite:
                    conn.begin()
                yield conn

    @contextmanager
    def cursor(self, conn: Connection) -> Iterator[Any]:
        """The DB-API cursor of `conn`'s transaction, for statements run without SQLAlchemy
        (`Prepared`). A driver error saying the database connection is gone drops the pool, as
        SQLAlchemy does for a statement of its own: otherwise every pooled connection used since
        the database went away would fail one request of its own before being replaced."""
        fairy = conn.connection
        assert fairy.driver_connection is not None
        cursor = fairy.driver_connection.cursor()
        dialect = self.engine.dialect
        try:
            yield cursor
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, fairy.dbapi_connection, cursor):
                conn.invalidate(exc)
                self.engine.dispose()  # the other pooled connections are as gone as this one
            raise
        finally:
            with suppress(dialect.loaded_dbapi.Error):  # an invalidated connection's cursor
                cursor.close()

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction that commits when the block ends without error; one at a time on SQLite."""
        with self._write_lock or nullcontext(), self.engine.connect() as conn:
            if self.is_sqlite:
                conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                yield conn

    def ids_in_commit_order(self, conn: Connection, table: str) -> None:
        """Call in a write transaction before inserting rows into `table`, a log that readers
        follow by id (`id > last`: a watch, a cursor page). PostgreSQL draws a row's id at
        INSERT but transactions commit in any order, so a reader could see id 11, move past it,
        and never see id 10 committed a moment later. A transaction-scoped advisory lock, held
        from before the INSERT to the commit, makes ids commit in order. Take it last in the
        transaction (after any row locks) so no one holding it waits for anything else. SQLite
        writers are serialized already."""
        if not self.is_sqlite:
            key = int.from_bytes(hashlib.sha256(f"ids:{table}".encode()).digest()[:8], signed=True)
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})

    @contextmanager
    def write_serialized(self, table: str) -> Iterator[Connection]:
        """`write()`, with no other such transaction on `table` beside it: for a decision over
        several rows (is another admin left?) that row locks would let two writers each make
        on what the other is changing. SQLite's writers are one at a time already; on
        PostgreSQL an EXCLUSIVE lock on the table makes the next writer wait (reads go on)."""
        with self.write() as conn:
            if not self.is_sqlite:
                conn.execute(text(f"LOCK TABLE {table} IN EXCLUSIVE MODE"))
            yield conn

    def detached_connection(self) -> Any:
        """A DB-API connection set up like the pool's (SQLite pragmas), but outside the pool
        for a hot path to keep: checking one out per write costs more than the write itself on
        SQLite. The caller closes it."""
        fairy = self.engine.raw_connection()
        conn = fairy.driver_connection
        fairy.detach()
        return conn

    @contextmanager
    def write_detached(self, conn: Any) -> Iterator[Any]:
        """SQLite: `write()`'s transaction on a connection from `detached_connection()`, as a
        DB-API cursor, without SQLAlchemy's per-transaction layer: under the write lock, begun
        IMMEDIATE. Any error rolls it back (a failed COMMIT leaves the transaction open):
        nothing is written. (PostgreSQL hot paths commit through psycopg in autocommit mode.)"""
        assert self._write_lock is not None, "write_detached is the SQLite write discipline"
        with self._write_lock:
            cursor = conn.cursor()
            try:
                cursor.execute("BEGIN IMMEDIATE")
                yield cursor
                cursor.execute("COMMIT")
            except BaseException:
                conn.rollback()
                raise
            finally:
                cursor.close()

    def dispose(self) -> None:
        self.engine.dispose()


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection on checkout only if it was checked in over IDLE_PING_SECONDS
    ago; a dead one is replaced by the pool (DisconnectionError makes it connect afresh)."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn: Any, record: Any) -> None:
        record.info["checked_in"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        checked_in = record.info.get("checked_in")
        if checked_in is None or time.monotonic() - checked_in <= IDLE_PING_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError(f"pooled connection is gone: {exc}") from exc


# SQLite checkpoints its write-ahead log into the database inside the commit that takes the log
# past this many pages, under the write lock (default 1000). A LogBatch dirties ~110 pages of
# the history's (run, key, step) index, the same leaf pages batch after batch; a longer log copies
# each of them once per checkpoint instead of eight times. In-process, 1500 LogBatches of 1000
# into one run, 2 rounds: mean 6.5-6.8 -> 5.8-5.9 ms a batch (16000 pages: 5.7; the rare
# batch that checkpoints takes 40 ms instead of 22-27). The log file grows to ~32 MiB.
WAL_CHECKPOINT_PAGES = 8000


# U+0130 (İ) lowers to 'i' plus a combining dot in Python, to 'i' in PostgreSQL; Python's
# context rule for a final sigma (Σ -> ς at a word's end) is unknown to PostgreSQL.
_ONE_FOR_ONE = str.maketrans({"\u0130": "i", "\u03a3": "\u03c3"})


def unicode_lower(value: Any) -> Any:
    """lower() as PostgreSQL's (UTF-8, libc or C.UTF-8 collation) is: each character on its
    own, non-ASCII ones too; values that are not text come back as they are. About 0.1 µs a
    row over SQLite's own, which folds ASCII only."""
    if type(value) is not str:
        return value
    return value.lower() if value.isascii() else value.translate(_ONE_FOR_ONE).lower()


def _configure_sqlite(engine: Engine, synchronous: SQLiteSynchronous) -> None:
    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a committed transaction survives a crash of this process (only a
        # power loss can drop the last commits) and costs no fsync; FULL fsyncs every commit
        # (~0.2 ms each on the benchmark machine) and survives a power loss too.
        cur.execute(f"PRAGMA synchronous={synchronous.upper()}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        # Read the database file through a shared memory map rather than each connection's
        # small page cache (2 MiB by default): index lookups by the thousand (a search over many
        # runs) stop paying a read() per page, and every pooled connection shares the pages.
        cur.execute("PRAGMA mmap_size=268435456")
        cur.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        # LIKE is case-sensitive in MLflow's grammar (and on PostgreSQL); ILIKE is the
        # case-insensitive one.
        cur.execute("PRAGMA case_sensitive_like=ON")
        cur.close()
        # ILIKE compiles to lower(x) LIKE lower(pattern) here; SQLite's own lower() folds ASCII
        # only, so 'MODÈLE' ILIKE '%modèle%' was false on SQLite and true on PostgreSQL. This
        # replaces it for every query (tracking's and the registry's searches alike).
        dbapi_conn.create_function("lower", 1, unicode_lower, deterministic=True)

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # Writers take the write lock up front (IMMEDIATE) so they never fail half-way with
        # "database is locked"; readers start deferred and never block.
        # On the DB-API connection: through exec_driver_sql the BEGIN cost ~30 µs more.
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.connection.driver_connection.execute(f"BEGIN {mode}")  # type: ignore[union-attr]
