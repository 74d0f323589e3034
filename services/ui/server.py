"""Running the UI: in its own process (`modelyard ui`) or beside the services (`modelyard up`)."""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Any

import uvicorn
from uvicorn.config import create_ssl_context

from modelyard.services.common.logging import get_logger
from modelyard.services.common.settings import Settings
from modelyard.services.common.signals import on_stop_signals, wait_for
from modelyard.services.common.watched_files import WatchedFiles
from modelyard.services.ui.app import create_app

log = get_logger(__name__)


class _ReloadingTLSConfig(uvicorn.Config):
    """uvicorn reads the certificate once; this one hands each new connection's handshake a
    context with the files as they are now, so a renewed certificate swapped into the pod is
    served without a restart (services/common/watched_files.py)."""

    def load(self) -> None:
        super().load()
        if self.ssl is None or not self.ssl_certfile:
            return
        files = WatchedFiles(*(p for p in (self.ssl_certfile, self.ssl_keyfile) if p))
        lock = threading.Lock()
        current = self.ssl

        def fresh_context() -> ssl.SSLContext:
            assert self.ssl_certfile
            return create_ssl_context(
                certfile=self.ssl_certfile,
                keyfile=self.ssl_keyfile,
                password=self.ssl_keyfile_password,
                ssl_version=self.ssl_version,
                cert_reqs=self.ssl_cert_reqs,
                ca_certs=self.ssl_ca_certs,
                ciphers=self.ssl_ciphers,
            )

        def on_hello(connection: Any, _server_name: str | None, context: ssl.SSLContext) -> None:
            # Called at every handshake's ClientHello, whether or not the client sent SNI.
            nonlocal current
            with lock:
                try:
                    if files.changed():
                        current = fresh_context()
                        log.info("UI TLS certificate files changed; serving the new certificate")
                except (OSError, ssl.SSLError) as exc:  # mid-swap: keep what we have
                    log.warning(
                        "UI TLS files could not be read again, keeping the current: %s", exc
                    )
                    files.retry()
                chosen = current
            if chosen is not context:
                connection.context = chosen

        self.ssl.sni_callback = on_hello


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
        config = _ReloadingTLSConfig(
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
