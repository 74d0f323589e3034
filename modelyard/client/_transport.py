"""The gRPC channel behind every client: address parsing, retries, deadlines, auth metadata,
and turning RpcError into Modelyard's own error classes.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import grpc

from modelyard.errors import (
    DeadlineExceeded,
    InvalidArgument,
    ModelyardError,
    NoServer,
    Unavailable,
    from_rpc_error,
)
from modelyard.services.common.watched_files import WatchedFiles

log = logging.getLogger(__name__)

T = TypeVar("T")
S = TypeVar("S")

DEFAULT_TIMEOUT = 60.0
_MAX_MESSAGE = 64 * 1024 * 1024

# Retry only what never reached a server (UNAVAILABLE), with backoff; grpc applies it per call.
_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{}],
                "retryPolicy": {
                    "maxAttempts": 5,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)


# Where `modelyard up` listens; a plain address without a port means it (gRPC alone dials 443).
DEFAULT_PORT = 50051
# TLS addresses without a port keep gRPC's (and HTTPS's) default.
TLS_DEFAULT_PORT = 443
_SCHEMES = ("grpc", "grpcs", "http", "https")
_TLS_SCHEMES = ("grpcs", "https")
# gRPC's own target syntax (unix:/run/x.sock, dns:///host:port, ...), passed on as is.
_GRPC_TARGET = re.compile(r"^(?:unix|unix-abstract|dns|ipv4|ipv6|vsock):(?!\d*$)")
# host, [IPv6 host] or either with ":port"; anything else (an unbracketed IPv6) goes to gRPC.
_HOST_PORT = re.compile(r"^(?P<host>\[[^\]]*\]|[^:\[\]]*)(?::(?P<port>[^:]*))?$")


def parse_uri(uri: str) -> tuple[str, bool]:
    """'host[:port]', 'grpc://host[:port]' or 'grpcs://host[:port]' -> (target, use_tls).

    The port is checked here, as gRPC takes any number modulo 65536 and would dial some other
    port; without one, a plain address means DEFAULT_PORT and a TLS one TLS_DEFAULT_PORT."""
    if _GRPC_TARGET.match(uri):
        return uri, False
    if "://" not in uri:
        return _with_port(uri, uri, DEFAULT_PORT), False
    parsed = urlparse(uri)
    if parsed.scheme not in _SCHEMES:
        raise InvalidArgument(
            f"tracking URI {uri!r} has an unknown scheme; use host:port or grpcs://host:port",
            field="uri",
        )
    tls = parsed.scheme in _TLS_SCHEMES
    return _with_port(parsed.netloc, uri, TLS_DEFAULT_PORT if tls else DEFAULT_PORT), tls


def _with_port(address: str, uri: str, default: int) -> str:
    """'host:port' of `address`, its port checked or `default` added."""
    match = _HOST_PORT.match(address)
    if match is None:
        return address
    host, port = match["host"], match["port"]
    if not host:
        raise InvalidArgument(
            f"tracking URI {uri!r} names no host; use host:port, e.g. 127.0.0.1:{DEFAULT_PORT}",
            field="uri",
        )
    if not port:
        return f"{host}:{default}"
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise InvalidArgument(
            f"tracking URI {uri!r} has port {port!r}; a port is a number from 1 to 65535, "
            f"e.g. {host}:{DEFAULT_PORT}",
            field="uri",
        )
    return f"{host}:{int(port)}"


class Transport:
    def __init__(
        self,
        uri: str,
        token: str | Callable[[], str] | None = None,
        tls_ca: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        waiting: Callable[[], AbstractContextManager[object]] = nullcontext,
    ) -> None:
        """`waiting`: entered around every wait for an answer; a server calling itself tells its
        RPC pool so there (services/common/thread_pool.py, `lending`)."""
        self.uri = uri
        self.timeout = timeout
        self._waiting = waiting
        target, tls = parse_uri(uri)
        options = [
            ("grpc.max_receive_message_length", _MAX_MESSAGE),
            ("grpc.max_send_message_length", _MAX_MESSAGE),
            ("grpc.service_config", _SERVICE_CONFIG),
            ("grpc.enable_retries", 1),
            ("grpc.keepalive_time_ms", 30000),
        ]
        if tls or tls_ca or tls_cert:
            files = [Path(p) for p in (tls_ca, tls_key, tls_cert) if p]

            def secure() -> grpc.Channel:
                credentials = grpc.ssl_channel_credentials(
                    root_certificates=Path(tls_ca).read_bytes() if tls_ca else None,
                    private_key=Path(tls_key).read_bytes() if tls_key else None,
                    certificate_chain=Path(tls_cert).read_bytes() if tls_cert else None,
                )
                return grpc.secure_channel(target, credentials, options=options)

            self._slot = _ChannelSlot(secure, WatchedFiles(*files) if files else None)
        else:
            self._slot = _ChannelSlot(lambda: grpc.insecure_channel(target, options=options))
        self._token = token

    @property
    def channel(self) -> grpc.Channel:
        """The channel calls go through now: a new one once the TLS files changed."""
        return self._slot.channel

    @channel.setter
    def channel(self, channel: grpc.Channel) -> None:
        self._slot.set(channel)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The call's credentials. A callable token is asked on every call: a service's token
        file may have been renewed since the last one."""
        token = self._token() if callable(self._token) else self._token
        return (("authorization", f"Bearer {token}"),) if token else ()

    def stub(self, stub_class: Callable[[grpc.Channel], S]) -> S:
        """A generated stub over this channel whose methods keep their full name, so that a
        failed call can say which service it waited on."""
        return stub_class(_NamingChannel(self._slot))

    def with_token(self, token: str | None) -> Transport:
        """The same channel, calling as another principal (services acting for their caller)."""
        clone = object.__new__(Transport)
        clone.__dict__.update(self.__dict__)
        clone._token = token
        return clone

    def call(self, method: Callable[..., T], request: Any, timeout: float | None = None) -> T:
        timeout = timeout or self.timeout
        try:
            with self._waiting():
                return method(request, metadata=self.metadata, timeout=timeout)
        except grpc.RpcError as exc:
            if not self._renewed(exc):
                raise self._error(exc, method, timeout) from None
        # The call never reached a server, so making it again is safe; once, on the new channel.
        try:
            with self._waiting():
                return method(request, metadata=self.metadata, timeout=timeout)
        except grpc.RpcError as exc:
            raise self._error(exc, method, timeout) from None

    def _renewed(self, exc: grpc.RpcError) -> bool:
        """Whether a call that got no connection (the TLS handshake failed, say) found the TLS
        files changed, and the channel was made again from them: a rotated CA, or a renewed
        client certificate, is read where it is needed, and costs nothing while calls succeed."""
        return (
            isinstance(exc, grpc.Call)
            and exc.code() == grpc.StatusCode.UNAVAILABLE
            and not _from_a_server(exc)
            and self._slot.renew()
        )

    def stream(
        self,
        method: Callable[..., Iterator[T]],
        request: Any,
        timeout: float | None = None,
        idle_timeout: float | None = None,
    ) -> Generator[T]:
        """A server-streaming call whose errors arrive as Modelyard errors while iterating.

        `timeout` bounds the whole stream (None: no bound), `idle_timeout` each wait for its
        next message: a long download may take hours while progressing, but a server that
        stops sending mid-stream should not hold its reader until the deadline. Closing the
        iterator early cancels the call, so the server stops producing what nobody reads."""
        call = None
        watch = None
        try:
            call = method(request, metadata=self.metadata, timeout=timeout)
            responses: Iterator[T] = iter(call)
            if idle_timeout is not None:
                watch = _IdleWatch(call, idle_timeout)
                responses = iter(watch)
            while True:
                # Each wait on its own: the caller's work between messages is no wait.
                with self._waiting():
                    try:
                        response = next(responses)
                    except StopIteration:
                        return
                yield response
        except grpc.RpcError as exc:
            if watch is not None and watch.fired:
                raise DeadlineExceeded(
                    f"the {service_of(method)} service at {self.uri} sent nothing for "
                    f"{idle_timeout:g} s in the middle of a stream (is it, or its storage, "
                    "hung?)",
                    resource_type="service",
                    resource_name=service_of(method),
                ) from None
            self._renewed(exc)  # the next call goes through a channel made from the new files
            raise self._error(exc, method, timeout) from None
        finally:
            if watch is not None:
                watch.stop()
            if isinstance(call, grpc.RpcContext):
                call.cancel()  # nothing if it ended; else the reader left it

    def _error(
        self, exc: grpc.RpcError, method: object = None, timeout: float | None = None
    ) -> ModelyardError:
        """A call that never reached a Modelyard server (every answer from one carries a
        google.rpc.Status) also says how to get one running; one that got no answer in time
        says which service kept it waiting, and for how long."""
        error = from_rpc_error(exc)
        if isinstance(error, DeadlineExceeded) and timeout and not _from_a_server(exc):
            return DeadlineExceeded(
                f"the {service_of(method)} service at {self.uri} did not answer within "
                f"{timeout:g} s (is it hung, or overloaded?)",
                resource_type="service",
                resource_name=service_of(method),
            )
        if isinstance(error, Unavailable) and _certificate_refused(error.message):
            # A server answered but the TLS handshake failed: starting another would not help.
            error = Unavailable(
                f"{error.message}; the TLS certificate check failed at {self.uri}: this client "
                "does not trust the server's certificate (or the server refused the client's). "
                "Give the client the CA file that signed the server's certificate: "
                "MODELYARD_TLS_CA=/path/to/ca.crt, or Client(..., tls_ca='/path/to/ca.crt') "
                "(for mutual TLS also MODELYARD_TLS_CERT / MODELYARD_TLS_KEY)",
                field="tls_ca",
            )
        elif isinstance(error, Unavailable) and _SILENT_PEER.search(error.message):
            # Something took the connection and said nothing: starting another would not help.
            error = NoServer(
                f"{error.message}; something at {self.uri} took the connection but never "
                "answered: a hung Modelyard server (check its log, or its pod: `kubectl logs`) "
                "or another program on that port (point the client at yours: MODELYARD_URI)"
            )
        elif isinstance(error, Unavailable) and not _from_a_server(exc):
            error = NoServer(
                f"{error.message}; no Modelyard server answered at {self.uri}: start one with "
                "`modelyard up`, or point the client at yours (MODELYARD_URI)"
            )
        return error

    def close(self) -> None:
        self.channel.close()


class _ChannelSlot:
    """The channel of a Transport (shared with its with_token clones), made again from its TLS
    files when they changed: in Kubernetes the CA bundle and client certificate are a mounted
    Secret, swapped by the kubelet while the pod runs. The old channel is left to its calls."""

    def __init__(self, make: Callable[[], grpc.Channel], files: WatchedFiles | None = None) -> None:
        self._make = make
        self._files = files  # stamped before the first read: a change in between is seen
        self._lock = threading.Lock()
        self.generation = 0
        self.channel = make()

    def set(self, channel: grpc.Channel) -> None:
        self.channel = channel
        self.generation += 1

    def renew(self) -> bool:
        """Whether the files changed since the channel was made, and a new one was made."""
        if self._files is None:
            return False
        with self._lock:
            try:
                if not self._files.changed():
                    return False
                channel = self._make()
            except OSError as exc:  # mid-swap: try again at the next failure
                self._files.retry()
                log.warning("TLS files could not be read again, keeping the channel: %s", exc)
                return False
            self.set(channel)
        log.info("TLS files changed; new connections use the new CA and certificate")
        return True


class _Named:
    """A stub's method, and its full name ('/modelyard.tracking.v1.TrackingService/GetRun'):
    grpc's own multi-callables keep it only in a private attribute. It calls through the
    slot's current channel (one comparison per call)."""

    def __init__(self, name: str, slot: _ChannelSlot, kind: str, args: Any, kwargs: Any) -> None:
        self.name = name
        self._slot = slot
        self._make = (kind, args, kwargs)
        self._bound: tuple[int, Any] = (-1, None)

    def _method(self) -> Any:
        generation, method = self._bound
        slot = self._slot
        if generation != slot.generation:
            generation, channel = slot.generation, slot.channel
            kind, args, kwargs = self._make
            method = getattr(channel, kind)(self.name, *args, **kwargs)
            self._bound = (generation, method)
        return method

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._method()(*args, **kwargs)

    def __getattr__(self, attribute: str) -> Any:  # with_call, future
        return getattr(self._method(), attribute)


class _NamingChannel(grpc.Channel):
    """A channel for stubs whose methods are _Named, with the name each stub gives grpc."""

    def __init__(self, slot: _ChannelSlot) -> None:
        self._slot = slot

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _Named(method, self._slot, "unary_unary", args, kwargs)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _Named(method, self._slot, "unary_stream", args, kwargs)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _Named(method, self._slot, "stream_unary", args, kwargs)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _Named(method, self._slot, "stream_stream", args, kwargs)

    def subscribe(self, callback: Any, try_to_connect: bool = False) -> None:
        self._slot.channel.subscribe(callback, try_to_connect)

    def unsubscribe(self, callback: Any) -> None:
        self._slot.channel.unsubscribe(callback)

    def close(self) -> None:
        self._slot.channel.close()

    def __enter__(self) -> _NamingChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _IdleWatch:
    """Iterates a streaming call, cancelling it once its reader has waited `seconds` for one
    message. Only waits for the server count: a reader that is slow to ask for the next one (a
    browser slow to take a download) is not the server stalling. One thread per stream."""

    def __init__(self, call: Any, seconds: float) -> None:
        self._call = call
        self._seconds = seconds
        self._changed = threading.Condition()
        self._waiting_since: float | None = None
        self._stopped = False
        self.fired = False
        threading.Thread(target=self._watch, name="modelyard-stream-watch", daemon=True).start()

    def __iter__(self) -> Iterator[Any]:
        while True:
            with self._changed:
                self._waiting_since = time.monotonic()
                self._changed.notify()
            try:
                message = next(self._call)
            except StopIteration:
                return
            finally:
                with self._changed:
                    self._waiting_since = None
            yield message

    def _watch(self) -> None:
        with self._changed:
            while not self._stopped:
                if self._waiting_since is None:
                    self._changed.wait()
                    continue
                left = self._waiting_since + self._seconds - time.monotonic()
                if left <= 0:
                    self.fired = True
                    break
                self._changed.wait(left)
        if self.fired:
            self._call.cancel()

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify()


def service_of(method: object) -> str:
    """'tracking' for a method of modelyard.tracking.v1.TrackingService (the name `modelyard
    serve` takes), else the gRPC service's full name; 'Modelyard' for a method of a stub not
    made by Transport.stub, whose name is unknown."""
    path = method.name if isinstance(method, _Named) else ""
    service = path.strip("/").partition("/")[0]
    parts = service.split(".")
    if len(parts) == 4 and parts[0] == "modelyard":  # modelyard.<name>.v1.<Name>Service
        return parts[1]
    return service or "Modelyard"


# What grpc's details say when the TLS handshake, not the connection, failed.
_TLS_FAILURE = re.compile(
    r"CERTIFICATE_VERIFY_FAILED|Tls handshake failed|SSL_ERROR_SSL|"
    r"Peer name .* is not in peer certificate"
)


# What grpc's details say when the connection was taken but the peer never spoke HTTP/2.
_SILENT_PEER = re.compile(r"timed out before receiving SETTINGS frame")


def _certificate_refused(details: str) -> bool:
    """Whether a connection failed on a certificate (untrusted CA, wrong host name, mTLS)."""
    return _TLS_FAILURE.search(details) is not None


def _from_a_server(exc: grpc.RpcError) -> bool:
    """Whether the error carries the google.rpc.Status every Modelyard server sends."""
    trailers = exc.trailing_metadata() if isinstance(exc, grpc.Call) else None
    return any(key == "grpc-status-details-bin" for key, _ in trailers or ())
