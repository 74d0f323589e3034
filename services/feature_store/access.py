"""Who may call each FeatureStoreService RPC.

Lookups and training sets need USE on each feature view (or on the feature service asked for);
the service checks that, since one call can touch several views. Changing definitions needs the
editor role and EDIT on what is changed (MANAGE to delete a view or service, as for experiments,
models and endpoints); defining a feature service needs USE on its views.
"""

from __future__ import annotations

from modelyard.entities.common import PermissionLevel as L
from modelyard.services.common.auth.policy import Rule, create, filtered, grant_change, on


def _definition(request) -> str:
    return f"{request.kind}:{request.name}"


RULES: dict[str, Rule] = {
    "ApplyDefinitions": create(),
    "ListDefinitions": filtered(),
    "GetDefinition": on(L.READ, "definition", _definition),
    "GetHistoricalFeatures": filtered(),
    "Materialize": filtered(),
    "ListMaterializations": on(L.READ, "feature_view", "feature_view"),
    "GetOnlineFeatures": filtered(),
    "Push": on(L.EDIT, "feature_view", "feature_view", mutating=True),
    "SetFeaturePermission": grant_change("definition", _definition),
    "DeleteFeaturePermission": grant_change("definition", _definition),
    "ListFeaturePermissions": on(L.READ, "definition", _definition),
}
