"""Access decisions for the registry: registered models carry the grants, keyed by model id."""

from __future__ import annotations

from modelyard.entities.common import PermissionLevel as Level
from modelyard.services.common.auth.grants import GrantStore, Visibility
from modelyard.services.common.auth.interceptor import Access
from modelyard.services.common.auth.policy import role_level
from modelyard.services.common.identity import Identity
from modelyard.services.registry.store.base import RegistryStore

RESOURCE = "registered_model"


class RegistryAuthorizer:
    def __init__(self, store: RegistryStore, grants: GrantStore) -> None:
        self.store = store
        self.grants = grants

    def access(self, identity: Identity, resource_type: str, key: str) -> Access:
        model_id = self.store.model_id_of(key)
        if model_id is None:
            return Access(f"{RESOURCE}/{key}", exists=False)
        levels = [
            lvl
            for lvl in (
                role_level(identity.roles, RESOURCE),
                self.grants.level(model_id, identity.name),
            )
            if lvl is not None
        ]
        return Access(f"{RESOURCE}/{key}", True, max(levels) if levels else None, model_id)

    def readable(self, identity: Identity) -> Visibility | None:
        """The models the caller may read; None when it may read them all."""
        if identity.unrestricted or (role_level(identity.roles, RESOURCE) or 0) >= Level.READ:
            return None
        return Visibility(identity.name, Level.READ)
