"""What each call needs: access rules, platform roles and how they combine.

Every service declares one table, RPC name -> Rule, in its access.py. A test parses every proto
and fails if an RPC is missing; an RPC missing at run time is refused (the check fails closed).
Health and reflection are the only public services.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

from modelyard.entities.common import PermissionLevel as Level

PUBLIC_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)

# Platform roles give levels on every resource of a type ("*": every type).
ROLE_LEVELS: dict[str, dict[str, Level]] = {
    "admin": {"*": Level.MANAGE},
    "editor": {},
    "viewer": {},
    # Service identities get exactly what their service needs from the others.
    "service:tracking": {},
    "service:registry": {"experiment": Level.READ},
    "service:serving": {
        "registered_model": Level.USE,
        "feature_view": Level.USE,
        "feature_service": Level.USE,
    },
    "service:features": {},
}
# Roles that may create new top-level resources (and get MANAGE on them).
CREATOR_ROLES = frozenset({"admin", "editor"})
USER_ROLES = frozenset({"admin", "editor", "viewer"})
SERVICE_ROLES = frozenset(r for r in ROLE_LEVELS if r.startswith("service:"))

Kind = Literal["resource", "create", "filtered", "authenticated", "admin", "service"]
ResourceOf = Callable[[Any], tuple[str, str]]
LevelOf = Callable[[Any], Level]
# (request, caller's name) -> the resource an audit event names.
AuditOf = Callable[[Any, str], str]


@dataclass(frozen=True)
class Rule:
    kind: Kind
    # For kind="resource": the level needed, or a function of the request deciding it.
    level: Level | LevelOf | None = None
    # For kind="resource": (resource type, key) the request is about.
    resource: ResourceOf | None = None
    # Changes state: recorded in the audit log.
    mutating: bool = False
    # For kind="resource": when the resource does not exist yet, creating it is allowed to
    # callers with a creator role (CreateModelVersion of a new model).
    create_if_missing: bool = False
    # For rules of no resource whose call still changes one (a principal, a token): what the
    # audit log names, so it says who was created, promoted, disabled or given a token.
    audit_resource: AuditOf | None = None
    # Set/Delete*Permission: the audit log names the grantee too ("experiment/3#bob"), so it says
    # whose access changed. The level is left out: the grant listing has it.
    changes_grant: bool = False

    def needed(self, request: Any) -> Level:
        assert self.level is not None
        return self.level(request) if callable(self.level) else self.level

    def audited(self, request: Any, caller: str, resource: str) -> str:
        """The resource an audit event names; `resource` is what the access check named."""
        if self.audit_resource is not None:
            return self.audit_resource(request, caller)
        if self.changes_grant and resource:
            return f"{resource}#{grantee(request)}"
        return resource


def grantee(request: Any) -> str:
    """Whose grant a Set*Permission (its grant's principal) or Delete*Permission call changes."""
    return request.grant.principal if hasattr(request, "grant") else request.principal


def on(
    level: Level | LevelOf,
    resource: str,
    field: str | Callable[[Any], str],
    *,
    mutating: bool = False,
    create_if_missing: bool = False,
) -> Rule:
    """Needs `level` on the resource named by a request field (or a function of the request)."""
    key = field if callable(field) else (lambda request, name=field: getattr(request, name))
    return Rule(
        "resource",
        level=level,
        resource=lambda request: (resource, key(request)),
        mutating=mutating,
        create_if_missing=create_if_missing,
    )


def grant_change(resource: str, field: str | Callable[[Any], str]) -> Rule:
    """Set/Delete*Permission: needs MANAGE on the resource; audited with the grantee."""
    return replace(on(Level.MANAGE, resource, field, mutating=True), changes_grant=True)


def create(mutating: bool = True) -> Rule:
    return Rule("create", mutating=mutating)


def filtered() -> Rule:
    """Any authenticated caller; the service returns only what the caller may read."""
    return Rule("filtered")


def authenticated(mutating: bool = False, audit_resource: AuditOf | None = None) -> Rule:
    return Rule("authenticated", mutating=mutating, audit_resource=audit_resource)


def admin(mutating: bool = False, audit_resource: AuditOf | None = None) -> Rule:
    return Rule("admin", mutating=mutating, audit_resource=audit_resource)


def service(mutating: bool = False) -> Rule:
    return Rule("service", mutating=mutating)


def role_level(roles: frozenset[str], resource_type: str) -> Level | None:
    best: Level | None = None
    for role in roles:
        granted = ROLE_LEVELS.get(role, {})
        level = granted.get(resource_type) or granted.get("*")
        if level is not None and (best is None or level > best):
            best = level
    return best
