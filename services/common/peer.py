"""Another service as this one reaches it over gRPC: as itself (its service identity) or on behalf
of its caller (with the caller's own token)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from modelyard.client._transport import Transport
from modelyard.errors import Unavailable
from modelyard.services.common import identity
from modelyard.services.common.runtime import Runtime

C = TypeVar("C")


class Peer(Generic[C]):
    """A client factory for one peer service. Its address is configured, or this process's own
    once it listens (`connect`, under `modelyard up`): the same gRPC path as in a cluster.

    Clients are made under a lock that close() also takes: background threads (change feeds,
    model loads, artifact copies) may ask for one while the server shuts down, and grpcio crashes
    the process when a stub is made on a channel another thread is closing."""

    def __init__(
        self,
        runtime: Runtime,
        uri: str | None,
        service: str,
        make: Callable[[Transport], C],
        missing: str,
    ) -> None:
        self._runtime = runtime
        self._service = service
        self._make = make
        self._missing = missing
        self._transport: Transport | None = None
        self._lock = threading.Lock()
        self._closed = False
        if uri:
            self.connect(uri)

    def connect(self, uri: str) -> None:
        with self._lock:
            if self._transport is None and not self._closed:
                self._transport = self._runtime.transport(uri, self._service)

    def _client(self, as_caller: bool) -> C:
        with self._lock:
            if self._closed:
                raise Unavailable(f"{self._service} is shutting down; try again on another replica")
            if self._transport is None:
                raise Unavailable(self._missing)
            transport = self._transport
            if as_caller:
                me = identity.current()
                if me.enforced:
                    transport = transport.with_token(me.token)
            return self._make(transport)

    def service(self) -> C:
        """A client calling as this service itself (background work)."""
        return self._client(as_caller=False)

    def caller(self) -> C:
        """A client calling on behalf of the current caller, with the caller's own token."""
        return self._client(as_caller=True)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._transport is not None:
                self._transport.close()
