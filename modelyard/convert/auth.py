"""Converters for modelyard.auth.v1 messages."""

from __future__ import annotations

from modelyard._gen.auth.v1 import auth_pb2 as pb
from modelyard.convert.common import ms_to_timestamp, timestamp_to_ms
from modelyard.entities.auth import AuditEvent, Principal, TokenInfo

_KIND = {"user": pb.PRINCIPAL_KIND_USER, "service": pb.PRINCIPAL_KIND_SERVICE}
_KIND_BACK = {v: k for k, v in _KIND.items()}


def kind_to_entity(kind: int) -> str | None:
    return _KIND_BACK.get(kind)  # type: ignore[call-overload]


def principal_to_proto(p: Principal) -> pb.Principal:
    return pb.Principal(
        name=p.name,
        kind=_KIND.get(p.kind, pb.PRINCIPAL_KIND_UNSPECIFIED),
        roles=list(p.roles),
        disabled=p.disabled,
        create_time=ms_to_timestamp(p.created),
    )


def principal_to_entity(m: pb.Principal) -> Principal:
    return Principal(
        name=m.name,
        kind=_KIND_BACK.get(m.kind, "user"),
        roles=tuple(m.roles),
        disabled=m.disabled,
        created=timestamp_to_ms(m.create_time, m.HasField("create_time")),
    )


def token_to_proto(t: TokenInfo) -> pb.TokenInfo:
    return pb.TokenInfo(
        token_id=t.token_id,
        principal=t.principal,
        description=t.description,
        create_time=ms_to_timestamp(t.created),
        expire_time=ms_to_timestamp(t.expires),
        revoked=t.revoked,
    )


def token_to_entity(m: pb.TokenInfo) -> TokenInfo:
    return TokenInfo(
        token_id=m.token_id,
        principal=m.principal,
        description=m.description,
        created=m.create_time.ToMilliseconds(),
        expires=m.expire_time.ToMilliseconds(),
        revoked=m.revoked,
    )


def audit_to_proto(e: AuditEvent) -> pb.AuditEvent:
    return pb.AuditEvent(
        event_time=ms_to_timestamp(e.timestamp),
        principal=e.principal,
        service=e.service,
        method=e.method,
        resource=e.resource,
        outcome=e.outcome,
        request_id=e.request_id,
        event_id=e.event_id,
    )


def audit_to_entity(m: pb.AuditEvent) -> AuditEvent:
    return AuditEvent(
        timestamp=m.event_time.ToMilliseconds(),
        principal=m.principal,
        service=m.service,
        method=m.method,
        resource=m.resource,
        outcome=m.outcome,
        request_id=m.request_id,
        event_id=m.event_id,
    )
