"""Running the UI: in its own process (`modelyard ui`) or beside the services (`modelyard up`)."""

from __future__ import annotations

import socket
import threading

import uvicorn

from modelyard.services.common.settings import Settings
from modelyard.services.common.signals import on_stop_signals, wait_for
from modelyard.services.ui.app import create_app


class UIServer:
    """uvicorn on a bound socket, so the port is known (and taken) before the first request.
    With TLS settings (`--tls-cert/--tls-key`), the UI serves HTTPS with the services'
    certificate: a UI in plain HTTP beside TLS services would send tokens and cookies in clear."""

    def __init__(self, settings: Settings, services_uri: str) -> None:
        host = settings.ui.host or settings.host
        self.socket = socket.create_server((host, settings.ui.port))
        self.port = self.socket.getsockname()[1]
        tls = settings.tls
        self.url = f"{'https' if tls.enabled else 'http'}://{host}:{self.port}"
        ca = tls.ca_file or (tls.cert_file if tls.enabled else None)
        app = create_app(settings, services_uri, str(ca) if ca else None)
        config = uvicorn.Config(
            app,
            log_level=settings.log_level.lower(),
            access_log=False,
            lifespan="on",
            ssl_certfile=tls.cert_file if tls.enabled else None,
            ssl_keyfile=tls.key_file if tls.enabled else None,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def serve(self) -> None:
        """Block until Ctrl-C or SIGTERM, then finish open requests and exit cleanly."""
        stop = threading.Event()
        with on_stop_signals(lambda _sig: stop.set()):
            self.start()
            try:
                wait_for(stop)
            finally:
                self.stop()

    def start(self) -> None:
        """Serve in a background thread (uvicorn leaves signals to the main thread then)."""
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self.socket]}, name="modelyard-ui",
            daemon=True,
        )  # fmt: skip
        self._thread.start()

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.socket.close()
