"""Access decisions for tracking: experiments carry the grants, runs inherit their experiment's."""

from __future__ import annotations

import threading
from collections import OrderedDict

from modelyard.entities.common import PermissionLevel as Level
from modelyard.errors import PermissionDenied
from modelyard.services.common.auth.grants import GrantStore, Visibility
from modelyard.services.common.auth.interceptor import Access
from modelyard.services.common.auth.policy import role_level
from modelyard.services.common.identity import Identity
from modelyard.services.tracking.store.base import TrackingStore

_RUN_CACHE = 100_000


class TrackingAuthorizer:
    def __init__(self, store: TrackingStore, grants: GrantStore) -> None:
        self.store = store
        self.grants = grants
        # A run never changes experiment, so this mapping can be cached for good.
        self._run_experiment: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def _experiment_of_run(self, run_id: str) -> str | None:
        with self._lock:
            found = self._run_experiment.get(run_id)
        if found is not None:
            return found
        found = self.store.experiment_of_run(run_id)
        if found is not None:
            with self._lock:
                self._run_experiment[run_id] = found
                if len(self._run_experiment) > _RUN_CACHE:
                    self._run_experiment.popitem(last=False)
        return found

    def level(self, identity: Identity, experiment_id: str) -> Level | None:
        levels = [
            lvl
            for lvl in (
                role_level(identity.roles, "experiment"),
                self.grants.level(experiment_id, identity.name),
            )
            if lvl is not None
        ]
        return max(levels) if levels else None

    def access(self, identity: Identity, resource_type: str, key: str) -> Access:
        if resource_type == "run":
            experiment_id = self._experiment_of_run(key)
        elif resource_type == "experiment_name":
            experiment_id = self.store.experiment_id_by_name(key)
        else:
            experiment_id = key if self.store.experiment_exists(key) else None
        if experiment_id is None:
            return Access(f"{resource_type}/{key}", exists=False)
        return Access(f"experiment/{experiment_id}", True, self.level(identity, experiment_id))

    def readable(self, identity: Identity) -> Visibility | None:
        """Experiments the caller may read; None when it may read them all."""
        if identity.unrestricted or (role_level(identity.roles, "experiment") or 0) >= Level.READ:
            return None
        return Visibility(identity.name, Level.READ)

    def require_read(self, identity: Identity, experiment_ids: list[str]) -> None:
        if self.readable(identity) is None:
            return
        for experiment_id in experiment_ids:
            level = self.level(identity, experiment_id)
            if level is None or level < Level.READ:
                raise PermissionDenied(
                    f"{identity.name} may not read experiment {experiment_id}; ask someone with "
                    "MANAGE on it for a grant",
                    resource_type="experiment",
                    resource_name=experiment_id,
                )
