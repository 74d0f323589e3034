"""One server bootstrap for every service: gRPC server, health, reflection, interceptors, drain.

`create_server` binds (port 0 picks a free port, which tests use) and returns a `ModelyardServer`;
`serve_forever` starts it and drains on SIGTERM/SIGINT in the documented order: health turns
NOT_SERVING, new calls are refused, each service ends its open watch streams, in-flight calls get
`grace_period` seconds, then each service closes its stores.
"""

from __future__ import annotations

import errno
import gc
import socket
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from modelyard.services.common import reflection
from modelyard.services.common.interceptors import ErrorMappingInterceptor, MetricsInterceptor
from modelyard.services.common.logging import get_logger
from modelyard.services.common.metrics import RPC_QUEUED, RPC_THREADS
from modelyard.services.common.settings import Settings
from modelyard.services.common.signals import on_stop_signals, wait_for
from modelyard.services.common.thread_pool import ElasticThreadPool
from modelyard.services.common.watched_files import WatchedFiles

if TYPE_CHECKING:
    import signal

    from google.protobuf.descriptor_pool import DescriptorPool

    from modelyard.services.common.auth.interceptor import ServiceAccess

log = get_logger(__name__)

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# How long a stop waits for calls' handlers to return after grpc cancelled their calls.
_THREADS_LEAVE_SECONDS = 10.0


@dataclass(frozen=True)
class ServiceRegistration:
    """What a service contributes to a server: its servicer(s) and how to release resources."""

    # Fully qualified gRPC service names, for health and reflection.
    service_names: tuple[str, ...]
    register: Callable[[grpc.Server], None]
    close: Callable[[], None] = field(default=lambda: None)
    # Called as a drain starts, once new calls are refused: ends the streams that would otherwise
    # hold the drain for the whole grace period (change feeds, watches). Clients watch again,
    # from where they were, on another replica.
    drain: Callable[[], None] = field(default=lambda: None)
    # Called once the server listens; `address` is where this process can be reached.
    on_start: Callable[[str], None] = field(default=lambda address: None)
    # For services that cannot answer as soon as they listen (an endpoint's own pods load its
    # models first): called after on_start with a function to report, now and on every change,
    # whether they can. Their health stays NOT_SERVING until they report True, so a readiness
    # probe does not send them calls (nor a rollout drop the pods that answer) too early. None:
    # ready once listening.
    follow_ready: Callable[[Callable[[bool], None]], None] | None = None
    # Each gRPC service's access table and authorizer (see services/common/auth).
    access: dict[str, ServiceAccess] = field(default_factory=dict)
    # Where its services' descriptors live, when not in protobuf's default pool (for reflection).
    descriptor_pool: DescriptorPool | None = None
    # Streaming methods ('/pkg.Service/Method') that answer each request message on its own,
    # errors included: see ErrorMappingInterceptor.
    per_message_errors: frozenset[str] = frozenset()


# grpc reads requests up to this many times max_message_mb, for the error mapping to refuse the
# ones over it on their own (a ModelStreamInfer stream goes on, a unary caller is told what to
# do); what grpc itself refuses ends its call, a stream with all it still had to answer. More
# headroom costs memory: each call may hold a request this large before it is refused.
RECEIVE_HEADROOM = 2


class ModelyardServer:
    def __init__(
        self,
        settings: Settings,
        registrations: Sequence[ServiceRegistration],
        interceptors: Sequence[grpc.ServerInterceptor] = (),
    ) -> None:
        self.settings = settings
        self._registrations = list(registrations)
        max_bytes = settings.max_message_bytes
        self._pool = ElasticThreadPool(
            min(settings.core_workers, settings.max_workers),
            settings.max_workers,
            name="modelyard-rpc",
        )
        RPC_THREADS.set_function(lambda: self._pool.threads)
        RPC_QUEUED.set_function(lambda: self._pool.queued)
        self._server = grpc.server(
            self._pool,
            # Error mapping first, so refusals from the interceptors after it map like any error;
            # metrics next, so those refusals (auth's) are counted like any error.
            interceptors=[
                ErrorMappingInterceptor(
                    frozenset().union(*(r.per_message_errors for r in self._registrations)),
                    max_bytes,
                ),
                MetricsInterceptor(),
                *interceptors,
            ],
            options=[
                ("grpc.max_receive_message_length", max_bytes * RECEIVE_HEADROOM),
                ("grpc.max_send_message_length", max_bytes),
                # Two servers must never share a port silently.
                ("grpc.so_reuseport", 0),
            ],
        )
        self.health = health.HealthServicer(experimental_non_blocking=True)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        self._health_server = self._plaintext_health(settings)
        names: list[str] = [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name]
        for registration in self._registrations:
            registration.register(self._server)
            names.extend(registration.service_names)
        self.service_names = tuple(names)
        pools = [r.descriptor_pool for r in self._registrations if r.descriptor_pool is not None]
        reflection.enable(self._server, names, pools)
        taken = OSError(
            f"could not listen on {settings.address}: the port is taken or the host is not "
            "a local address; pick another with --port"
        )
        if _port_taken(settings.host, settings.port):
            raise taken  # before grpc tries, which logs its own error line above ours
        try:
            if settings.tls.enabled:
                self.port = self._server.add_secure_port(settings.address, _credentials(settings))
            else:
                self.port = self._server.add_insecure_port(settings.address)
        except RuntimeError:  # grpc raises on a failed bind (older versions returned 0)
            self.port = 0
        if self.port == 0:
            raise taken
        self._stopped = threading.Event()
        # Set once health reports NOT_SERVING at the start of a drain.
        self.health_draining = threading.Event()
        self._stop_lock = threading.Lock()

    def _plaintext_health(self, settings: Settings) -> grpc.Server | None:
        """Health checks only, without TLS, on `health_port`: kubelets probe in plaintext. It
        shares the health servicer, so a drain shows there too."""
        if settings.health_port is None:
            return None
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        address = f"{settings.host}:{settings.health_port}"
        taken = OSError(f"could not listen for health checks on {address}; pick another port")
        if _port_taken(settings.host, settings.health_port):
            raise taken
        try:
            self.health_port = server.add_insecure_port(address)
        except RuntimeError:
            self.health_port = 0
        if self.health_port == 0:
            raise taken
        return server

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.port}"

    def lending(self) -> AbstractContextManager[None]:
        """Around a wait of one of this server's calls on another call to this server."""
        return self._pool.lending()

    def start(self) -> None:
        self._server.start()
        if self._health_server is not None:
            self._health_server.start()
        waiting = {n for r in self._registrations if r.follow_ready for n in r.service_names}
        for name in ("", *self.service_names):
            self.health.set(name, _NOT_SERVING if name in waiting else _SERVING)
        for registration in self._registrations:
            registration.on_start(self.address)
        for registration in self._registrations:
            if registration.follow_ready is not None:
                registration.follow_ready(partial(self._report_ready, registration.service_names))
        log.info("listening on %s", self.address)

    def _report_ready(self, names: tuple[str, ...], ready: bool) -> None:
        """Health of `names`; after a drain began, the health servicer ignores it."""
        for name in names:
            self.health.set(name, _SERVING if ready else _NOT_SERVING)

    def stop(self, grace: float | None = None) -> None:
        """Drain and stop; safe to call more than once and from any thread."""
        with self._stop_lock:
            if self._stopped.is_set():
                return
            grace = self.settings.grace_period if grace is None else grace
            try:
                log.info("draining: health NOT_SERVING, %.1fs grace for in-flight calls", grace)
                self.health.enter_graceful_shutdown()
                self.health_draining.set()
                stopped = self._server.stop(grace)
                for registration in reversed(self._registrations):
                    try:
                        registration.drain()
                    except Exception:
                        log.exception("error while ending a service's streams")
                stopped.wait()
                # Wait for the RPC threads: one still finishing its call (freeing DuckDB's or
                # Arrow's native state) as a process that stopped its server exits would run
                # while the interpreter finalizes, which aborts the process.
                self._pool.shutdown(wait=False, cancel_futures=True)
                if not self._pool.join(_THREADS_LEAVE_SECONDS):
                    log.warning(
                        "RPC threads still running %.0fs after the drain; stopping anyway",
                        _THREADS_LEAVE_SECONDS,
                    )
                if self._health_server is not None:
                    self._health_server.stop(0).wait()
                for registration in reversed(self._registrations):
                    try:
                        registration.close()
                    except Exception:
                        log.exception("error while closing a service")
            except BaseException:
                # Whatever went wrong, the process must not wait forever for a drain that died.
                log.exception("error while draining; stopping anyway")
                raise
            finally:
                self._stopped.set()
            log.info("stopped")

    def wait(self) -> None:
        wait_for(self._stopped)


def _port_taken(host: str, port: int) -> bool:
    """Whether another socket listens on `port` of `host`. Checked before grpc binds so that a
    taken port gets our message alone: grpc's failed bind also logs a C-level error line. A race
    in between is still caught by grpc's own refusal."""
    if port == 0:
        return False
    try:
        addresses = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except OSError:
        return False  # let grpc judge the host
    # grpc listens if any resolved address binds, so the port counts as taken only if all are.
    return bool(addresses) and all(
        _in_use(family, kind, proto, address) for family, kind, proto, _, address in addresses
    )


def _in_use(family: int, kind: int, proto: int, address: tuple) -> bool:
    with socket.socket(family, kind, proto) as probe:
        # As grpc binds: SO_REUSEADDR passes a port left in TIME_WAIT, not a listener.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def _credentials(settings: Settings) -> grpc.ServerCredentials:
    tls = settings.tls
    if tls.cert_file is None or tls.key_file is None:
        raise ValueError("TLS needs both tls.cert_file and tls.key_file")
    files = _CertificateFiles(tls.key_file, tls.cert_file, tls.client_ca_file)
    return grpc.dynamic_ssl_server_credentials(
        files.load(),
        files.changed,
        require_client_authentication=tls.client_ca_file is not None,
    )


class _CertificateFiles:
    """The server's key, certificate and client CA, read again when the files change (a
    renewed certificate swapped into the pod): grpc asks `changed` before each new connection's
    handshake."""

    def __init__(self, key: Path, cert: Path, client_ca: Path | None) -> None:
        self._files = WatchedFiles(key, cert, *([client_ca] if client_ca else []))
        self._lock = threading.Lock()

    def load(self) -> grpc.ServerCertificateConfiguration:
        key, cert, *ca = (p.read_bytes() for p in self._files.paths)
        return grpc.ssl_server_certificate_configuration(
            [(key, cert)], root_certificates=ca[0] if ca else None
        )

    def changed(self) -> grpc.ServerCertificateConfiguration | None:
        """The files' new contents, or None while they are what the server presents."""
        with self._lock:
            try:
                if not self._files.changed():
                    return None
                configuration = self.load()
            except OSError as exc:  # mid-swap, or gone: keep serving what we have
                log.warning("TLS files could not be read again, keeping the current ones: %s", exc)
                self._files.retry()
                return None
            log.info("TLS certificate files changed; new connections get the new certificate")
            return configuration


def create_server(
    settings: Settings,
    registrations: Sequence[ServiceRegistration],
    interceptors: Sequence[grpc.ServerInterceptor] = (),
) -> ModelyardServer:
    return ModelyardServer(settings, registrations, interceptors)


def serve_forever(server: ModelyardServer, on_ready: Callable[[str], None] | None = None) -> None:
    """Start, then block until SIGTERM/SIGINT has drained the server."""

    def request_stop(sig: signal.Signals) -> None:
        log.info("received %s", sig.name)
        threading.Thread(target=server.stop, name="modelyard-drain", daemon=True).start()

    with on_stop_signals(request_stop):
        # What is loaded by now (modules, descriptors, stores) lives as long as the process: keep
        # it out of the cyclic collector's passes, so a collection that lands in a request stays
        # short.
        gc.collect()
        gc.freeze()
        server.start()
        if on_ready:
            on_ready(server.address)
        server.wait()
