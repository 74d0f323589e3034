"""A real headless Chromium (Debian's package) driven by Playwright against the UI, which talks
to real services over gRPC. Screenshots of every page land in test-artifacts/ui/."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import modelyard
from modelyard import Client
from modelyard.services.common.server import ModelyardServer
from modelyard.services.common.settings import AuthSettings, Settings
from tests.conftest import require, running_server

if TYPE_CHECKING:  # playwright is imported when a browser test runs, so a missing one skips
    from playwright.sync_api import Browser, Dialog, Page, Response

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    require(executable is not None, "Chromium is not installed (Debian: apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@dataclass
class UI:
    """A started UI over started services, and a browser page that fails the test on any
    script error, console error or dialog (an XSS that ran would open one)."""

    url: str
    server: ModelyardServer
    page: Page
    problems: list[str] = field(default_factory=list)

    def go(self, path: str, shot: str | None = None) -> Response:
        response = self.page.goto(self.url + path)
        assert response is not None, f"{path}: no navigation happened"
        self.page.wait_for_load_state("load")
        self.wait_for_charts()
        if shot:
            self.screenshot(shot)
        return response

    def wait_for_charts(self) -> None:
        """Every chart on the page drawn by plotly.js."""
        self.page.wait_for_function(
            "() => [...document.querySelectorAll('div.chart[data-chart]')]"
            ".every(el => el.dataset.drawn === 'true')"
        )

    def screenshot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        self.page.screenshot(path=str(ARTIFACTS / f"{safe}.png"), full_page=True)


def _open_ui(browser, server: ModelyardServer, settings: Settings) -> Iterator[UI]:
    from modelyard.services.ui.server import UIServer

    settings.ui.port = 0
    ui_server = UIServer(settings, server.address)
    ui_server.start()
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    ui = UI(ui_server.url, server, page)
    page.on("pageerror", lambda exc: ui.problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: (
            ui.problems.append(f"console {msg.type}: {msg.text}")
            if msg.type == "error"
            and "status of 4" not in msg.text
            and "status of 5" not in msg.text
            else None
        ),
    )

    def dismiss(dialog: Dialog) -> None:
        ui.problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", dismiss)
    try:
        yield ui
        assert not ui.problems, ui.problems
    finally:
        context.close()
        ui_server.stop()


@pytest.fixture
def ui(browser, tmp_path: Path) -> Iterator[UI]:
    settings = Settings(home=tmp_path / "home", port=0, grace_period=0)
    with running_server(settings) as server:
        modelyard.set_tracking_uri(server.address)
        yield from _open_ui(browser, server, settings)
        modelyard.set_tracking_uri("127.0.0.1:1")


@pytest.fixture
def client(ui: UI) -> Iterator[Client]:
    with Client(ui.server.address) as c:
        yield c


@pytest.fixture
def secure_ui(browser, tmp_path: Path) -> Iterator[tuple[UI, str]]:
    """Auth on; yields the UI and the admin's token."""
    from modelyard.services.auth.app import open_service
    from modelyard.services.common.runtime import Runtime

    settings = Settings(
        home=tmp_path / "home", port=0, grace_period=0, auth=AuthSettings(enabled=True)
    )
    service = open_service(settings, Runtime(settings))
    token = service.bootstrap_admin("root").token
    service.store.close()
    with running_server(settings) as server:
        for ui in _open_ui(browser, server, settings):
            yield ui, token
