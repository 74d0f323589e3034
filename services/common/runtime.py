"""What the services of one process share: settings, their identity towards other services, and
transports to reach them. Built once by the composition root (services/apps.py).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

from modelyard.client._transport import Transport
from modelyard.errors import FailedPrecondition
from modelyard.services.common.service_token import TokenFile
from modelyard.services.common.settings import Settings

if TYPE_CHECKING:
    from modelyard.services.auth.service import AuthService


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Set by the auth service when it runs in this process.
        self.auth_service: AuthService | None = None
        self.mint_token: Callable[[str], Callable[[], str]] | None = None
        self._tokens: dict[str, Callable[[], str]] = {}
        self._token_file: TokenFile | None = None
        # This process's own server, once built (`serve_here`).
        self._own_address: str | None = None
        self._lending: Callable[[], AbstractContextManager[object]] = nullcontext

    def serve_here(
        self, address: str, lending: Callable[[], AbstractContextManager[object]]
    ) -> None:
        """The services of this process are served at `address`; a call a service makes there
        (under `modelyard up`, the registry's to tracking, serving's to the registry) waits
        inside `lending`, which lets the server's RPC pool run the call it waits on even when
        every thread is taken (services/common/thread_pool.py)."""
        self._own_address, self._lending = address, lending

    def service_token(self, service: str) -> str | Callable[[], str] | None:
        """The token `service` presents to other services (None when auth is off), or a callable
        giving the current one: a token file's, or one minted and renewed by this process."""
        auth = self.settings.auth
        if not auth.enabled:
            return None
        if auth.service_token is not None:
            return auth.service_token.get_secret_value()
        if auth.service_token_file is not None:
            if self._token_file is None:
                self._token_file = TokenFile(auth.service_token_file)
            return self._token_file
        if service not in self._tokens:
            if self.mint_token is None:
                raise FailedPrecondition(
                    f"the {service} service has no identity to call other services with; create "
                    f"one with `modelyard tokens create --principal svc-{service}` and set "
                    "MODELYARD_AUTH__SERVICE_TOKEN_FILE (a file holding it) or "
                    "MODELYARD_AUTH__SERVICE_TOKEN"
                )
            self._tokens[service] = self.mint_token(service)
        return self._tokens[service]

    def transport(self, uri: str, service: str) -> Transport:
        """A channel to another service, as `service`, with this process's TLS client settings."""
        tls = self.settings.tls
        ca = tls.ca_file or (tls.cert_file if tls.enabled else None)
        return Transport(
            uri,
            waiting=self._lending if uri == self._own_address else nullcontext,
            token=self.service_token(service),
            tls_ca=str(ca) if ca else None,
            tls_cert=str(tls.client_cert_file) if tls.client_cert_file else None,
            tls_key=str(tls.client_key_file) if tls.client_key_file else None,
        )
