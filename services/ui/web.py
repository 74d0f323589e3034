"""Plumbing every page shares: the caller's clients, templates, CSRF, errors, security headers."""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, urlencode, urlsplit

import orjson
import plotly.offline
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelyard.client import Client
from modelyard.client._transport import Transport
from modelyard.errors import (
    DeadlineExceeded,
    InvalidArgument,
    ModelyardError,
    NoServer,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
    reword,
)
from modelyard.features.client import FeatureStoreClient
from modelyard.services.common.filters.grammar import like_literal
from modelyard.services.ui import charts
from modelyard.services.ui.sessions import Identity, SessionStore

log = logging.getLogger(__name__)
# Characters of a search box's text once percent-encoded in a link (urlencode's), not as typed:
# a non-ASCII character takes 6 to 12 ("模" is %E6%A8%A1), so a count of characters let 1000 CJK
# ones make a 9 KB link. This fits an experiment's longest name (500) in CJK, with two page
# tokens beside it within MAX_LINK.
MAX_SEARCH = 5000
TEMPLATES = Path(__file__).parent / "templates"

# Plotly draws with inline styles; scripts only from this origin (no inline scripts at all).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; frame-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'self'"
)


class UI:
    """One channel to the services for the whole process; each request adds its caller's token,
    found in `sessions` by the id in the session cookie."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.sessions = SessionStore()
        self.templates = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(["html"], default=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters.update(
            ms=format_ms,
            duration=format_duration,
            number=format_number,
            counted=counted,
            chart=chart_json,
            in_ui_terms=in_ui_terms,
        )
        self.templates.globals["quote"] = functools.partial(quote, safe="")

    def close(self) -> None:
        self.transport.close()


def ui_of(request: Request) -> UI:
    return request.app.state.ui


def identity_of(request: Request) -> Identity | None:
    return ui_of(request).sessions.get(request.session.get("sid"))


def token_of(request: Request) -> str | None:
    identity = identity_of(request)
    return identity.token if identity else None


def sign_in(request: Request, identity: Identity) -> None:
    """A new session (and id: one set before signing in is not reused) for `identity`."""
    sign_out(request)
    request.session["sid"] = ui_of(request).sessions.start(identity)


def sign_out(request: Request) -> None:
    """End the session here, so that a copy of its cookie is worth nothing either."""
    ui_of(request).sessions.end(request.session.get("sid"))
    request.session.clear()


def client(request: Request) -> Client:
    return Client.over(ui_of(request).transport.with_token(token_of(request)))


def features(request: Request) -> FeatureStoreClient:
    return FeatureStoreClient(transport=ui_of(request).transport.with_token(token_of(request)))


# -- templates -------------------------------------------------------------------------------------


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if token is None:
        token = request.session["csrf"] = secrets.token_urlsafe(24)
    return token


async def check_csrf(request: Request) -> dict[str, str]:
    """The posted form, once its CSRF token matches the session's."""
    form = await request.form()
    sent = str(form.get("csrf", ""))
    if not sent or not hmac.compare_digest(sent, request.session.get("csrf", "")):
        raise HTTPException(403, "the form expired; reload the page and try again")
    return {k: str(v) for k, v in form.items()}


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    page = ui_of(request).templates.get_template(template)
    identity = identity_of(request)
    html = page.render(
        request=request,
        user=identity.user if identity else None,
        auth=identity.auth if identity else False,
        csrf=csrf_token(request),
        flash=request.session.pop("flash", None),
        **context,
    )
    return HTMLResponse(html, status_code=status_code)


def encoded_length(text: str) -> int:
    """Characters `text` takes in a link's query, as urlencode writes it."""
    return len(quote_plus(text))


def query_text(request: Request, name: str, limit: int, label: str, advice: str) -> str:
    """The query parameter `name`, stripped, if at most `limit` characters once encoded in a
    link: pages repeat such text in their links (a runs table in every column's sort link), so
    an unbounded one made pages that grew with the square of the URL's length, and links past
    nginx's default request line (MAX_LINK). Bounded as encoded, since that is what a link
    carries: CJK text takes 9 characters for each one typed."""
    text = request.query_params.get(name, "").strip()
    size = encoded_length(text)
    if size > limit:
        raise InvalidArgument(
            f"{label} (`{name}`) takes {size} characters in a link once URL-encoded (at most "
            f"{limit}; a non-ASCII character or punctuation takes 3 to 12); {advice}",
            field=name,
        )
    return text


# Characters of a paged listing's links at most, when their trail of earlier pages' tokens (for
# "Previous") is what makes them longer: nginx's default buffer for a request line is 8 KB
# (large_client_header_buffers), with the method, host and protocol to fit beside the link. The
# oldest tokens are dropped past it; "First page" goes further back.
MAX_LINK = 7000


@dataclass(frozen=True)
class Pager:
    """The links of a listing paged by the services' tokens: first, previous and next."""

    first: str = ""
    previous: str = ""
    next: str = ""


def pager(
    request: Request,
    path: str,
    params: dict[str, str],
    next_token: str | None,
    *,
    token_param: str = "page_token",
    back_param: str = "back",
    fragment: str = "",
) -> Pager:
    """Links to the first, previous and next pages of the listing at `path` with `params`
    (empty ones left out), ending in `#fragment` if given. The page's own token is
    `token_param`; the tokens of the pages before it ride along as `back_param` (the first
    page's as ""), a page's own stack, so a link works wherever it is opened, newest last: the
    one before always, older ones while the link stays within MAX_LINK characters (the
    services keep each token short: a long sort value's names its row). A page listing more
    than its main list (a run's registrations) names its parameters apart."""
    token = request.query_params.get(token_param, "")
    back = request.query_params.getlist(back_param) if token else []
    anchor = f"#{fragment}" if fragment else ""

    def url(page_token: str, stack: list[str]) -> str:
        query = [(k, v) for k, v in params.items() if v]
        if page_token:
            query += [(token_param, page_token), *((back_param, t) for t in stack)]
        return (f"{path}?{urlencode(query)}" if query else path) + anchor

    def link(page_token: str, stack: list[str]) -> str:
        """url(page_token, stack) with as many of the stack's oldest dropped as it takes."""
        start = len(stack) - 1 if stack else 0
        size = len(url(page_token, stack[start:]))
        while start > 0:
            more = len(back_param) + 2 + encoded_length(stack[start - 1])  # &back=...
            if size + more > MAX_LINK:
                break
            start, size = start - 1, size + more
        return url(page_token, stack[start:])

    return Pager(
        first=url("", []) if token else "",
        previous=link(back[-1], back[:-1]) if back else "",
        next=link(next_token, [*back, token]) if next_token else "",
    )


def name_search(request: Request) -> tuple[str, str | None]:
    """The search box's text (`q`) and the name filter it means."""
    advice = "search for a shorter part of the name"
    query = query_text(request, "q", MAX_SEARCH, "the search text", advice)
    return query, (f"name ILIKE '%{like_literal(query)}%'" if query else None)


def flash(request: Request, message: str, kind: str = "ok") -> None:
    request.session["flash"] = {"kind": kind, "message": message}


def redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def to_login(request: Request) -> RedirectResponse:
    """To the login page, which then leads back to the page asked for, with its query: a
    shared link to a comparison, a filtered runs table or an artifact is mostly query. After
    a form's post (its session gone with a restart of the UI), back to the form's page: a
    redirect cannot post again, and the post's own path answers GET with 405."""
    url = request.url
    if request.method in ("GET", "HEAD"):
        target = url.path + (f"?{url.query}" if url.query else "")
    else:
        came_from = urlsplit(request.headers.get("referer", ""))
        same_site = came_from.netloc == url.netloc
        target = came_from.path + (f"?{came_from.query}" if came_from.query else "")
        target = target if same_site else "/"
    return redirect("/login?" + urlencode({"next": local_path(target)}))


def local_path(target: str | None, default: str = "/") -> str:
    """Only same-site paths after a login: never an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target


# -- formatting ------------------------------------------------------------------------------------


def format_ms(value: int | None) -> str:
    """A time in UTC, saying so: the charts' time axes are in UTC too, whatever the browser's
    time zone."""
    if not value:
        return ""
    return datetime.fromtimestamp(value / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_duration(start: int | None, end: int | None) -> str:
    if not start or not end:
        return ""
    seconds = (end - start) / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}min"
    return f"{seconds / 3600:.1f}h"


def format_number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


def counted(n: int, singular: str, plural: str = "") -> str:
    """`n` and the noun that agrees with it ("1 run", "2 runs"): a page shows what is left
    after the services filter (one readable run of two compared), so any count may be 1.
    `plural` is for nouns not made by adding an s ("entry", "entries")."""
    return f"{n} {singular if n == 1 else plural or singular + 's'}"


def chart_json(figure: dict[str, Any]) -> Markup:
    """A figure as JSON safe inside <script type="application/json"> (no '<', '>', '&'), its
    strings as plain text to Plotly (charts.plotly_text). NaN and infinite values (a diverged
    loss) become null: a gap in the line, as JSON has no such numbers; the run's tables show
    them as they are."""
    text = orjson.dumps(
        charts.plotly_text(figure),
        default=str,
        option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY,
    ).decode()
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)


# -- errors ----------------------------------------------------------------------------------------

_STATUS = {
    NotFound: 404,
    PermissionDenied: 403,
    InvalidArgument: 400,
    Unavailable: 503,
    DeadlineExceeded: 504,
}

# The services' hints name the API method that helps, right for the SDK; in the UI, the page
# that does the same (or the command, for what no page does).
_INSTEAD = {
    "SearchExperiments": "the Experiments page",
    "SearchRuns": "the experiment's runs table",
    "ListArtifacts": "the run's Artifacts page",
    "SearchRegisteredModels": "the Models page",
    "SearchModelVersions": "the model's page",
    "SetRegisteredModelAlias": "the model page's alias form",
    "ListEndpoints": "the Endpoints page",
    "CreateExperiment": "`modelyard experiments create NAME`",
    "RestoreRun": "`modelyard runs restore RUN_ID`",
    "CreateModelVersion": "`modelyard.register_model` in Python",
}


def in_ui_terms(message: str) -> str:
    """A services' message shown on a page (a served model's failure, kept by serving) with
    the API methods it names replaced by the page or command that does the same."""
    return reword(message, _INSTEAD)


def said(request: Request, exc: ModelyardError) -> str:
    """What a page says of a failed call: what went wrong, in the UI's terms."""
    if isinstance(exc, NoServer):  # its own text names the SDK's settings, not the UI's
        return f"No Modelyard services answered at {ui_of(request).transport.uri}."
    if isinstance(exc, InvalidArgument) and exc.field == "page_token":
        # the services' advice ("pass the next_page_token of the previous response") is an
        # API client's; here the token came in a link, edited or kept from another listing,
        # or kept while the row it continues from (a long sort value's) changed
        return (
            "page_token in this link is not one this listing's pages made, or the row the "
            "page before ended at was changed or deleted since; follow the listing's own page "
            "links, or open it again without page_token (its first page)."
        )
    return in_ui_terms(str(exc))


def _hint(request: Request, exc: ModelyardError) -> str:
    """What to do next, for failures whose message cannot say it (the UI's own settings)."""
    if isinstance(exc, PermissionDenied):  # a refused grant names whom to ask; a role, not
        return "" if exc.resource_type else "Ask an admin for the role it needs."
    if isinstance(exc, DeadlineExceeded):
        return (
            f"Pages wait {ui_of(request).transport.timeout:g} s for each service call "
            "(MODELYARD_UI__CALL_TIMEOUT). Check that service's log (the `modelyard up` "
            "console, or its pod: `kubectl get pods`, `kubectl logs`), then reload."
        )
    if isinstance(exc, NoServer):
        return (
            "Start them with `modelyard up`, or point the UI at yours: `modelyard ui --uri "
            "HOST:PORT` (MODELYARD_UI__SERVICES_URI). If they are running, check their log "
            "(or their pod: `kubectl logs`); then reload."
        )
    if isinstance(exc, Unavailable):
        return "The service is busy or restarting; reload in a moment."
    return ""


def error_page(request: Request, exc: ModelyardError) -> Response:
    """The page for a failed call, with the HTTP status of its gRPC status."""
    if isinstance(exc, Unauthenticated):  # the token expired or was revoked
        sign_out(request)
        return to_login(request)
    status = next((code for kind, code in _STATUS.items() if isinstance(exc, kind)), 500)
    if status == 500:
        log.warning("page %s failed: %s", request.url.path, exc)
    return render(
        request,
        "error.html",
        status,
        message=said(request, exc),
        hint=_hint(request, exc),
        status=status,
    )


async def _modelyard_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ModelyardError)
    return error_page(request, exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = exc.detail if exc.status_code != 404 else "There is no such page."
    return render(
        request, "error.html", exc.status_code, message=message, hint="", status=exc.status_code
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("page %s failed", request.url.path)
    return render(
        request,
        "error.html",
        500,
        message="Something went wrong while building this page.",
        hint="The UI's log has the details; reload, or report it with the time it happened.",
        status=500,
    )


def error_handlers() -> dict[Any, Any]:
    return {ModelyardError: _modelyard_error, HTTPException: _http_error}


class CatchUnexpected:
    """Any other failure of a page as the error page, sent through the middleware around this
    one: Starlette answers its handler for `Exception` from outside every middleware, so 500
    pages went out without the security headers and `no-store`, though they carry the user's
    name and a CSRF token. Placed inside the session middleware, for the page's session."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            if started:  # too late for a page: the connection is cut instead
                raise
            response = await _unexpected(Request(scope, receive), exc)
            await response(scope, receive, send)


# -- static and headers ----------------------------------------------------------------------------


@functools.cache
def _plotly_bundle() -> tuple[bytes, str]:
    data = plotly.offline.get_plotlyjs().encode()
    return data, hashlib.sha256(data).hexdigest()[:16]


async def plotly_js(request: Request) -> Response:
    data, etag = _plotly_bundle()
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304)
    return Response(
        data,
        media_type="text/javascript",
        headers={"cache-control": "public, max-age=86400", "etag": etag},
    )


class SecurityHeaders:
    """CSP, no MIME sniffing, no framing by others, no referrer leaks; on every response. And
    no caching of anything but static files: pages and downloads show a signed-in user's data,
    which a shared or later user of the browser (or a proxy) must not get from a cache."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                present = {k.lower() for k, _ in headers}
                for name, value in (
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                    (b"x-frame-options", b"SAMEORIGIN"),
                ):
                    if name not in present:
                        headers.append((name, value))
                if b"cache-control" not in present and not scope["path"].startswith("/static/"):
                    headers.append((b"cache-control", b"no-store"))
            await send(message)

        await self.app(scope, receive, with_headers)
