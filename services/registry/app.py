"""Wiring of the registry service: the only place its parts are put together."""

from __future__ import annotations

from pathlib import Path

from modelyard._gen.registry.v1 import registry_pb2, registry_pb2_grpc
from modelyard.client.tracking import TrackingClient
from modelyard.services.common.artifacts import open_artifact_store
from modelyard.services.common.auth.grants import GrantStore
from modelyard.services.common.auth.interceptor import ServiceAccess
from modelyard.services.common.db import Database
from modelyard.services.common.db.migrations import prepare, upgrade
from modelyard.services.common.peer import Peer
from modelyard.services.common.runtime import Runtime
from modelyard.services.common.server import ServiceRegistration
from modelyard.services.common.settings import Settings
from modelyard.services.registry.access import rules
from modelyard.services.registry.authorizer import RegistryAuthorizer
from modelyard.services.registry.service import RegistryService
from modelyard.services.registry.servicer import RegistryServicer
from modelyard.services.registry.store.schema import registered_model_permissions
from modelyard.services.registry.store.sql import SqlRegistryStore

SERVICE = "registry"
MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE_NAME = registry_pb2.DESCRIPTOR.services_by_name["ModelRegistryService"].full_name


def migrate(db: Database) -> None:
    upgrade(db, SERVICE, MIGRATIONS)


def build(settings: Settings, runtime: Runtime) -> ServiceRegistration:
    db = Database.from_settings(settings)
    prepare(db, SERVICE, MIGRATIONS, settings.migrate_on_start)
    artifacts = open_artifact_store(settings.artifact_root, settings.s3)
    store = SqlRegistryStore(db, f"{artifacts.root_uri}/registry")
    authorizer = RegistryAuthorizer(store, GrantStore(db, registered_model_permissions))
    tracking = Peer(
        runtime,
        settings.registry.tracking_uri,
        SERVICE,
        TrackingClient,
        "the registry has no tracking service to talk to; set MODELYARD_REGISTRY__TRACKING_URI",
    )
    service = RegistryService(
        store, artifacts, tracking, authorizer, settings.registry.copy_workers
    )

    def on_start(address: str) -> None:
        # Under `modelyard up` tracking is served by this very process: talk to it over gRPC,
        # the same path as in a cluster.
        tracking.connect(address)
        service.resume_pending()

    def close() -> None:
        service.close()  # closes the tracking clients too
        store.close()
        artifacts.close()

    return ServiceRegistration(
        service_names=(SERVICE_NAME,),
        register=lambda server: registry_pb2_grpc.add_ModelRegistryServiceServicer_to_server(
            RegistryServicer(service), server
        ),
        close=close,
        drain=service.drain,
        on_start=on_start,
        access={
            SERVICE_NAME: ServiceAccess(
                rules(settings.auth.protected_aliases, store.version_stage), authorizer
            )
        },
    )
