"""Just enough of the Kubernetes API server for Secrets, over HTTP, for the real `kubernetes`
client: read, create (409 when it exists) and replace (409 on a stale resourceVersion)."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_PATH = re.compile(r"^/api/v1/namespaces/(?P<ns>[\w-]+)/secrets(?:/(?P<name>[\w.-]+))?$")


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }


class FakeSecrets:
    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        # Replace calls to answer 409 before doing anything (another writer got there first).
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

            def _route(self, method: str) -> None:
                match = _PATH.match(self.path.split("?")[0])
                fake.requests.append((method, self.path))
                if not match:
                    self._reply(404, _status(404, "NotFound", f"no route {self.path}"))
                    return
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}") if length else {}
                self._reply(*fake.handle(method, match["ns"], match["name"], body))

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

            def do_PUT(self) -> None:
                self._route("PUT")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def start(self) -> FakeSecrets:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(
        self, method: str, ns: str, name: str | None, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        with self._lock:
            key = (ns, name or body.get("metadata", {}).get("name", ""))
            existing = self.secrets.get(key)
            if method == "GET":
                if existing is None:
                    return 404, _status(404, "NotFound", f'secrets "{key[1]}" not found')
                return 200, existing
            if method == "POST":
                if existing is not None:
                    return 409, _status(409, "AlreadyExists", f'secrets "{key[1]}" already exists')
                return 201, self._store(key, body)
            if self.conflicts:
                self.conflicts -= 1
                return 409, _status(409, "Conflict", "the object has been modified")
            if existing is None:
                return 404, _status(404, "NotFound", f'secrets "{key[1]}" not found')
            if body["metadata"].get("resourceVersion") != existing["metadata"]["resourceVersion"]:
                return 409, _status(409, "Conflict", "the object has been modified")
            return 200, self._store(key, body)

    def _store(self, key: tuple[str, str], body: dict[str, Any]) -> dict[str, Any]:
        self._version += 1
        stored = {
            **body,
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                **body["metadata"],
                "namespace": key[0],
                "resourceVersion": str(self._version),
            },
        }
        self.secrets[key] = stored
        return stored
