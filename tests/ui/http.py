"""The UI over plain HTTP, without a browser: for what a browser hides (cookies, headers, Host)."""

from __future__ import annotations

import contextlib
import html
import re
from collections.abc import Iterator
from http.cookies import SimpleCookie
from typing import Any

import urllib3

from modelyard.services.common.settings import Settings


@contextlib.contextmanager
def serving_ui(settings: Settings, services_uri: str) -> Iterator[str]:
    """A started UI (on a free port) for the services at `services_uri`; yields its URL."""
    from modelyard.services.ui.server import UIServer

    settings.ui.port = 0
    server = UIServer(settings, services_uri)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


class WebSession:
    """A cookie jar over urllib3 that follows no redirects, as a script (or a thief) would."""

    def __init__(self, url: str, ca_file: str | None = None) -> None:
        self.url = url
        self.cookies: dict[str, str] = {}
        self.set_cookies: list[str] = []  # every Set-Cookie header seen, as sent
        self._http = urllib3.PoolManager(ca_certs=ca_file, retries=False, timeout=60)

    def request(
        self,
        method: str,
        path: str,
        fields: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> urllib3.BaseHTTPResponse:
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        extra: dict[str, Any] = {"encode_multipart": False} if method == "POST" else {}
        response = self._http.request(
            method, self.url + path, fields=fields, headers=headers, redirect=False, **extra
        )
        for header in response.headers.getlist("set-cookie"):
            self.set_cookies.append(header)
            for name, morsel in SimpleCookie(header).items():
                if morsel["max-age"] == "0" or "1970" in morsel["expires"]:  # deleted
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return response

    def get(self, path: str, headers: dict[str, str] | None = None) -> urllib3.BaseHTTPResponse:
        return self.request("GET", path, headers=headers)

    def link(self, page: str, testid: str) -> str | None:
        """Where the link marked `testid` on `page` (HTML) leads, or None if it has none."""
        found = re.search(rf'<a href="([^"]+)"[^>]* data-testid="{testid}"', page)
        return html.unescape(found.group(1)) if found else None

    def follow(self, page: str, testid: str) -> str:
        """The page the link marked `testid` on `page` leads to; the link must be there."""
        link = self.link(page, testid)
        assert link, (testid, page)
        return self.get(link).data.decode()

    def csrf(self, path: str = "/experiments", headers: dict[str, str] | None = None) -> str:
        """The CSRF token in the forms of the page at `path`."""
        match = re.search(r'name="csrf" value="([^"]+)"', self.get(path, headers).data.decode())
        assert match, f"no form on {path}"
        return match.group(1)

    def post(
        self, path: str, fields: dict[str, str], headers: dict[str, str] | None = None
    ) -> urllib3.BaseHTTPResponse:
        return self.request("POST", path, fields, headers)
