"""Signing in with a token (when the services check tokens) and out again."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from modelyard.client import Client
from modelyard.errors import ModelyardError, Unauthenticated
from modelyard.services.ui.sessions import Identity
from modelyard.services.ui.web import (
    check_csrf,
    client,
    error_page,
    identity_of,
    local_path,
    redirect,
    render,
    sign_in,
    sign_out,
    to_login,
    ui_of,
)

# Characters of a pasted token at most: ours are under 1000, and gRPC refuses a header of more
# than 16 KB (as it refuses one with a character past ASCII or a line break in it).
MAX_TOKEN = 8000


def _identify(request: Request) -> None:
    """Without a token: who the services take an anonymous caller for (when auth is off)."""
    principal, enforced = client(request).whoami()
    sign_in(request, Identity(principal.name, enforced))


class RequireIdentity:
    """Learn who the caller is once per session; with auth on and no token, send them to log in."""

    OPEN = ("/login", "/static/", "/healthz")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(self.OPEN):
            request = Request(scope, receive)
            if identity_of(request) is None:
                try:
                    await run_in_threadpool(_identify, request)
                except Unauthenticated:
                    await to_login(request)(scope, receive, send)
                    return
                except ModelyardError as exc:
                    # Said now: the page's own calls would wait for the same failure again
                    # (a hung service: twice the call timeout).
                    await error_page(request, exc)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def login_form(request: Request) -> Response:
    return render(request, "login.html", next=local_path(request.query_params.get("next")))


async def login(request: Request) -> Response:
    form = await check_csrf(request)
    token = form.get("token", "").strip()
    target = local_path(form.get("next"))
    if not token:
        return render(request, "login.html", 400, next=target, error="Paste an API token.")
    if len(token) > MAX_TOKEN or not (token.isascii() and token.isprintable()):
        # gRPC refuses such a header before any service sees it (ValueError, not a status)
        return render(
            request,
            "login.html",
            400,
            next=target,
            error="That is not an API token: tokens are one line of ASCII letters, digits, '-', "
            "'_' and '.', as `modelyard tokens create` prints them. Copy it again.",
        )
    candidate = Client.over(ui_of(request).transport.with_token(token))
    try:
        principal, enforced = await run_in_threadpool(candidate.whoami)
    except Unauthenticated:
        return render(
            request,
            "login.html",
            401,
            next=target,
            error="That token was not accepted (expired, revoked or mistyped). Create a new one "
            "with `modelyard tokens create`.",
        )
    sign_in(request, Identity(principal.name, enforced, token))
    return redirect(target)


async def logout(request: Request) -> Response:
    await check_csrf(request)
    sign_out(request)
    return redirect("/login")


def healthz(request: Request) -> Response:
    return Response("ok", media_type="text/plain")


ROUTES = [
    Route("/login", login_form, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/healthz", healthz),
    Route("/", lambda request: redirect("/experiments")),
]
