"""The web UI: server-rendered pages over the services' gRPC APIs, as the signed-in user.

Every page asks the services with the caller's own token (kept in this process, found by the id
in a signed, HTTP-only session cookie: see sessions.py), so the UI shows nothing the caller could
not fetch with the SDK; with auth off there is no login. Pages are Jinja2 templates with
autoescaping on; charts are Plotly figures drawn by the plotly.js that ships inside the `plotly`
package, so nothing needs Node.js.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import psutil
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelyard.client._transport import Transport
from modelyard.services.common.settings import Settings
from modelyard.services.ui import pages, sessions
from modelyard.services.ui.pages.session import RequireIdentity
from modelyard.services.ui.web import (
    UI,
    CatchUnexpected,
    SecurityHeaders,
    error_handlers,
    plotly_js,
)

STATIC = Path(__file__).parent / "static"
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")
ALL_ADDRESSES = ("0.0.0.0", "::", "")


def session_secret(settings: Settings) -> str:
    """The configured secret, or one kept in <home>/ui/session.key (made on first use)."""
    if settings.ui.session_secret is not None:
        return settings.ui.session_secret.get_secret_value()
    path = settings.home_dir / "ui" / "session.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip()


def allowed_hosts(settings: Settings) -> list[str]:
    """The Host names the UI answers to: localhost, the address it is bound to (each of this
    machine's addresses and names when bound to all), and ui.allowed_hosts. A page requested
    under another name may be a DNS rebinding attack: an attacker's name that resolves here,
    whose page would then read and post to the UI as the same origin."""
    bound = settings.ui.host or settings.host
    hosts = {*LOCAL_HOSTS, *settings.ui.allowed_hosts}
    if bound in ALL_ADDRESSES:
        hosts.update({socket.gethostname(), socket.getfqdn()})
        for addresses in psutil.net_if_addrs().values():
            hosts.update(_literal(a.address) for a in addresses if a.family in _IP_FAMILIES)
    else:
        hosts.add(_literal(bound))
    return sorted(hosts)


_IP_FAMILIES = (socket.AF_INET, socket.AF_INET6)


def _literal(address: str) -> str:
    """An address as a Host header names it: IPv6 in brackets, without a zone (fe80::1%eth0)."""
    return f"[{address.split('%')[0]}]" if ":" in address else address


class KnownHosts:
    """Starlette's TrustedHostMiddleware, with a refusal that says what to do: its own is a bare
    "Invalid host header", which leaves whoever put the UI behind a new name guessing."""

    def __init__(self, app: ASGIApp, allowed_hosts: list[str]) -> None:
        self.app = app
        self.allowed = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        reached = False

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            nonlocal reached
            reached = True
            await self.app(scope, receive, send)

        refusal: list[Message] = []

        async def send_or_keep(message: Message) -> None:
            if reached:
                await send(message)
            else:  # the host check's own refusal, replaced below
                refusal.append(message)

        await TrustedHostMiddleware(app, allowed_hosts=self.allowed)(scope, receive, send_or_keep)
        if refusal and scope["type"] == "http":
            host = Headers(scope=scope).get("host", "").split(":")[0]
            response = PlainTextResponse(
                f"This UI does not answer to the host name {host!r} (it answers to "
                f"{', '.join(self.allowed)}). If {host!r} is how users reach it, add it to "
                "MODELYARD_UI__ALLOWED_HOSTS (a JSON list), or set ui.externalUri in the Helm "
                "chart.",
                status_code=400,
            )
            await response(scope, receive, send)
        else:
            for message in refusal:
                await send(message)


def _closing(ui: UI) -> Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        ui.close()

    return lifespan


def create_app(settings: Settings, services_uri: str, tls_ca: str | None = None) -> Starlette:
    ui = UI(Transport(services_uri, None, tls_ca, timeout=settings.ui.call_timeout))
    app = Starlette(
        routes=[
            Route("/static/plotly.min.js", plotly_js),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
            *pages.routes(),
        ],
        middleware=[
            Middleware(KnownHosts, allowed_hosts=allowed_hosts(settings)),
            Middleware(SecurityHeaders),
            Middleware(
                SessionMiddleware,
                secret_key=session_secret(settings),
                session_cookie="modelyard_session",
                same_site="lax",
                https_only=settings.ui.secure_cookies or settings.tls.enabled,
                max_age=sessions.LIFETIME,
            ),
            Middleware(CatchUnexpected),
            Middleware(RequireIdentity),
        ],
        exception_handlers=error_handlers(),
        lifespan=_closing(ui),
    )
    app.state.ui = ui
    return app
