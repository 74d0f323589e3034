"""The web UI's sessions: what the cookie holds, and what logging out ends."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from tests.security.conftest import Secure
from tests.ui.http import WebSession, serving_ui


@pytest.fixture
def ui_url(secure: Secure) -> Iterator[str]:
    with serving_ui(secure.settings, secure.address) as url:
        yield url


def _signed_in(url: str, token: str) -> WebSession:
    web = WebSession(url)
    response = web.post("/login", {"csrf": web.csrf("/login"), "token": token, "next": "/"})
    assert response.status == 303, response.data
    return web


def test_the_session_cookie_does_not_hold_the_api_token(secure: Secure, ui_url: str) -> None:
    web = _signed_in(ui_url, secure.admin_token)
    cookie = web.cookies["modelyard_session"]
    payload = cookie.split(".")[0]  # itsdangerous: base64 data, then timestamp and signature
    decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    assert secure.admin_token.encode() not in decoded
    assert secure.admin_token not in cookie
    assert web.get("/experiments").status == 200


def test_a_cookie_copied_before_logout_is_refused_after(secure: Secure, ui_url: str) -> None:
    web = _signed_in(ui_url, secure.admin_token)
    assert web.get("/experiments").status == 200
    copied = dict(web.cookies)
    assert web.post("/logout", {"csrf": web.csrf()}).status == 303
    replay = WebSession(ui_url)
    replay.cookies = copied
    response = replay.get("/experiments")
    assert response.status == 303
    assert response.headers["location"].startswith("/login")
    # Signing in again starts a new session; the old cookie stays dead.
    again = _signed_in(ui_url, secure.admin_token)
    assert again.cookies["modelyard_session"] != copied["modelyard_session"]
    assert replay.get("/experiments").status == 303


def test_signed_in_pages_and_downloads_are_not_cached(secure: Secure, ui_url: str) -> None:
    rid = secure.admin.create_run("0").info.run_id
    secure.admin.log_text(rid, "secret", "notes.txt")
    web = _signed_in(ui_url, secure.admin_token)
    for path in ("/experiments", f"/runs/{rid}", f"/runs/{rid}/artifact?path=notes.txt"):
        response = web.get(path)
        assert response.status == 200, path
        assert response.headers["cache-control"] == "no-store", path
    assert "no-store" not in web.get("/static/app.css").headers.get("cache-control", "")
