"""The auth service: principals, tokens, platform roles and the audit log.

It signs tokens; every other service verifies them with the public key and polls GetAuthState
for revocations and roles.
"""
