"""Who may call each AuthService RPC, and what their audit events name."""

from __future__ import annotations

from typing import Any

from modelyard.services.common.auth.policy import Rule, admin, authenticated, service


def _principal(request: Any, caller: str) -> str:
    return f"principal/{request.name}"


def _token_holder(request: Any, caller: str) -> str:
    return f"principal/{request.principal or caller}"


def _token(request: Any, caller: str) -> str:
    return f"token/{request.token_id}"


RULES: dict[str, Rule] = {
    "WhoAmI": authenticated(),
    "CreatePrincipal": admin(mutating=True, audit_resource=_principal),
    "ListPrincipals": admin(),
    "UpdatePrincipal": admin(mutating=True, audit_resource=_principal),
    # Everybody manages their own tokens; the service checks that others' need admin.
    "CreateToken": authenticated(mutating=True, audit_resource=_token_holder),
    "ListTokens": authenticated(),
    "RevokeToken": authenticated(mutating=True, audit_resource=_token),
    "GetAuthState": service(),
    "RecordAuditEvents": service(),
    "ListAuditEvents": admin(),
}
