"""The gRPC channel behind every client: address parsing, retries, deadlines, auth metadata,
and turning RpcError into Modelyard's own error classes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import grpc

from modelyard.errors import (
    InvalidArgument,
    ModelyardError,
    NoServer,
    Unavailable,
    from_rpc_error,
)

T = TypeVar("T")

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


def parse_uri(uri: str) -> tuple[str, bool]:
    """'host:port', 'grpc://host:port' or 'grpcs://host:port' -> (target, use_tls)."""
    if "://" not in uri:
        return uri, False
    parsed = urlparse(uri)
    if parsed.scheme not in ("grpc", "grpcs", "http", "https"):
        raise InvalidArgument(
            f"tracking URI {uri!r} has an unknown scheme; use host:port or grpcs://host:port",
            field="uri",
        )
    if not parsed.netloc:
        raise InvalidArgument(f"tracking URI {uri!r} names no host", field="uri")
    return parsed.netloc, parsed.scheme in ("grpcs", "https")


class Transport:
    def __init__(
        self,
        uri: str,
        token: str | None = None,
        tls_ca: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        tls_cert: str | None = None,
        tls_key: str | None = None,
    ) -> None:
        self.uri = uri
        self.timeout = timeout
        target, tls = parse_uri(uri)
        options = [
            ("grpc.max_receive_message_length", _MAX_MESSAGE),
            ("grpc.max_send_message_length", _MAX_MESSAGE),
            ("grpc.service_config", _SERVICE_CONFIG),
            ("grpc.enable_retries", 1),
            ("grpc.keepalive_time_ms", 30000),
        ]
        if tls or tls_ca or tls_cert:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=Path(tls_ca).read_bytes() if tls_ca else None,
                private_key=Path(tls_key).read_bytes() if tls_key else None,
                certificate_chain=Path(tls_cert).read_bytes() if tls_cert else None,
            )
            self.channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self.channel = grpc.insecure_channel(target, options=options)
        self.metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ()
        )

    def with_token(self, token: str | None) -> Transport:
        """The same channel, calling as another principal (services acting for their caller)."""
        clone = object.__new__(Transport)
        clone.__dict__.update(self.__dict__)
        clone.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        return clone

    def call(self, method: Callable[..., T], request: Any, timeout: float | None = None) -> T:
        try:
            return method(request, metadata=self.metadata, timeout=timeout or self.timeout)
        except grpc.RpcError as exc:
            raise self._error(exc) from None

    def stream(
        self, method: Callable[..., Iterator[T]], request: Any, timeout: float | None = None
    ) -> Iterator[T]:
        """A server-streaming call whose errors arrive as Modelyard errors while iterating."""
        try:
            yield from method(request, metadata=self.metadata, timeout=timeout)
        except grpc.RpcError as exc:
            raise self._error(exc) from None

    def _error(self, exc: grpc.RpcError) -> ModelyardError:
        """A call that never reached a Modelyard server (every answer from one carries a
        google.rpc.Status) also says how to get one running."""
        error = from_rpc_error(exc)
        if isinstance(error, Unavailable) and not _from_a_server(exc):
            error = NoServer(
                f"{error.message}; no Modelyard server answered at {self.uri}: start one with "
                "`modelyard up`, or point the client at yours (MODELYARD_URI)"
            )
        return error

    def close(self) -> None:
        self.channel.close()


def _from_a_server(exc: grpc.RpcError) -> bool:
    """Whether the error carries the google.rpc.Status every Modelyard server sends."""
    trailers = exc.trailing_metadata() if isinstance(exc, grpc.Call) else None
    return any(key == "grpc-status-details-bin" for key, _ in trailers or ())
