"""The services a process can run, by name, for `modelyard up` and `modelyard serve <name>`."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from modelyard.services.common.db import Database
from modelyard.services.common.server import ServiceRegistration
from modelyard.services.common.settings import Settings

# name -> module with build(settings) and migrate(db); `up` starts them in this order.
SERVICES: dict[str, str] = {
    "tracking": "modelyard.services.tracking.app",
    "registry": "modelyard.services.registry.app",
}


def builder(name: str) -> Callable[[Settings], ServiceRegistration]:
    return importlib.import_module(SERVICES[name]).build


def migrate_all(settings: Settings) -> list[str]:
    db = Database(settings.database_url)
    try:
        for name in SERVICES:
            importlib.import_module(SERVICES[name]).migrate(db)
    finally:
        db.dispose()
    return list(SERVICES)
