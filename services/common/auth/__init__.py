"""Authentication and authorization shared by every service.

tokens.py (EdDSA JWTs), policy.py (levels, roles, access rules), state.py (revocations and roles
cached from the auth service), grants.py (per-resource grants in each service's own tables),
interceptor.py (the check on every RPC), audit.py (recording mutating calls).
"""
