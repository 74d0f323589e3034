"""Who may call each ModelRegistryService RPC.

Moving a protected alias (champion, production, ... see auth.protected_aliases) or moving a
version into or out of Production needs MANAGE, in the spirit of a separate production-version
permission (Databricks' covers transitions from Production too: taking the Production version
out leaves models:/m/Production naming nothing); other aliases and stages need EDIT. Loading a
model's files needs USE.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from modelyard._gen.registry.v1 import registry_pb2 as pb
from modelyard.entities.common import PermissionLevel as L
from modelyard.entities.registry import Stage
from modelyard.services.common.auth.policy import Rule, create, filtered, grant_change, on


def rules(
    protected_aliases: Collection[str], stage_of: Callable[[str, int], Stage | None]
) -> dict[str, Rule]:
    """`stage_of(name, version)`: the version's current stage (None if there is no such
    version), which decides what moving it needs."""
    protected = {a.lower() for a in protected_aliases}

    def alias_level(request: Any) -> L:
        return L.MANAGE if request.alias.lower() in protected else L.EDIT

    def stage_level(request: Any) -> L:
        if request.stage == pb.STAGE_PRODUCTION:
            return L.MANAGE
        return L.MANAGE if stage_of(request.name, request.version) == Stage.PRODUCTION else L.EDIT

    model = "registered_model"
    return {
        "CreateRegisteredModel": create(),
        "GetRegisteredModel": on(L.READ, model, "name"),
        "RenameRegisteredModel": on(L.MANAGE, model, "name", mutating=True),
        "UpdateRegisteredModel": on(L.EDIT, model, "name", mutating=True),
        "DeleteRegisteredModel": on(L.MANAGE, model, "name", mutating=True),
        "SearchRegisteredModels": filtered(),
        "SetRegisteredModelTag": on(L.EDIT, model, "name", mutating=True),
        "DeleteRegisteredModelTag": on(L.EDIT, model, "name", mutating=True),
        "SetRegisteredModelPermission": grant_change(model, "name"),
        "DeleteRegisteredModelPermission": grant_change(model, "name"),
        "ListRegisteredModelPermissions": on(L.READ, model, "name"),
        "CreateModelVersion": on(L.EDIT, model, "name", mutating=True, create_if_missing=True),
        "GetModelVersion": on(L.READ, model, "name"),
        "UpdateModelVersion": on(L.EDIT, model, "name", mutating=True),
        "DeleteModelVersion": on(L.MANAGE, model, "name", mutating=True),
        "SearchModelVersions": filtered(),
        "GetLatestVersions": on(L.READ, model, "name"),
        "SetModelVersionTag": on(L.EDIT, model, "name", mutating=True),
        "DeleteModelVersionTag": on(L.EDIT, model, "name", mutating=True),
        "TransitionModelVersionStage": on(stage_level, model, "name", mutating=True),
        "SetRegisteredModelAlias": on(alias_level, model, "name", mutating=True),
        "DeleteRegisteredModelAlias": on(alias_level, model, "name", mutating=True),
        "GetModelVersionByAlias": on(L.READ, model, "name"),
        "ListModelVersionArtifacts": on(L.USE, model, "name"),
        "DownloadModelVersionArtifact": on(L.USE, model, "name"),
        "CreateModelVersionDownloadUrl": on(L.USE, model, "name"),
        # Without a name: every model the caller may read (the service filters).
        "ListModelEvents": filtered(),
        "WatchModelEvents": filtered(),
        "GetModelVersionLineage": on(L.READ, model, "name"),
    }
