"""The shared server bootstrap: error mapping, request ids, metrics, health and graceful drain."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TypeAlias

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY

from modelyard.errors import NotFound, from_rpc_error
from modelyard.services.common.logging import request_id
from modelyard.services.common.server import ModelyardServer, ServiceRegistration, create_server
from modelyard.services.common.settings import Settings
from tests.conftest import running_server
from tests.log_records import LogRecords

# Aliases, also as types: grpc_health ships no py.typed, so mypy sees its module as Any.
Req: TypeAlias = health_pb2.HealthCheckRequest
Resp: TypeAlias = health_pb2.HealthCheckResponse


class Probe:
    """A tiny test service: Fail raises, NotFound raises a domain error, Wait blocks on an event."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.collected = threading.Event()  # Collect's stream ended without an error
        self.release = threading.Event()
        self.closed = False
        self.stream_request_ids: list[str | None] = []

    def fail(self, request, context):
        raise RuntimeError("secret internal detail")

    def exit(self, request, context):
        raise SystemExit(3)  # no Exception: what a library's sys.exit() raises

    def stream_exit(self, request, context):
        yield Resp(status=Resp.SERVING)
        raise SystemExit(3)

    def not_found(self, request, context):
        raise NotFound("widget 'w' does not exist", resource_type="widget", resource_name="w")

    def wait(self, request, context):
        self.entered.set()
        assert self.release.wait(30)
        return Resp(status=Resp.SERVING)

    def stream(self, request, context):
        self.stream_request_ids.append(request_id.get())  # what its log lines are tagged with
        yield Resp(status=Resp.SERVING)
        raise NotFound("gone mid-stream", resource_type="widget", resource_name="w")

    def collect(self, requests, context):
        for _ in requests:
            self.entered.set()
        self.collected.set()
        return Resp(status=Resp.SERVING)

    def registration(self) -> ServiceRegistration:
        def handler(fn):
            return grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=Req.FromString, response_serializer=Resp.SerializeToString
            )

        handlers = grpc.method_handlers_generic_handler(
            "test.Probe",
            {
                "Fail": handler(self.fail),
                "Exit": handler(self.exit),
                "StreamExit": grpc.unary_stream_rpc_method_handler(
                    self.stream_exit,
                    request_deserializer=Req.FromString,
                    response_serializer=Resp.SerializeToString,
                ),
                "NotFound": handler(self.not_found),
                "Wait": handler(self.wait),
                "Collect": grpc.stream_unary_rpc_method_handler(
                    self.collect,
                    request_deserializer=Req.FromString,
                    response_serializer=Resp.SerializeToString,
                ),
                "Stream": grpc.unary_stream_rpc_method_handler(
                    self.stream,
                    request_deserializer=Req.FromString,
                    response_serializer=Resp.SerializeToString,
                ),
            },
        )

        def close() -> None:
            self.closed = True

        return ServiceRegistration(
            service_names=("test.Probe",),
            register=lambda server: server.add_generic_rpc_handlers((handlers,)),
            close=close,
        )


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
def probe_server(probe: Probe, tmp_path) -> Iterator[ModelyardServer]:
    server = create_server(Settings(home=tmp_path, port=0, grace_period=5), [probe.registration()])
    server.start()
    yield server
    probe.release.set()
    server.stop(0)


def call(server: ModelyardServer, method: str, metadata=()):
    with grpc.insecure_channel(server.address) as channel:
        stub = channel.unary_unary(
            f"/test.Probe/{method}",
            request_serializer=Req.SerializeToString,
            response_deserializer=Resp.FromString,
        )
        return stub(Req(), metadata=metadata, timeout=30)


def test_unexpected_error_is_internal_with_request_id_and_no_leak(
    probe_server: ModelyardServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR), pytest.raises(grpc.RpcError) as err:
        call(probe_server, "Fail", metadata=(("x-request-id", "req-123"),))
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert "secret internal detail" not in err.value.details()
    assert "Traceback" not in err.value.details()
    assert from_rpc_error(err.value).request_id == "req-123"
    logged = [r.exc_info for r in caplog.records if r.exc_info]
    assert logged and "secret internal detail" in str(logged[0][1])


def test_a_handler_that_exits_is_answered_internal(probe_server: ModelyardServer) -> None:
    """SystemExit is no Exception: grpc left such a call unanswered until its deadline."""
    with pytest.raises(grpc.RpcError) as err:
        call(probe_server, "Exit", metadata=(("x-request-id", "req-exit"),))
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert from_rpc_error(err.value).request_id == "req-exit"
    with grpc.insecure_channel(probe_server.address) as channel:
        stream = channel.unary_stream(
            "/test.Probe/StreamExit",
            request_serializer=Req.SerializeToString,
            response_deserializer=Resp.FromString,
        )
        replies = stream(Req(), timeout=30)
        assert next(replies).status == Resp.SERVING
        with pytest.raises(grpc.RpcError) as err:
            next(replies)
    assert err.value.code() == grpc.StatusCode.INTERNAL


def test_a_call_the_client_cancels_is_no_server_error(
    probe: Probe, probe_server: ModelyardServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Reading the stream of a cancelled call raises in the handler; the error mapping logs that
    once, as the client's doing without a traceback, not as an unhandled error. (grpc may also
    end the stream quietly, when the empty read is seen before the cancellation: then the
    handler returns and nothing is logged, which CI once met.)"""
    name = "modelyard.services.common.interceptors"
    caplog.set_level(logging.INFO, logger=name)
    records = LogRecords()
    records.first = probe.collected  # whichever way the handler ends
    logging.getLogger(name).addHandler(records)
    gate = threading.Event()

    def requests() -> Iterator[Req]:
        yield Req()
        gate.wait(30)  # the stream stays open until the call is cancelled

    try:
        with grpc.insecure_channel(probe_server.address) as channel:
            stub = channel.stream_unary(
                "/test.Probe/Collect",
                request_serializer=Req.SerializeToString,
                response_deserializer=Resp.FromString,
            )
            future = stub.future(requests(), timeout=30)
            assert probe.entered.wait(30)
            future.cancel()
            gate.set()
            assert records.first.wait(30)  # the mapping has judged the handler's error
    finally:
        logging.getLogger(name).removeHandler(records)
    assert future.cancelled()
    if not records.records:
        return  # the stream ended quietly: nothing to log
    [record] = records.records
    assert record.levelno == logging.INFO and record.exc_info is None
    assert "/test.Probe/Collect ended by the client" in record.getMessage()


def test_domain_error_maps_to_its_code_with_resource(probe_server: ModelyardServer) -> None:
    with pytest.raises(grpc.RpcError) as err:
        call(probe_server, "NotFound")
    rebuilt = from_rpc_error(err.value)
    assert isinstance(rebuilt, NotFound)
    assert (rebuilt.resource_type, rebuilt.resource_name) == ("widget", "w")


def test_error_mid_stream_keeps_its_code(probe_server: ModelyardServer) -> None:
    with grpc.insecure_channel(probe_server.address) as channel:
        stub = channel.unary_stream(
            "/test.Probe/Stream",
            request_serializer=Req.SerializeToString,
            response_deserializer=Resp.FromString,
        )
        received = []
        with pytest.raises(grpc.RpcError) as err:
            for msg in stub(Req(), timeout=30):
                received.append(msg)
    assert len(received) == 1
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_streaming_calls_log_with_their_request_id(
    probe: Probe, probe_server: ModelyardServer
) -> None:
    with grpc.insecure_channel(probe_server.address) as channel:
        stub = channel.unary_stream(
            "/test.Probe/Stream",
            request_serializer=Req.SerializeToString,
            response_deserializer=Resp.FromString,
        )
        with pytest.raises(grpc.RpcError):
            list(stub(Req(), timeout=30, metadata=(("x-request-id", "stream-7"),)))
    assert probe.stream_request_ids == ["stream-7"]


def test_metrics_count_calls_by_code(probe_server: ModelyardServer) -> None:
    def sample(name: str, service: str, method: str, code: str) -> float:
        labels = {"service": service, "method": method, "code": code}
        return REGISTRY.get_sample_value(name, labels) or 0.0

    def counts(service: str, method: str, code: str) -> tuple[float, float]:
        return (
            sample("modelyard_rpc_requests_total", service, method, code),
            sample("modelyard_rpc_errors_total", service, method, code),
        )

    health = "grpc.health.v1.Health"
    failed_before = counts("test.Probe", "NotFound", "NOT_FOUND")
    ok_before = counts(health, "Check", "OK")
    for _ in range(3):
        with pytest.raises(grpc.RpcError):
            call(probe_server, "NotFound")
    with grpc.insecure_channel(probe_server.address) as channel:
        for _ in range(2):
            health_pb2_grpc.HealthStub(channel).Check(Req(), timeout=30)
    assert counts("test.Probe", "NotFound", "NOT_FOUND") == tuple(n + 3 for n in failed_before)
    assert counts(health, "Check", "OK") == (ok_before[0] + 2, 0.0)  # OK is no error
    observed = REGISTRY.get_sample_value(
        "modelyard_rpc_latency_seconds_count", {"service": "test.Probe", "method": "NotFound"}
    )
    assert observed and observed >= 3


def test_graceful_drain(probe: Probe, probe_server: ModelyardServer) -> None:
    """In-flight calls finish; health turns NOT_SERVING; stores close after the drain."""
    result: dict[str, Resp] = {}

    def in_flight() -> None:
        result["reply"] = call(probe_server, "Wait")

    caller = threading.Thread(target=in_flight)
    caller.start()
    assert probe.entered.wait(30)
    channel = grpc.insecure_channel(probe_server.address)
    health = health_pb2_grpc.HealthStub(channel)
    assert health.Check(Req(service="test.Probe")).status == Resp.SERVING
    stopper = threading.Thread(target=probe_server.stop)
    stopper.start()
    probe_server.health_draining.wait(30)
    assert not probe.closed  # still draining: the call has not finished
    probe.release.set()
    caller.join(30)
    stopper.join(30)
    assert result["reply"].status == Resp.SERVING
    assert probe.closed
    channel.close()


def test_health_not_serving_while_draining(probe: Probe, probe_server: ModelyardServer) -> None:
    statuses = []
    channel = grpc.insecure_channel(probe_server.address)
    health = health_pb2_grpc.HealthStub(channel)
    caller = threading.Thread(target=lambda: call(probe_server, "Wait"))
    caller.start()
    assert probe.entered.wait(30)
    watch = health.Watch(Req(service="test.Probe"))
    statuses.append(next(watch).status)
    stopper = threading.Thread(target=probe_server.stop)
    stopper.start()
    statuses.append(next(watch).status)
    watch.cancel()
    probe.release.set()
    caller.join(30)
    stopper.join(30)
    channel.close()
    assert statuses == [Resp.SERVING, Resp.NOT_SERVING]


def test_port_conflict_is_a_clear_error(probe_server: ModelyardServer, tmp_path) -> None:
    port = int(probe_server.address.rsplit(":", 1)[1])
    with pytest.raises(OSError, match="port is taken"):
        create_server(Settings(home=tmp_path, port=port), [])


def test_calls_are_answered_while_long_calls_hold_every_core_thread(probe: Probe, tmp_path) -> None:
    """Streams and waiting calls hold their threads; the pool grows rather than starve others."""
    settings = Settings(home=tmp_path, port=0, grace_period=0, core_workers=1, max_workers=4)
    server = create_server(settings, [probe.registration()])
    server.start()
    channel = grpc.insecure_channel(server.address)
    try:
        wait = channel.unary_unary(
            "/test.Probe/Wait",
            request_serializer=Req.SerializeToString,
            response_deserializer=Resp.FromString,
        )
        held = [wait.future(Req(), timeout=30) for _ in range(2)]  # more than the core
        assert probe.entered.wait(30)
        reply = health_pb2_grpc.HealthStub(channel).Check(Req(), timeout=10)
        assert reply.status == Resp.SERVING
        assert not any(f.done() for f in held)
        # One core thread and two added, one per call that found every thread stuck.
        assert REGISTRY.get_sample_value("modelyard_rpc_threads") == 3
        assert REGISTRY.get_sample_value("modelyard_rpc_queued") == 0
        probe.release.set()
        assert all(f.result().status == Resp.SERVING for f in held)
    finally:
        probe.release.set()
        channel.close()
        server.stop(0)


def test_no_rpc_thread_outlives_stop(tmp_path: Path) -> None:
    """stop() let the RPC pool's threads go without waiting for them: one could still be
    finishing its call (freeing what the call held, DuckDB's or Arrow's native state) as the
    process went on to exit and the interpreter finalized, which aborts. stop() now returns once
    they have left."""
    from modelyard.features import FeatureStoreClient

    left = []
    for i in range(100):
        settings = Settings(home=tmp_path / str(i), port=0, grace_period=0)
        with (
            running_server(settings, ("features",)) as server,
            FeatureStoreClient(server.address) as store,
        ):
            for _ in range(5):
                store.list_entities()
        left += [t.name for t in threading.enumerate() if t.name.startswith("modelyard-rpc")]
    assert not left, left
