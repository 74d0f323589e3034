"""AuthServicer: modelyard.auth.v1 over gRPC."""

from __future__ import annotations

from modelyard._gen.auth.v1 import auth_pb2 as pb
from modelyard._gen.auth.v1 import auth_pb2_grpc
from modelyard.convert.auth import (
    audit_to_entity,
    audit_to_proto,
    kind_to_entity,
    principal_to_proto,
    token_to_proto,
)
from modelyard.errors import InvalidArgument
from modelyard.services.auth.service import AuthService
from modelyard.services.common import identity
from modelyard.services.common import validation as v


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, service: AuthService) -> None:
        self.service = service

    def WhoAmI(self, request, context):
        return pb.WhoAmIResponse(
            principal=principal_to_proto(self.service.whoami()),
            auth_enabled=identity.current().enforced,
        )

    def CreatePrincipal(self, request, context):
        kind = kind_to_entity(request.kind)
        if kind is None:
            raise InvalidArgument("kind must be PRINCIPAL_KIND_USER or _SERVICE", field="kind")
        principal = self.service.create_principal(request.name, kind, list(request.roles))
        return pb.CreatePrincipalResponse(principal=principal_to_proto(principal))

    def ListPrincipals(self, request, context):
        return pb.ListPrincipalsResponse(
            principals=[principal_to_proto(p) for p in self.service.list_principals()]
        )

    def UpdatePrincipal(self, request, context):
        disabled = request.disabled if request.HasField("disabled") else None
        principal = self.service.update_principal(request.name, list(request.roles), disabled)
        return pb.UpdatePrincipalResponse(principal=principal_to_proto(principal))

    def CreateToken(self, request, context):
        token, info = self.service.create_token(
            request.principal, request.description, request.ttl_seconds
        )
        return pb.CreateTokenResponse(token=token, info=token_to_proto(info))

    def ListTokens(self, request, context):
        tokens = self.service.list_tokens(request.principal)
        return pb.ListTokensResponse(tokens=[token_to_proto(t) for t in tokens])

    def RevokeToken(self, request, context):
        self.service.revoke_token(request.token_id)
        return pb.RevokeTokenResponse()

    def GetAuthState(self, request, context):
        snapshot = self.service.snapshot()
        return pb.GetAuthStateResponse(
            revoked_token_ids=sorted(snapshot.revoked),
            principals=[
                pb.Principal(name=name, roles=sorted(state.roles), disabled=state.disabled)
                for name, state in sorted(snapshot.principals.items())
            ],
        )

    def RecordAuditEvents(self, request, context):
        for i, event in enumerate(request.events):
            v.timestamp_ms(f"events[{i}].event_time", event.event_time)
        self.service.record_audit([audit_to_entity(e) for e in request.events])
        return pb.RecordAuditEventsResponse()

    def ListAuditEvents(self, request, context):
        events = self.service.list_audit(
            request.principal,
            request.service,
            request.method,
            request.since_event_id,
            request.max_results,
        )
        return pb.ListAuditEventsResponse(
            events=[audit_to_proto(e) for e in events],
            last_event_id=events[-1].event_id if events else request.since_event_id,
        )
