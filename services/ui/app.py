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
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from modelyard.client._transport import Transport
from modelyard.services.common.settings import Settings
from modelyard.services.ui import pages, sessions
from modelyard.services.ui.pages.session import RequireIdentity
from modelyard.services.ui.web import UI, SecurityHeaders, error_handlers, plotly_js

STATIC = Path(__file__).parent / "static"


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


def _closing(ui: UI) -> Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        ui.close()

    return lifespan


def create_app(settings: Settings, services_uri: str, tls_ca: str | None = None) -> Starlette:
    ui = UI(Transport(services_uri, None, tls_ca))
    app = Starlette(
        routes=[
            Route("/static/plotly.min.js", plotly_js),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
            *pages.routes(),
        ],
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(
                SessionMiddleware,
                secret_key=session_secret(settings),
                session_cookie="modelyard_session",
                same_site="lax",
                https_only=settings.ui.secure_cookies or settings.tls.enabled,
                max_age=sessions.LIFETIME,
            ),
            Middleware(RequireIdentity),
        ],
        exception_handlers=error_handlers(),
        lifespan=_closing(ui),
    )
    app.state.ui = ui
    return app
