"""`modelyard.Client`: one object for every Modelyard service, shaped like MlflowClient.

    client = Client("127.0.0.1:50051")
    run = client.create_run(client.create_experiment("demo"))
    client.log_metric(run.info.run_id, "rmse", 0.7)

Each service has its own client class (TrackingClient, ...) holding that service's methods;
Client combines them, so the flat MlflowClient style and `client.tracking.<method>` both work.
"""

from __future__ import annotations

from modelyard.client._transport import Transport
from modelyard.client.auth import AuthClient
from modelyard.client.config import (
    default_timeout,
    default_tls_ca,
    default_tls_cert,
    default_tls_key,
    default_token,
    default_uri,
)
from modelyard.client.registry import RegistryClient
from modelyard.client.serving import ServingClient
from modelyard.client.tracking import TrackingClient


class Client(TrackingClient, RegistryClient, ServingClient, AuthClient):
    """Every service's methods on one object; `client.tracking` etc. are the same object."""

    def __init__(
        self,
        uri: str | None = None,
        token: str | None = None,
        *,
        tracking_uri: str | None = None,
        tls_ca: str | None = None,
        timeout: float | None = None,
    ) -> None:
        """`tracking_uri` is MlflowClient's name for `uri`, so `Client(tracking_uri=...)` ports."""
        if uri and tracking_uri and uri != tracking_uri:
            raise ValueError(
                f"uri {uri!r} and tracking_uri {tracking_uri!r} differ; pass one of them"
            )
        self.uri = uri or tracking_uri or default_uri()
        self._transport = Transport(
            self.uri,
            token or default_token(),
            tls_ca or default_tls_ca(),
            timeout or default_timeout(),
            tls_cert=default_tls_cert(),
            tls_key=default_tls_key(),
        )
        TrackingClient.__init__(self, self._transport)
        RegistryClient.__init__(self, self._transport)
        ServingClient.__init__(self, self._transport)
        AuthClient.__init__(self, self._transport)

    @classmethod
    def over(cls, transport: Transport) -> Client:
        """A client on an existing channel: one channel shared by many callers, each with its
        own token (`transport.with_token(...)`), as the web UI does."""
        client = cls.__new__(cls)
        client.uri = transport.uri
        client._transport = transport
        TrackingClient.__init__(client, transport)
        RegistryClient.__init__(client, transport)
        ServingClient.__init__(client, transport)
        AuthClient.__init__(client, transport)
        return client

    @property
    def tracking_uri(self) -> str:
        return self.uri

    @property
    def tracking(self) -> TrackingClient:
        return self

    @property
    def registry(self) -> RegistryClient:
        return self

    @property
    def serving(self) -> ServingClient:
        return self

    @property
    def auth(self) -> AuthClient:
        return self

    def close(self) -> None:
        self._finish_background()
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.uri!r})"


__all__ = ["AuthClient", "Client", "RegistryClient", "ServingClient", "TrackingClient"]
