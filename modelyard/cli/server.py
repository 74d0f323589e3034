"""`modelyard up`, `modelyard serve <service>` and `modelyard db upgrade`."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from modelyard.cli.output import console, done, table
from modelyard.cli.tracking import Json

Host = Annotated[str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")]
Port = Annotated[int | None, typer.Option(help="Port to listen on (default 50051; 0 picks one).")]
Home = Annotated[Path | None, typer.Option(help="State directory (default ~/.modelyard).")]
BackendUri = Annotated[
    str | None,
    typer.Option(help="Metadata database: sqlite:///path.db or postgresql://user@host/db."),
]
ArtifactUri = Annotated[
    str | None, typer.Option(help="Artifact root: file:///path or s3://bucket/prefix.")
]
MetricsPort = Annotated[int | None, typer.Option(help="Serve Prometheus /metrics on this port.")]
LogFormat = Annotated[str | None, typer.Option(help="console or json.")]
Auth = Annotated[
    bool | None,
    typer.Option(
        "--auth/--no-auth", help="Check bearer tokens on every call (MODELYARD_AUTH__ENABLED)."
    ),
]
TlsCert = Annotated[Path | None, typer.Option(help="Serve TLS with this certificate (PEM).")]
TlsKey = Annotated[Path | None, typer.Option(help="The TLS certificate's private key (PEM).")]
CpuAffinity = Annotated[
    str | None,
    typer.Option(
        help="Pin the server to these CPUs, e.g. 0 or 0-3 (MODELYARD_CPU_AFFINITY); faster where "
        "it shares a few cores with its clients."
    ),
]


T = TypeVar("T")


def _listen(what: str, address: str, flag: str, bind: Callable[[], T]) -> T:
    """A failed bind says only "Address already in use": name the port and the flag that moves
    it. (The gRPC port's own error, from create_server, already does.)"""
    try:
        return bind()
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise OSError(
            f"could not listen for {what} on {address}: {reason}; pick another port with {flag}"
        ) from exc


def _settings(**flags: Any) -> Any:
    from modelyard.services.common.settings import Settings

    auth = flags.pop("auth", None)
    cert, key = flags.pop("tls_cert", None), flags.pop("tls_key", None)
    settings = Settings(**{k: v for k, v in flags.items() if v is not None})
    if auth is not None:
        settings.auth.enabled = auth
    if cert or key:
        settings.tls.cert_file, settings.tls.key_file = cert, key
    return settings


UIPort = Annotated[
    int | None, typer.Option("--ui-port", help="Web UI port (default 5000; 0 picks one).")
]
NoUI = Annotated[bool, typer.Option("--no-ui", help="Do not serve the web UI.")]


def _run(settings: Any, names: list[str], with_ui: bool = False) -> None:
    from modelyard.services.apps import build_server
    from modelyard.services.common import logging as mlog
    from modelyard.services.common.cpu_affinity import format_cpus, parse_cpus, pin_process
    from modelyard.services.common.metrics import serve_metrics
    from modelyard.services.common.server import serve_forever

    mlog.configure(settings.log_level, settings.log_format)
    server = build_server(settings, names)
    ui = None
    if with_ui:  # bound now, so a taken port stops us before anything serves
        from modelyard.services.ui.server import UIServer

        ui = _listen(
            "the web UI",
            f"{settings.ui.host or settings.host}:{settings.ui.port}",
            "--ui-port (or turn the UI off with --no-ui)",
            lambda: UIServer(settings, settings.ui.services_uri or server.address),
        )
    if settings.cpu_affinity is not None:
        cpus = parse_cpus(settings.cpu_affinity)
        pin_process(cpus)
        console.print(f"Pinned to CPU {format_cpus(cpus)}")
    if settings.metrics_port is not None:
        port = _listen(
            "Prometheus metrics",
            f"{settings.host}:{settings.metrics_port}",
            "--metrics-port",
            lambda: serve_metrics(settings.metrics_port, settings.host),
        )
        console.print(f"Prometheus metrics on http://{settings.host}:{port}/metrics")

    if not settings.auth.enabled:
        console.print(
            "[bold red]Authentication is OFF[/bold red]: anyone who can reach "
            f"{settings.host} can read and change everything. Fine on a laptop; use --auth "
            "(then `modelyard admin bootstrap`) anywhere else."
        )

    def ready(address: str) -> None:
        rows = [(name, address) for name in names]
        if ui is not None:
            ui.start()
            rows.append(("web UI", ui.url))
        table("Modelyard is running", ["service", "address"], rows)
        console.print(
            f"Backend store: {settings.database_url}\nArtifacts:     {settings.artifact_root}\n"
            f"Connect with MODELYARD_URI={address}   (Ctrl-C stops, after in-flight calls finish)"
        )

    try:
        serve_forever(server, on_ready=ready)
    finally:
        if ui is not None:
            ui.stop()


def register(app: typer.Typer) -> None:
    @app.command("ui")
    def ui(
        host: Host = None,
        port: Annotated[
            int | None, typer.Option(help="Port to listen on (default 5000; 0 picks one).")
        ] = None,
        uri: Annotated[
            str | None,
            typer.Option(
                help="The services' address (default MODELYARD_UI__SERVICES_URI, MODELYARD_URI, "
                "127.0.0.1:50051)."
            ),
        ] = None,
        home: Home = None,
        log_format: LogFormat = None,
    ) -> None:
        """Serve the web UI for services running elsewhere."""
        from modelyard.client.config import default_uri
        from modelyard.services.common import logging as mlog
        from modelyard.services.ui.server import UIServer

        settings = _settings(home=home, log_format=log_format)
        if port is not None:
            settings.ui.port = port
        if host:
            settings.ui.host = host
        services = uri or settings.ui.services_uri or default_uri()
        mlog.configure(settings.log_level, settings.log_format)
        server = _listen(
            "the web UI",
            f"{settings.ui.host or settings.host}:{settings.ui.port}",
            "--port",
            lambda: UIServer(settings, services),
        )
        console.print(f"Modelyard UI on {server.url} (services at {services})")
        server.serve()

    @app.command()
    def up(
        host: Host = None,
        port: Port = None,
        home: Home = None,
        backend_store_uri: BackendUri = None,
        artifact_uri: ArtifactUri = None,
        metrics_port: MetricsPort = None,
        log_format: LogFormat = None,
        auth: Auth = None,
        tls_cert: TlsCert = None,
        tls_key: TlsKey = None,
        cpu_affinity: CpuAffinity = None,
        ui_port: UIPort = None,
        no_ui: NoUI = False,
    ) -> None:
        """Run every service and the web UI in one process (SQLite + local files by default)."""
        from modelyard.services.apps import SERVICES

        settings = _settings(
            host=host,
            port=port,
            home=home,
            backend_store_uri=backend_store_uri,
            artifact_uri=artifact_uri,
            metrics_port=metrics_port,
            log_format=log_format,
            auth=auth,
            tls_cert=tls_cert,
            tls_key=tls_key,
            cpu_affinity=cpu_affinity,
        )
        if ui_port is not None:
            settings.ui.port = ui_port
        _run(settings, list(SERVICES), with_ui=settings.ui.enabled and not no_ui)

    @app.command()
    def serve(
        service: Annotated[
            str, typer.Argument(help="auth, tracking, registry, features or serving.")
        ],
        host: Host = None,
        port: Port = None,
        home: Home = None,
        backend_store_uri: BackendUri = None,
        artifact_uri: ArtifactUri = None,
        metrics_port: MetricsPort = None,
        log_format: LogFormat = None,
        auth: Auth = None,
        tls_cert: TlsCert = None,
        tls_key: TlsKey = None,
        cpu_affinity: CpuAffinity = None,
    ) -> None:
        """Run one service (the entry point of a cluster Deployment)."""
        from modelyard.services.apps import SERVICES

        if service not in SERVICES:
            raise typer.BadParameter(f"unknown service {service!r}; choose from {list(SERVICES)}")
        settings = _settings(
            host=host,
            port=port,
            home=home,
            backend_store_uri=backend_store_uri,
            artifact_uri=artifact_uri,
            metrics_port=metrics_port,
            log_format=log_format,
            auth=auth,
            tls_cert=tls_cert,
            tls_key=tls_key,
            cpu_affinity=cpu_affinity,
        )
        _run(settings, [service])

    db = typer.Typer(help="Metadata database maintenance.", no_args_is_help=True)
    app.add_typer(db, name="db")

    @db.command("upgrade")
    def db_upgrade(
        backend_store_uri: BackendUri = None, home: Home = None, as_json: Json = False
    ) -> None:
        """Apply pending migrations of every service."""
        from modelyard.services.apps import migrate_all
        from modelyard.services.common.db.engine import shown_url

        settings = _settings(backend_store_uri=backend_store_uri, home=home)
        names = migrate_all(settings)
        database = shown_url(settings.database_url)  # printed: no password in it
        done(
            as_json,
            f"{database}: up to date ({', '.join(names)})",
            database=database,
            services=names,
        )
