"""Put authentication, authorization and auditing in front of a process's services."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from modelyard.client.auth import AuthClient
from modelyard.errors import FailedPrecondition
from modelyard.services.common.auth.audit import AuditRecorder
from modelyard.services.common.auth.interceptor import Authenticator, AuthInterceptor
from modelyard.services.common.auth.state import AuthState, PrincipalState, Snapshot
from modelyard.services.common.auth.tokens import TokenVerifier, ensure_keypair
from modelyard.services.common.logging import get_logger
from modelyard.services.common.runtime import Runtime
from modelyard.services.common.server import ServiceRegistration

log = get_logger(__name__)


def key_files(runtime: Runtime) -> tuple[Path | None, Path | None]:
    """(private, public) key files: configured, or the laptop pair under <home>/auth."""
    auth = runtime.settings.auth
    if auth.private_key_file or auth.public_key_file:
        return auth.private_key_file, auth.public_key_file
    return ensure_keypair(runtime.settings.home_dir / "auth")


def public_key(runtime: Runtime) -> bytes:
    private, public = key_files(runtime)
    if public is not None:
        return public.read_bytes()
    if private is not None:
        key = serialization.load_pem_private_key(private.read_bytes(), password=None)
        return key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    raise FailedPrecondition(
        "auth is on but no public key is configured; set MODELYARD_AUTH__PUBLIC_KEY_FILE"
    )


def _remote_snapshot(client: AuthClient) -> Snapshot:
    state = client.get_auth_state()
    return Snapshot(
        revoked=frozenset(state.revoked_token_ids),
        principals={
            p.name: PrincipalState(frozenset(p.roles), p.disabled) for p in state.principals
        },
    )


def install(
    runtime: Runtime, registrations: Sequence[ServiceRegistration], service: str
) -> tuple[AuthInterceptor, ServiceRegistration]:
    """The auth interceptor for these services, and a registration that starts and stops it.

    `service` names this process (its identity towards the auth service when that is remote).
    """
    settings = runtime.settings
    services = {name: access for r in registrations for name, access in r.access.items()}
    local = runtime.auth_service
    remote: AuthClient | None = None
    if local is None and settings.auth.auth_uri:
        remote = AuthClient(runtime.transport(settings.auth.auth_uri, service))
    sink = local.record_audit if local else (remote.record_audit_events if remote else None)
    audit = AuditRecorder(sink) if sink else None
    if audit is None:
        log.warning("no auth service to record audit events in; set MODELYARD_AUTH__AUTH_URI")
    state: AuthState | None = None
    authenticate = None
    if settings.auth.enabled:
        if local is None and remote is None:
            raise FailedPrecondition(
                "auth is on, but the auth service is neither in this process nor configured; "
                "set MODELYARD_AUTH__AUTH_URI"
            )
        fetch = local.snapshot if local else (lambda: _remote_snapshot(remote))  # type: ignore[arg-type]
        state = AuthState(fetch, settings.auth.refresh_seconds)
        authenticate = Authenticator(TokenVerifier(public_key(runtime)), state)
        if local is not None:
            state.start()  # local state is readable before the server listens
    interceptor = AuthInterceptor(services, authenticate, audit)

    def on_start(address: str) -> None:
        if state is not None and local is None:
            state.start()

    def close() -> None:
        if state is not None:
            state.close()
        if audit is not None:
            audit.close()
        if remote is not None:
            remote._t.close()

    return interceptor, ServiceRegistration(
        service_names=(), register=lambda server: None, close=close, on_start=on_start
    )
