"""Wiring of the tracking service: the only place its parts are put together."""

from __future__ import annotations

from pathlib import Path

from modelyard._gen.tracking.v1 import tracking_pb2, tracking_pb2_grpc
from modelyard.services.common.artifacts import open_artifact_store
from modelyard.services.common.auth.grants import GrantStore
from modelyard.services.common.auth.interceptor import ServiceAccess
from modelyard.services.common.db import Database
from modelyard.services.common.db.migrations import prepare, upgrade
from modelyard.services.common.runtime import Runtime
from modelyard.services.common.server import ServiceRegistration
from modelyard.services.common.settings import Settings
from modelyard.services.tracking.access import RULES
from modelyard.services.tracking.authorizer import TrackingAuthorizer
from modelyard.services.tracking.service import (
    DEFAULT_EXPERIMENT_ID,
    DEFAULT_EXPERIMENT_NAME,
    TrackingService,
)
from modelyard.services.tracking.servicer import TrackingServicer
from modelyard.services.tracking.store.schema import experiment_permissions
from modelyard.services.tracking.store.sql import SqlTrackingStore

SERVICE = "tracking"
MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE_NAME = tracking_pb2.DESCRIPTOR.services_by_name["TrackingService"].full_name


def migrate(db: Database) -> None:
    upgrade(db, SERVICE, MIGRATIONS)


def build(settings: Settings, runtime: Runtime) -> ServiceRegistration:
    db = Database.from_settings(settings)
    prepare(db, SERVICE, MIGRATIONS, settings.migrate_on_start)
    artifacts = open_artifact_store(settings.artifact_root, settings.s3)
    store = SqlTrackingStore(db, artifacts.root_uri)
    store.ensure_experiment(int(DEFAULT_EXPERIMENT_ID), DEFAULT_EXPERIMENT_NAME)
    authorizer = TrackingAuthorizer(store, GrantStore(db, experiment_permissions))
    service = TrackingService(store, artifacts, authorizer)
    service.finish_abandoned_uploads()
    servicer = TrackingServicer(service)

    def close() -> None:
        store.close()
        artifacts.close()

    return ServiceRegistration(
        service_names=(SERVICE_NAME,),
        register=lambda server: tracking_pb2_grpc.add_TrackingServiceServicer_to_server(
            servicer, server
        ),
        close=close,
        access={SERVICE_NAME: ServiceAccess(RULES, authorizer)},
    )
