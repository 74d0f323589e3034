"""A server with authentication on, an admin, and helpers to make principals and clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelyard import Client
from modelyard.services.auth.app import open_service
from modelyard.services.common.runtime import Runtime
from modelyard.services.common.server import ModelyardServer
from modelyard.services.common.settings import AuthSettings, FeaturesSettings, Settings
from tests.conftest import running_server


@dataclass
class Secure:
    server: ModelyardServer
    settings: Settings
    admin_token: str
    clients: list[Client]

    @property
    def address(self) -> str:
        return self.server.address

    def client(self, token: str | None) -> Client:
        c = Client(self.address, token=token)
        self.clients.append(c)
        return c

    @property
    def admin(self) -> Client:
        return self.client(self.admin_token)

    def user(self, name: str, *roles: str) -> Client:
        """A new principal with `roles` and a client holding its token."""
        self.admin.create_principal(name, list(roles) or ["viewer"])
        token, _ = self.admin.create_token(name, "test")
        return self.client(token)

    def refresh(self) -> None:
        """Make the server see role and revocation changes now (instead of within 5 s)."""
        from modelyard.services.common.auth.interceptor import AuthInterceptor

        for interceptor in self.server._server._state.interceptor_pipeline.interceptors:
            if isinstance(interceptor, AuthInterceptor) and interceptor._authenticate:
                interceptor._authenticate.state.refresh_now()


def secure_settings(home: Path, backend_store_uri: str | None = None, **auth: object) -> Settings:
    """Editors may point feature sources into the test's directory (home's parent), where the
    tests make their feature repos."""
    return Settings(
        home=home,
        port=0,
        grace_period=0,
        backend_store_uri=backend_store_uri,
        auth=AuthSettings(enabled=True, **auth),
        features=FeaturesSettings(source_locations=[str(home.parent)]),
    )


def remote_tracking_settings(secure: Secure, home: Path, **auth: object) -> Settings:
    """A tracking service on its own, as in its pod: it checks tokens with `secure`'s public key
    and calls `secure`'s auth service with the service token `auth` gives."""
    return Settings(
        home=home,
        port=0,
        grace_period=0,
        auth=AuthSettings(
            enabled=True,
            auth_uri=secure.address,
            public_key_file=secure.settings.home_dir / "auth" / "signing-key.pub.pem",
            **auth,
        ),
    )


@pytest.fixture
def make_secure(tmp_path: Path) -> Iterator[Callable[..., Secure]]:
    opened: list[tuple[object, Secure]] = []

    def make(backend_store_uri: str | None = None, **auth: object) -> Secure:
        settings = secure_settings(tmp_path / f"home{len(opened)}", backend_store_uri, **auth)
        service = open_service(settings, Runtime(settings))
        token = service.bootstrap_admin("root").token
        service.store.close()
        context = running_server(settings)
        server = context.__enter__()
        secure = Secure(server, settings, token, [])
        opened.append((context, secure))
        return secure

    yield make
    for context, secure in opened:
        for c in secure.clients:
            c.close()
        context.__exit__(None, None, None)  # type: ignore[attr-defined]


@pytest.fixture
def secure(make_secure: Callable[..., Secure]) -> Secure:
    return make_secure()
