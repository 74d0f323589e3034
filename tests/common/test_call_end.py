"""A database read stops when its call ends first (client cancelled, deadline passed), on both
metadata stores, through the real server plumbing: the statement is cancelled on the database,
the handler's thread is freed, and the end is logged as the client's doing, not as an error."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeAlias

import duckdb
import grpc
import pytest
from grpc_health.v1 import health_pb2
from prometheus_client import REGISTRY
from sqlalchemy import create_engine, text

from modelyard.services.common.call_end import CallEnded
from modelyard.services.common.db.engine import Database
from modelyard.services.common.interceptors import _ended
from modelyard.services.common.server import ModelyardServer, ServiceRegistration, create_server
from modelyard.services.common.settings import Settings
from modelyard.services.feature_store.offline import duckdb_engine
from tests.log_records import LogRecords

Req: TypeAlias = health_pb2.HealthCheckRequest  # see test_server.py
Resp: TypeAlias = health_pb2.HealthCheckResponse

# Statements that do not end by themselves (PostgreSQL's within two minutes, should a failing
# test leave it). SQLite's calls started() on its first row, so the test knows the statement
# runs; PostgreSQL's is seen in pg_stat_activity by its marker, which is the test's own (tests on
# other workers run theirs on the same server).
ENDLESS = {
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE started()) "
    "SELECT max(x) FROM c",
    "postgresql": "SELECT pg_sleep(120) /* {marker} */",
}


INTERCEPTORS = "modelyard.services.common.interceptors"


class Reader:
    """A test service whose calls read from a real Database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.running = threading.Event()  # the endless statement has begun (SQLite)
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.driver: Any = None  # the endless statement's DB-API connection
        self.marker = f"call_end test {uuid.uuid4().hex}"

    def endless(self, context: grpc.ServicerContext) -> None:
        with self.db.read() as conn:
            self.driver = conn.connection.driver_connection
            if self.db.is_sqlite:
                self.driver.create_function("started", 0, self._started)
            conn.execute(text(ENDLESS[self.db.dialect].format(marker=self.marker))).all()

    def duckdb_endless(self, context: grpc.ServicerContext) -> None:
        con = self.driver = duckdb_engine.connect()  # the feature store's retrieval connection
        con.create_function("started", self._started, [], "BOOLEAN")
        con.sql("SELECT count(*) FROM range(1000000000000) WHERE started()").fetchall()

    def after_end(self, context: grpc.ServicerContext) -> None:
        ended = threading.Event()
        context.add_callback(ended.set)
        self.running.set()
        assert ended.wait(30)
        with self.db.read() as conn:
            conn.execute(text("SELECT 1"))

    def _started(self) -> bool:
        self.running.set()
        return True

    def registration(self) -> ServiceRegistration:
        def unary(work: Callable[[grpc.ServicerContext], None]) -> grpc.RpcMethodHandler:
            def handle(request: Req, context: grpc.ServicerContext) -> Resp:
                try:
                    work(context)
                    return Resp()
                except BaseException as exc:
                    self.error = exc
                    raise
                finally:
                    self.done.set()

            return grpc.unary_unary_rpc_method_handler(
                handle,
                request_deserializer=Req.FromString,
                response_serializer=Resp.SerializeToString,
            )

        handlers = grpc.method_handlers_generic_handler(
            "test.Reader",
            {
                "Endless": unary(self.endless),
                "DuckdbEndless": unary(self.duckdb_endless),
                "AfterEnd": unary(self.after_end),
            },
        )
        return ServiceRegistration(
            service_names=("test.Reader",),
            register=lambda server: server.add_generic_rpc_handlers((handlers,)),
        )


@pytest.fixture
def reader(database_url: str) -> Iterator[Reader]:
    db = Database(database_url)
    reader = Reader(db)
    yield reader
    if reader.driver is not None and not reader.done.is_set():  # the test failed: stop it
        stop = getattr(reader.driver, "cancel_safe", None) or reader.driver.interrupt
        stop()
        reader.done.wait(30)
    db.dispose()


@pytest.fixture
def reader_server(reader: Reader, tmp_path: Any) -> Iterator[ModelyardServer]:
    server = create_server(Settings(home=tmp_path, port=0, grace_period=5), [reader.registration()])
    server.start()
    yield server
    server.stop(0)


@contextmanager
def calling(server: ModelyardServer, method: str, timeout: float = 60) -> Iterator[grpc.Future]:
    """A call of the test service in flight, on a channel open for the block."""
    with grpc.insecure_channel(server.address) as channel:
        stub = channel.unary_unary(
            f"/test.Reader/{method}",
            request_serializer=Req.SerializeToString,
            response_deserializer=Resp.FromString,
        )
        yield stub.future(Req(), timeout=timeout)


def _cancelled_once_running(
    reader: Reader, server: ModelyardServer, method: str
) -> BaseException | None:
    """Cancel a call once its handler has begun its work; the error the handler met."""
    with calling(server, method) as future:
        assert reader.running.wait(30)
        future.cancel()
        assert reader.done.wait(30), f"{method} still runs after its call ended"
    return reader.error


def _statement_running(url: str, marker: str) -> bool:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            return bool(
                conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                        "AND query LIKE :marker AND pid <> pg_backend_pid()"
                    ),
                    {"marker": f"%{marker}%"},
                ).scalar()
            )
    finally:
        engine.dispose()


def _wait_for_statement(reader: Reader, url: str, running: bool) -> None:
    """Until the endless statement is (or is no longer) running on the database."""
    if reader.db.is_sqlite:
        assert reader.running.wait(30) if running else reader.done.wait(30)
        return
    deadline = time.monotonic() + 30
    while _statement_running(url, reader.marker) != running:
        assert time.monotonic() < deadline, f"statement running={not running} after 30 s"
        time.sleep(0.05)  # polling the database's own view of its backends


@pytest.mark.parametrize("ending", ["cancel", "deadline"])
def test_a_read_stops_when_its_call_ends(
    ending: str,
    reader: Reader,
    reader_server: ModelyardServer,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=INTERCEPTORS)
    judged = LogRecords()
    logging.getLogger(INTERCEPTORS).addHandler(judged)
    counts = _Counts("Endless")
    # The deadline case ends by itself; the statement must be seen running before that, which
    # takes a loaded machine seconds.
    with calling(reader_server, "Endless", timeout=8 if ending == "deadline" else 60) as future:
        _wait_for_statement(reader, database_url, running=True)
        if ending == "cancel":
            future.cancel()
        assert reader.done.wait(30), "the handler still runs its statement after the call ended"
    _wait_for_statement(reader, database_url, running=False)
    said = str(reader.error).lower()  # sqlite3 "interrupted", psycopg "canceling statement"
    assert "interrupt" in said or "cancel" in said, said
    assert judged.first.wait(30), "the error mapping logged nothing for the ended call"
    logging.getLogger(INTERCEPTORS).removeHandler(judged)
    [record] = judged.records
    assert record.levelno == logging.INFO and record.exc_info is None  # no error, no traceback
    assert "/test.Reader/Endless ended by the client" in record.getMessage()
    # Counted as the call ended (metrics come before the log line), not as a server error.
    ended = "CANCELLED" if ending == "cancel" else "DEADLINE_EXCEEDED"
    assert counts.grown() == {("requests", ended): 1, ("errors", ended): 1}


def test_a_read_for_a_call_already_ended_does_not_begin(
    reader: Reader, reader_server: ModelyardServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The work's CallEnded was counted as an INTERNAL error of the server's (an alert on
    INTERNAL errors fired for every client that gave up); it is a quiet, cancelled end."""
    caplog.set_level(logging.INFO, logger=INTERCEPTORS)
    judged = LogRecords()
    logging.getLogger(INTERCEPTORS).addHandler(judged)
    counts = _Counts("AfterEnd")
    try:
        assert isinstance(_cancelled_once_running(reader, reader_server, "AfterEnd"), CallEnded)
        assert judged.first.wait(30), "the error mapping logged nothing for the ended call"
    finally:
        logging.getLogger(INTERCEPTORS).removeHandler(judged)
    assert all(r.levelno < logging.WARNING and r.exc_info is None for r in judged.records)
    assert counts.grown() == {("requests", "CANCELLED"): 1, ("errors", "CANCELLED"): 1}


class _Counts:
    """How a test method's request and error counts (by code) grew since made."""

    _CODES = ("OK", "CANCELLED", "DEADLINE_EXCEEDED", "INTERNAL", "FAILED_PRECONDITION")

    def __init__(self, method: str) -> None:
        self.method = method
        self.before = self._now()

    def _now(self) -> dict[tuple[str, str], float]:
        return {
            (kind, code): REGISTRY.get_sample_value(
                f"modelyard_rpc_{kind}_total",
                {"service": "test.Reader", "method": self.method, "code": code},
            )
            or 0.0
            for kind in ("requests", "errors")
            for code in self._CODES
        }

    def grown(self) -> dict[tuple[str, str], float]:
        now = self._now()
        return {key: now[key] - self.before[key] for key in now if now[key] != self.before[key]}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_training_set_join_stops_when_its_call_ends(
    reader: Reader, reader_server: ModelyardServer
) -> None:
    """The feature store's DuckDB connections (point-in-time joins, materialization reads)."""
    error = _cancelled_once_running(reader, reader_server, "DuckdbEndless")
    assert isinstance(error, duckdb.InterruptException)


class _EndedCall:
    """A call's server context after the client ended it, `remaining` s before its deadline."""

    def __init__(self, remaining: float | None) -> None:
        self.remaining = remaining

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float | None:
        return self.remaining


def test_a_cancel_at_the_clients_deadline_is_counted_as_the_deadline() -> None:
    """The client cancels at its own deadline, which passes before the server's by the call's
    transit: a loaded machine counted test_a_read_stops_when_its_call_ends[deadline] CANCELLED 1
    run in 4. A cancel long before the deadline (or without one) is still CANCELLED."""
    assert _ended(_EndedCall(0.4)) is grpc.StatusCode.DEADLINE_EXCEEDED
    assert _ended(_EndedCall(-0.1)) is grpc.StatusCode.DEADLINE_EXCEEDED
    assert _ended(_EndedCall(30.0)) is grpc.StatusCode.CANCELLED
    assert _ended(_EndedCall(None)) is grpc.StatusCode.CANCELLED
