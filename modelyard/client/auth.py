"""AuthClient: principals, tokens and the audit log (modelyard.auth.v1)."""

from __future__ import annotations

from collections.abc import Sequence

from modelyard._gen.auth.v1 import auth_pb2 as pb
from modelyard._gen.auth.v1 import auth_pb2_grpc
from modelyard.client._transport import Transport
from modelyard.convert.auth import (
    audit_to_entity,
    audit_to_proto,
    principal_to_entity,
    token_to_entity,
)
from modelyard.convert.common import id_arg, page_size_arg
from modelyard.entities.auth import AuditEvent, Principal, TokenInfo

_KINDS = {"user": pb.PRINCIPAL_KIND_USER, "service": pb.PRINCIPAL_KIND_SERVICE}


class AuthClient:
    def __init__(self, transport: Transport) -> None:
        self._t = transport
        self._auth = transport.stub(auth_pb2_grpc.AuthServiceStub)

    def whoami(self) -> tuple[Principal, bool]:
        """The caller, and whether the server checks tokens at all."""
        response = self._t.call(self._auth.WhoAmI, pb.WhoAmIRequest())
        return principal_to_entity(response.principal), response.auth_enabled

    def create_principal(self, name: str, roles: Sequence[str], kind: str = "user") -> Principal:
        request = pb.CreatePrincipalRequest(
            name=name, kind=_KINDS.get(kind, pb.PRINCIPAL_KIND_UNSPECIFIED), roles=list(roles)
        )
        return principal_to_entity(self._t.call(self._auth.CreatePrincipal, request).principal)

    def list_principals(self) -> list[Principal]:
        response = self._t.call(self._auth.ListPrincipals, pb.ListPrincipalsRequest())
        return [principal_to_entity(p) for p in response.principals]

    def update_principal(
        self, name: str, roles: Sequence[str] | None = None, disabled: bool | None = None
    ) -> Principal:
        """New roles when given; `disabled` True or False disables or enables, None leaves
        it alone. Enabling a disabled principal revokes the tokens it had."""
        request = pb.UpdatePrincipalRequest(name=name, roles=list(roles or []))
        if disabled is not None:
            request.disabled = disabled
        return principal_to_entity(self._t.call(self._auth.UpdatePrincipal, request).principal)

    def create_token(
        self, principal: str | None = None, description: str = "", ttl_seconds: int = 0
    ) -> tuple[str, TokenInfo]:
        """A new token (shown only now) for the caller, or for `principal` (admins). The
        caller's own is revoked with the token that made it and, but for admins, ends no later
        than that token (`expires` says when)."""
        request = pb.CreateTokenRequest(
            principal=principal or "", description=description, ttl_seconds=ttl_seconds
        )
        response = self._t.call(self._auth.CreateToken, request)
        return response.token, token_to_entity(response.info)

    def list_tokens(self, principal: str | None = None) -> list[TokenInfo]:
        response = self._t.call(
            self._auth.ListTokens, pb.ListTokensRequest(principal=principal or "")
        )
        return [token_to_entity(t) for t in response.tokens]

    def revoke_token(self, token_id: str) -> None:
        self._t.call(self._auth.RevokeToken, pb.RevokeTokenRequest(token_id=token_id))

    def list_audit_events(
        self,
        principal: str | None = None,
        service: str | None = None,
        method: str | None = None,
        since_event_id: int = 0,
        max_results: int = 1000,
    ) -> list[AuditEvent]:
        request = pb.ListAuditEventsRequest(
            principal=principal or "",
            service=service or "",
            method=method or "",
            since_event_id=id_arg(since_event_id, "since_event_id"),
            max_results=page_size_arg(max_results, "max_results"),
        )
        response = self._t.call(self._auth.ListAuditEvents, request)
        return [audit_to_entity(e) for e in response.events]

    # For services: the state they cache and the audit events they ship.

    def get_auth_state(self) -> pb.GetAuthStateResponse:
        return self._t.call(self._auth.GetAuthState, pb.GetAuthStateRequest())

    def record_audit_events(self, events: Sequence[AuditEvent]) -> None:
        request = pb.RecordAuditEventsRequest(events=[audit_to_proto(e) for e in events])
        self._t.call(self._auth.RecordAuditEvents, request)
