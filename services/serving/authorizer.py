"""Access decisions for serving: grants on endpoints, by endpoint name."""

from __future__ import annotations

from collections.abc import Callable

from modelyard.services.common.auth.grants import GrantStore
from modelyard.services.common.auth.interceptor import Access
from modelyard.services.common.auth.policy import role_level
from modelyard.services.common.identity import Identity


class ServingAuthorizer:
    def __init__(self, grants: GrantStore, exists: Callable[[str], bool]) -> None:
        self.grants = grants
        self._exists = exists

    def access(self, identity: Identity, resource_type: str, key: str) -> Access:
        resource = f"endpoint/{key}"
        if not self._exists(key):
            return Access(resource, exists=False)
        levels = [
            lvl
            for lvl in (
                role_level(identity.roles, "endpoint"),
                self.grants.level(key, identity.name),
            )
            if lvl is not None
        ]
        return Access(resource, True, max(levels) if levels else None)
