"""The auth link of the interceptor chain: who is calling, may they, and the audit record.

For every RPC: read the bearer token, verify it offline, check revocation and roles against the
cached auth state, set the caller's identity for the service code, and evaluate the method's rule
from its service's access table. Mutating calls are recorded in the audit log with their outcome.
Requests whose resource arrives in a stream (UploadArtifact's header) are checked when the
service reads the first message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from modelyard.entities.auth import AuditEvent
from modelyard.entities.common import PermissionLevel as Level
from modelyard.errors import ModelyardError, PermissionDenied, Unauthenticated
from modelyard.services.common.auth.audit import AuditRecorder
from modelyard.services.common.auth.policy import (
    CREATOR_ROLES,
    PUBLIC_SERVICES,
    SERVICE_ROLES,
    Rule,
)
from modelyard.services.common.auth.state import AuthState
from modelyard.services.common.auth.tokens import TokenVerifier
from modelyard.services.common.identity import ANONYMOUS, Identity, reset_current, set_current
from modelyard.services.common.interceptors import (
    Behavior,
    _behavior_kind,
    _replace,
    _WrappingInterceptor,
    split_method,
)


@dataclass(frozen=True)
class Access:
    """What a caller holds on one resource; `exists` False when there is no such resource."""

    resource: str
    exists: bool
    level: Level | None = None
    # The resource's immutable id, when its key (a name) may come to name another one.
    resource_id: str | None = None


_authorized: ContextVar[str | None] = ContextVar("modelyard_authorized_id", default=None)


def authorized_id() -> str | None:
    """The id of the resource this call was authorized on (None when the check found none, or
    made none: admins, auth off). A write addressed by name applies to that resource or fails:
    the name may have been given to another resource after the check."""
    return _authorized.get()


class Authorizer(Protocol):
    def access(self, identity: Identity, resource_type: str, key: str) -> Access: ...


@dataclass(frozen=True)
class ServiceAccess:
    rules: Mapping[str, Rule]
    authorizer: Authorizer | None = None


class Authenticator:
    """Bearer token -> Identity, without a database round trip."""

    def __init__(self, verifier: TokenVerifier, state: AuthState) -> None:
        self.verifier = verifier
        self.state = state

    def __call__(self, metadata: Sequence[tuple[str, Any]]) -> Identity:
        header = next((v for k, v in metadata if k == "authorization"), None)
        if not header:
            raise Unauthenticated(
                "this server requires a token: send the 'authorization: Bearer <token>' header "
                "(the SDK and CLI read MODELYARD_TOKEN)"
            )
        scheme, _, token = str(header).partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("the authorization header must be 'Bearer <token>'")
        claims = self.verifier.verify(token.strip())
        snapshot = self.state.snapshot
        if claims.token_id in snapshot.revoked:
            raise Unauthenticated(
                "this token was revoked; create a new one with `modelyard tokens create`"
            )
        principal = snapshot.principals.get(claims.principal)
        if principal is None:  # created since the last poll?
            principal = self.state.refresh_soon().principals.get(claims.principal)
        if principal is None:
            raise Unauthenticated(
                f"principal {claims.principal!r} does not exist (any more); ask an admin"
            )
        if principal.disabled:
            raise Unauthenticated(f"principal {claims.principal!r} is disabled; ask an admin")
        return Identity(claims.principal, principal.roles, token.strip(), enforced=True)


def check(rule: Rule, identity: Identity, request: Any, authorizer: Authorizer | None) -> str:
    """Raise PermissionDenied unless `identity` may make the call; returns the resource name."""
    return authorize(rule, identity, request, authorizer)[0]


def authorize(
    rule: Rule, identity: Identity, request: Any, authorizer: Authorizer | None
) -> tuple[str, str | None]:
    """As `check`, and the id of the resource the decision was made on (see `authorized_id`)."""
    if rule.kind == "resource":
        assert rule.resource is not None
        resource_type, key = rule.resource(request)
        if identity.unrestricted or authorizer is None:
            return f"{resource_type}/{key}", None
        # A key with NUL names nothing (no service stores one), and PostgreSQL fails any query
        # that holds one: looked up, it made callers other than admins an INTERNAL error where
        # admins got the service's refusal naming the field.
        access = (
            Access(f"{resource_type}/{key}", exists=False)
            if "\x00" in key
            else authorizer.access(identity, resource_type, key)
        )
        if not access.exists:
            if rule.create_if_missing and not identity.roles & CREATOR_ROLES:
                raise PermissionDenied(
                    f"{identity.name} may not create {access.resource}: creating needs the "
                    "editor or admin role",
                    resource_type=resource_type,
                    resource_name=key,
                )
            return access.resource, None  # the service answers NOT_FOUND (or creates it)
        needed = rule.needed(request)
        if access.level is None or access.level < needed:
            have = access.level.name if access.level else "no access"
            kind, _, name = access.resource.partition("/")
            raise PermissionDenied(
                f"{identity.name} needs {needed.name} on {access.resource} (has {have}); ask "
                "someone with MANAGE on it for a grant",
                resource_type=kind,
                resource_name=name,
            )
        return access.resource, access.resource_id
    if rule.kind == "service":
        # Admins too are refused: the audit log holds them to account, so they must not be able
        # to write events into it.
        if identity.roles & SERVICE_ROLES or not identity.enforced:
            return "", None
        raise PermissionDenied(
            f"{identity.name} may not do this: only the services' own identities (svc-<service> "
            "principals) may, not even admins; admins read principals, tokens and the audit log "
            "with `modelyard users list`, `modelyard tokens list` and `modelyard audit`"
        )
    if identity.unrestricted or rule.kind in ("filtered", "authenticated"):
        return "", None
    if rule.kind == "create" and identity.roles & CREATOR_ROLES:
        return "", None
    needs = {"create": "the editor or admin role", "admin": "the admin role"}[rule.kind]
    raise PermissionDenied(f"{identity.name} may not do this: it needs {needs}")


class AuthInterceptor(_WrappingInterceptor):
    def __init__(
        self,
        services: Mapping[str, ServiceAccess],
        authenticate: Callable[[Sequence[tuple[str, Any]]], Identity] | None,
        audit: AuditRecorder | None = None,
    ) -> None:
        super().__init__()
        self._services = services
        self._authenticate = authenticate
        self._audit = audit

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        service, name = split_method(method)
        if service in PUBLIC_SERVICES:
            return handler
        access = self._services.get(service)
        rule = access.rules.get(name) if access else None
        kind = _behavior_kind(handler)
        behavior = getattr(handler, kind)
        wrapped = self._guard(behavior, service, name, rule, access, handler)
        return _replace(handler, **{kind: wrapped})

    def _identity(self, context: grpc.ServicerContext) -> Identity:
        if self._authenticate is None:
            return ANONYMOUS
        return self._authenticate(context.invocation_metadata() or ())

    def _guard(
        self,
        behavior: Behavior,
        service: str,
        name: str,
        rule: Rule | None,
        access: ServiceAccess | None,
        handler: grpc.RpcMethodHandler,
    ) -> Behavior:
        """Wrap one method. Errors raised here are mapped by the error interceptor around us."""
        authorizer = access.authorizer if access else None
        audited = self._audit is not None and rule is not None and rule.mutating

        def who(context: grpc.ServicerContext) -> Identity:
            identity = self._identity(context)
            if rule is None:
                raise PermissionDenied(
                    f"{service}/{name} is in no access table, so nobody may call it; this is a "
                    "server bug, report it"
                )
            return identity

        def audit(
            identity: Identity,
            resource: str,
            request: Any,
            context: Any,
            exc: BaseException | None,
        ) -> None:
            if not audited:
                return
            assert rule is not None
            if exc is None:
                code = grpc.StatusCode.OK
            elif isinstance(exc, ModelyardError):
                code = exc.code
            else:
                code = context.code() or grpc.StatusCode.INTERNAL
            request_id = next(
                (v for k, v in context.invocation_metadata() or () if k == "x-request-id"), ""
            )
            if not resource and isinstance(exc, ModelyardError) and exc.resource_type:
                resource = f"{exc.resource_type}/{exc.resource_name}"
            if request is not None:
                resource = rule.audited(request, identity.name, resource)
            assert self._audit is not None
            self._audit.record(
                AuditEvent(
                    timestamp=int(time.time() * 1000),
                    principal=identity.name,
                    service=service,
                    method=name,
                    resource=resource,
                    outcome=code.name,
                    request_id=str(request_id),
                )
            )

        def checked_stream(
            requests: Iterator[Any], identity: Identity, box: list[str], seen: list[Any]
        ) -> Iterator[Any]:
            # The resource is in the first message: check it when the service reads it.
            for request in requests:
                if not seen:
                    seen.append(request)
                    assert rule is not None
                    box.append(check(rule, identity, request, authorizer))
                yield request

        def call(request: Any, context: grpc.ServicerContext) -> Any:
            identity = ANONYMOUS
            box: list[str] = []
            # The request (a stream's first message), for the audit event's resource.
            seen: list[Any] = [] if handler.request_streaming else [request]
            exc_seen: BaseException | None = None
            token = None
            # Set on every call: the thread serving it served others before.
            checked_id = _authorized.set(None)
            try:
                identity = who(context)
                if handler.request_streaming:
                    request = checked_stream(request, identity, box, seen)
                else:
                    assert rule is not None
                    resource, resource_id = authorize(rule, identity, request, authorizer)
                    box.append(resource)
                    _authorized.set(resource_id)
                token = set_current(identity)
                return behavior(request, context)
            except BaseException as exc:
                exc_seen = exc
                raise
            finally:
                if token is not None:
                    reset_current(token)
                _authorized.reset(checked_id)
                audit(identity, box[0] if box else "", seen[0] if seen else None, context, exc_seen)

        if not handler.response_streaming:
            return call

        def streamed(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            identity = who(context)
            assert rule is not None
            _, resource_id = authorize(rule, identity, request, authorizer)
            checked_id = _authorized.set(resource_id)
            token = set_current(identity)
            try:
                yield from behavior(request, context)
            finally:
                reset_current(token)
                _authorized.reset(checked_id)

        return streamed
