"""A small stand-in for the Kubernetes API server: stores objects over HTTP.

It speaks just enough of the REST API for the serving endpoint controller and the chart's token
bootstrap, through the real `kubernetes` client: create, read, replace, delete and label-selected
list of Deployments, Services, HorizontalPodAutoscalers, PodDisruptionBudgets and Secrets in a
namespace, with resourceVersions and 404/409 Status replies (422 for a changed Deployment
selector). `conflicts` makes the next replaces answer 409, as
when another writer got there first.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

_PATH = re.compile(
    r"^/(?:api/v1|apis/(?P<group>[\w.]+)/(?P<version>\w+))/namespaces/(?P<ns>[\w-]+)/"
    r"(?P<plural>deployments|services|horizontalpodautoscalers|poddisruptionbudgets|secrets)(?:/(?P<name>[\w.-]+))?$"
)
_KIND = {
    "deployments": "Deployment",
    "services": "Service",
    "horizontalpodautoscalers": "HorizontalPodAutoscaler",
    "poddisruptionbudgets": "PodDisruptionBudget",
    "secrets": "Secret",
}
_CORE = ("services", "secrets")


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.conflicts = 0
        self._version = 0
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def _reply(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> dict[str, Any]:
                return json.loads(
                    self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}"
                )

            def _route(self, method: str) -> None:
                url = urlparse(self.path)
                match = _PATH.match(url.path)
                fake.requests.append((method, url.path))
                if not match:
                    self._reply(404, _status(404, "NotFound", f"no route {url.path}"))
                    return
                code, body = fake.handle(
                    method,
                    match,
                    parse_qs(url.query),
                    self._body() if method in ("POST", "PUT") else {},
                )
                self._reply(code, body)

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

            def do_PUT(self) -> None:
                self._route("PUT")

            def do_DELETE(self) -> None:
                self._route("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeKube:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def kinds(self, plural: str) -> dict[str, dict[str, Any]]:
        return {name: obj for (p, _ns, name), obj in self.objects.items() if p == plural}

    @property
    def secrets(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Stored Secrets by (namespace, name)."""
        return {(ns, name): obj for (p, ns, name), obj in self.objects.items() if p == "secrets"}

    def handle(
        self, method: str, match: re.Match[str], query: dict[str, list[str]], body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        plural, ns, name = match["plural"], match["ns"], match["name"]
        with self._lock:
            if method == "GET" and name is None:
                selector = dict(
                    p.split("=", 1) for p in query.get("labelSelector", [""])[0].split(",") if p
                )
                items = [
                    obj
                    for (p, n, _), obj in sorted(self.objects.items())
                    if p == plural
                    and n == ns
                    and selector.items() <= obj["metadata"].get("labels", {}).items()
                ]
                return 200, {
                    "apiVersion": self._api_version(match),
                    "kind": f"{_KIND[plural]}List",
                    "metadata": {"resourceVersion": str(self._version)},
                    "items": items,
                }
            key = (plural, ns, name or body.get("metadata", {}).get("name", ""))
            existing = self.objects.get(key)
            if method == "GET":
                return (
                    (200, existing)
                    if existing
                    else (404, _status(404, "NotFound", f"{plural} {name} not found"))
                )
            if method == "POST":
                if existing:
                    return 409, _status(409, "AlreadyExists", f"{plural} {key[2]} already exists")
                return 201, self._store(key, body, match, uid=uuid.uuid4().hex)
            if method == "PUT":
                if self.conflicts:
                    self.conflicts -= 1
                    return 409, _status(409, "Conflict", "the object has been modified")
                if not existing:
                    return 404, _status(404, "NotFound", f"{plural} {name} not found")
                if (
                    body["metadata"].get("resourceVersion")
                    != existing["metadata"]["resourceVersion"]
                ):
                    return 409, _status(409, "Conflict", "the object has been modified")
                if plural == "deployments" and _selector(body) != _selector(existing):
                    return 422, _status(422, "Invalid", "spec.selector: field is immutable")
                return 200, self._store(key, body, match, uid=existing["metadata"]["uid"])
            if method == "DELETE":
                if not existing:
                    return 404, _status(404, "NotFound", f"{plural} {name} not found")
                del self.objects[key]
                # As the real API server does: Services answer with the deleted object.
                if plural == "services":
                    return 200, existing
                return 200, _status(200, "", "deleted", status="Success")
        return 405, _status(405, "MethodNotAllowed", method)

    @staticmethod
    def _api_version(match: re.Match[str]) -> str:
        return "v1" if match["plural"] in _CORE else f"{match['group']}/{match['version']}"

    def _store(
        self, key: tuple[str, str, str], body: dict[str, Any], match: re.Match[str], uid: str
    ) -> dict[str, Any]:
        self._version += 1
        body.setdefault("apiVersion", self._api_version(match))
        body.setdefault("kind", _KIND[key[0]])
        body.setdefault("metadata", {}).update(
            namespace=key[1],
            resourceVersion=str(self._version),
            uid=uid,
            creationTimestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        self.objects[key] = body
        return body


def _selector(deployment: dict[str, Any]) -> Any:
    return deployment.get("spec", {}).get("selector")


def _status(code: int, reason: str, message: str, status: str = "Failure") -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": status,
        "reason": reason,
        "message": message,
        "code": code,
    }
