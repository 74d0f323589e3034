"""Who may call each AuthService RPC."""

from __future__ import annotations

from modelyard.services.common.auth.policy import Rule, admin, authenticated, service

RULES: dict[str, Rule] = {
    "WhoAmI": authenticated(),
    "CreatePrincipal": admin(mutating=True),
    "ListPrincipals": admin(),
    "UpdatePrincipal": admin(mutating=True),
    # Everybody manages their own tokens; the service checks that others' need admin.
    "CreateToken": authenticated(mutating=True),
    "ListTokens": authenticated(),
    "RevokeToken": authenticated(mutating=True),
    "GetAuthState": service(),
    "RecordAuditEvents": service(),
    "ListAuditEvents": admin(),
}
