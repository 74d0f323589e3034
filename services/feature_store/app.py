"""Wiring of the feature store service."""

from __future__ import annotations

from pathlib import Path

from modelyard._gen.features.v1 import features_pb2, features_pb2_grpc
from modelyard.services.common.artifacts import open_artifact_store
from modelyard.services.common.auth.grants import GrantStore
from modelyard.services.common.auth.interceptor import ServiceAccess
from modelyard.services.common.db import Database
from modelyard.services.common.db.migrations import prepare, upgrade
from modelyard.services.common.runtime import Runtime
from modelyard.services.common.server import ServiceRegistration
from modelyard.services.common.settings import Settings
from modelyard.services.feature_store.access import RULES
from modelyard.services.feature_store.offline import push_log
from modelyard.services.feature_store.offline.duckdb_engine import DuckDbEngine, DuckDbSettings
from modelyard.services.feature_store.offline.sources import SourceReader
from modelyard.services.feature_store.online import open_online_store
from modelyard.services.feature_store.service import FeatureAuthorizer, FeaturesService
from modelyard.services.feature_store.servicer import FeatureStoreServicer
from modelyard.services.feature_store.source_locations import SourceLocations
from modelyard.services.feature_store.store.schema import feature_permissions
from modelyard.services.feature_store.store.sql import SqlFeatureStore

SERVICE = "features"
MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE_NAME = features_pb2.DESCRIPTOR.services_by_name["FeatureStoreService"].full_name


def migrate(db: Database) -> None:
    upgrade(db, SERVICE, MIGRATIONS)


def build(settings: Settings, runtime: Runtime) -> ServiceRegistration:
    db = Database.from_settings(settings)
    prepare(db, SERVICE, MIGRATIONS, settings.migrate_on_start)
    store = SqlFeatureStore(db, settings.features.definitions_cache_seconds)
    artifacts = open_artifact_store(settings.artifact_root, settings.s3)
    online = open_online_store(
        settings.features.online_store_uri or f"sqlite:///{settings.home_dir / 'online.db'}"
    )
    authorizer = FeatureAuthorizer(GrantStore(db, feature_permissions), store)
    sources = SourceReader(settings.s3, push_log.log_root(artifacts.root_uri))
    features = settings.features
    spill = features.duckdb_temp_directory or settings.home_dir / "duckdb-tmp"
    engine = DuckDbEngine(
        sources,
        store.join_key_fields,
        DuckDbSettings(features.duckdb_threads, features.duckdb_memory_limit, str(spill)),
    )
    locations = SourceLocations(
        settings.features.source_locations,
        server_own=[artifacts.root_uri, str(settings.home_dir), settings.database_url],
    )
    service = FeaturesService(store, engine, online, authorizer, artifacts, locations)
    service.retry_cleanups()  # those a delete left while a store was down
    servicer = FeatureStoreServicer(service)

    def close() -> None:
        online.close()
        artifacts.close()
        store.close()

    return ServiceRegistration(
        service_names=(SERVICE_NAME,),
        register=lambda server: features_pb2_grpc.add_FeatureStoreServiceServicer_to_server(
            servicer, server
        ),
        close=close,
        access={SERVICE_NAME: ServiceAccess(RULES, authorizer)},
    )
