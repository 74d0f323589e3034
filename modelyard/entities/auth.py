"""Identity entities: principals, tokens and audit events."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    kind: str  # "user" or "service"
    roles: tuple[str, ...]
    disabled: bool = False
    created: int | None = None


@dataclass(frozen=True, slots=True)
class TokenInfo:
    token_id: str
    principal: str
    description: str
    created: int
    expires: int
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class AuditEvent:
    timestamp: int
    principal: str
    service: str
    method: str
    resource: str
    outcome: str
    request_id: str = ""
    event_id: int = 0
