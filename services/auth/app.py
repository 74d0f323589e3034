"""Wiring of the auth service."""

from __future__ import annotations

from pathlib import Path

from modelyard._gen.auth.v1 import auth_pb2, auth_pb2_grpc
from modelyard.services.auth.access import RULES
from modelyard.services.auth.service import AuthService
from modelyard.services.auth.servicer import AuthServicer
from modelyard.services.auth.store.sql import SqlAuthStore
from modelyard.services.common.auth.interceptor import ServiceAccess
from modelyard.services.common.auth.setup import key_files
from modelyard.services.common.auth.tokens import TokenSigner
from modelyard.services.common.db import Database
from modelyard.services.common.db.migrations import prepare, upgrade
from modelyard.services.common.runtime import Runtime
from modelyard.services.common.server import ServiceRegistration
from modelyard.services.common.settings import Settings

SERVICE = "auth"
MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE_NAME = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name
# The services that get a service principal (svc-<name>) to call each other with.
CALLERS = ("tracking", "registry", "serving", "features")


def migrate(db: Database) -> None:
    upgrade(db, SERVICE, MIGRATIONS)


def open_service(settings: Settings, runtime: Runtime) -> AuthService:
    db = Database.from_settings(settings)
    prepare(db, SERVICE, MIGRATIONS, settings.migrate_on_start)
    private, _public = key_files(runtime)
    signer = TokenSigner(private.read_bytes()) if private is not None else None
    service = AuthService(SqlAuthStore(db), signer)
    service.ensure_service_principals(CALLERS)
    return service


def build(settings: Settings, runtime: Runtime) -> ServiceRegistration:
    service = open_service(settings, runtime)
    runtime.auth_service = service
    if service.signer is not None:
        runtime.mint_token = service.process_token
    servicer = AuthServicer(service)
    return ServiceRegistration(
        service_names=(SERVICE_NAME,),
        register=lambda server: auth_pb2_grpc.add_AuthServiceServicer_to_server(servicer, server),
        close=service.close,
        access={SERVICE_NAME: ServiceAccess(RULES)},
    )
