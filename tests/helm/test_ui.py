"""The chart's UI: probes that do not depend on the services, and the settings it needs to work."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from modelyard.services.common.settings import Settings, UISettings
from modelyard.services.ui import app as ui_app
from modelyard.services.ui.pages import session
from tests.helm.conftest import Rendered, containers, env_of, render, values_of


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


def _ui_app(rendered: Rendered, home: Path) -> Any:
    """The UI app as the chart's environment configures it (bound to all, its allowed hosts)."""
    env = env_of(_ui_container(rendered))
    ui = UISettings(
        host=env["MODELYARD_UI__HOST"],
        session_secret="s" * 48,
        allowed_hosts=json.loads(env["MODELYARD_UI__ALLOWED_HOSTS"]),
    )
    return ui_app.create_app(Settings(home=home, ui=ui), "127.0.0.1:9")


def test_the_production_example_ui_answers_at_its_external_host(tmp_path: Path):
    """Without ui.externalUri, the UI refuses (400) the host browsers reach it by."""
    production = render(values_of("production"))
    values = values_of("production")
    assert values is not None
    host = values["services"]["ui"]["externalUri"].rsplit(":", 1)[0]
    app = _ui_app(production, tmp_path)
    assert _get(app, "/healthz", host) == 200
    assert _get(app, "/healthz", "elsewhere.example") == 400


def test_the_production_example_keeps_each_browser_on_the_pod_with_its_session():
    """Sessions live in the UI process: a second replica without affinity signs users out."""
    production = render(values_of("production"))
    replicas = production.get("Deployment", "modelyard-ui")["spec"]["replicas"]
    affinity = production.get("Service", "modelyard-ui")["spec"].get("sessionAffinity")
    assert replicas == 1 or affinity == "ClientIP"


def test_the_ui_answers_to_its_service_names_in_the_cluster_domain(tmp_path: Path):
    out = render({"clusterDomain": "corp.internal"})
    hosts = json.loads(env_of(_ui_container(out))["MODELYARD_UI__ALLOWED_HOSTS"])
    assert "modelyard-ui.ml.svc.corp.internal" in hosts
    assert not any(h.endswith("cluster.local") for h in hosts)
    assert _get(_ui_app(out, tmp_path), "/healthz", "modelyard-ui.ml.svc.corp.internal") == 200
