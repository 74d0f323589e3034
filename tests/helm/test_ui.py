"""The chart's UI: probes that do not depend on the services, and the settings it needs to work."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from modelyard.services.common.settings import Settings, UISettings
from modelyard.services.ui import app as ui_app
from modelyard.services.ui.pages import session
from tests.helm.conftest import Rendered, containers, env_of, render


def _get(app: Any, path: str, host: str = "localhost") -> int:
    """The status of GET path with this Host header, straight through the ASGI app."""
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", host.encode())],
        "scheme": "http",
        "server": ("ui", 5000),
        "client": ("10.0.0.10", 1234),
        "root_path": "",
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


def _ui_container(rendered: Rendered) -> dict[str, Any]:
    return containers(rendered.get("Deployment", "modelyard-ui"))[0]


def test_ui_probes_answer_without_calling_the_services(
    default: Rendered, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A probe that asks the services (whoami through the gateway) fails when they are slow or
    down, and kubelet then restarts a healthy UI."""
    container = _ui_container(default)
    paths = {container[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe")}

    def identify(request: Any) -> None:
        raise AssertionError(f"the probe of {request.url.path} called the services")

    monkeypatch.setattr(session, "_identify", identify)
    settings = Settings(home=tmp_path, ui=UISettings(session_secret="s" * 48))
    # Nothing listens there: any call to the services would fail.
    app = ui_app.create_app(settings, "127.0.0.1:9")
    for path in paths:
        assert _get(app, path) == 200, path


def test_ui_without_the_gateway_is_refused_with_what_to_set():
    """The UI calls every service over one channel; only the gateway routes it to each."""
    with pytest.raises(Exception, match=r"services\.ui needs the gateway") as failure:
        render({"gateway": {"enabled": False}})
    assert "gateway.enabled=true" in str(failure.value)
    assert "services.ui.enabled=false" in str(failure.value)
    # Without the UI, the gateway may be off (clients call each service).
    out = render({"gateway": {"enabled": False}, "services": {"ui": {"enabled": False}}})
    assert not out.names("Deployment") & {"modelyard-ui", "modelyard-gateway"}


def test_the_ui_reaches_the_services_through_the_gateway(rendered: Rendered):
    if "modelyard-ui" not in rendered.names("Deployment"):
        return
    uri = env_of(_ui_container(rendered))["MODELYARD_UI__SERVICES_URI"]
    assert uri.removeprefix("grpcs://") == "modelyard-gateway:50051"
