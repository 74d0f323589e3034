"""The composition root: which services exist, and how a server process is put together."""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from modelyard.services.common.auth.setup import install
from modelyard.services.common.db import Database
from modelyard.services.common.runtime import Runtime
from modelyard.services.common.server import ModelyardServer, create_server
from modelyard.services.common.settings import Settings

# name -> module with build(settings, runtime) and migrate(db); `up` starts them in this order
# (auth first: the others may need it for their identity).
SERVICES: dict[str, str] = {
    "auth": "modelyard.services.auth.app",
    "tracking": "modelyard.services.tracking.app",
    "registry": "modelyard.services.registry.app",
    "features": "modelyard.services.feature_store.app",
    "serving": "modelyard.services.serving.app",
}


def build_server(settings: Settings, names: Sequence[str] | None = None) -> ModelyardServer:
    """A bound, not yet started, server running `names` (default: every service)."""
    names = list(names or SERVICES)
    runtime = Runtime(settings)
    registrations = [importlib.import_module(SERVICES[n]).build(settings, runtime) for n in names]
    interceptor, security = install(runtime, registrations, service=names[0])
    server = create_server(settings, [*registrations, security], interceptors=[interceptor])
    runtime.serve_here(server.address, server.lending)
    return server


def migrate_all(settings: Settings) -> list[str]:
    db = Database.from_settings(settings)
    try:
        for name in SERVICES:
            importlib.import_module(SERVICES[name]).migrate(db)
    finally:
        db.dispose()
    return list(SERVICES)
