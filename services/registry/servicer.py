"""RegistryServicer: modelyard.registry.v1 over gRPC. Converts, delegates, converts back."""

from __future__ import annotations

from modelyard._gen.registry.v1 import registry_pb2 as pb
from modelyard._gen.registry.v1 import registry_pb2_grpc
from modelyard.convert.common import (
    file_info_to_proto,
    grant_to_proto,
    level_to_entity,
    presigned_to_proto,
)
from modelyard.convert.registry import (
    event_to_proto,
    lineage_to_proto,
    model_version_to_proto,
    registered_model_to_proto,
    stage_to_entity,
)
from modelyard.entities.registry import Stage
from modelyard.errors import InvalidArgument
from modelyard.services.common import validation as v
from modelyard.services.registry.service import RegistryService


def _stage(field: str, value: pb.Stage.ValueType) -> Stage:
    stage = stage_to_entity(value)
    if stage is None:
        raise InvalidArgument(
            f"{field} {value} is not a stage; use NONE, STAGING, PRODUCTION or ARCHIVED",
            field=field,
        )
    return stage


class RegistryServicer(registry_pb2_grpc.ModelRegistryServiceServicer):
    def __init__(self, service: RegistryService) -> None:
        self.service = service

    # -- registered models ---------------------------------------------------------------------

    def CreateRegisteredModel(self, request, context):
        model = self.service.create_registered_model(
            request.name, request.description, v.unique_tags(request.tags)
        )
        return pb.CreateRegisteredModelResponse(registered_model=registered_model_to_proto(model))

    def GetRegisteredModel(self, request, context):
        model = self.service.get_registered_model(request.name)
        return pb.GetRegisteredModelResponse(registered_model=registered_model_to_proto(model))

    def RenameRegisteredModel(self, request, context):
        model = self.service.rename_registered_model(request.name, request.new_name)
        return pb.RenameRegisteredModelResponse(registered_model=registered_model_to_proto(model))

    def UpdateRegisteredModel(self, request, context):
        model = self.service.update_registered_model(request.name, request.description)
        return pb.UpdateRegisteredModelResponse(registered_model=registered_model_to_proto(model))

    def DeleteRegisteredModel(self, request, context):
        self.service.delete_registered_model(request.name)
        return pb.DeleteRegisteredModelResponse()

    def SearchRegisteredModels(self, request, context):
        page = self.service.search_registered_models(
            request.filter, list(request.order_by), request.max_results, request.page_token
        )
        return pb.SearchRegisteredModelsResponse(
            registered_models=[registered_model_to_proto(m) for m in page],
            next_page_token=page.token or "",
        )

    def SetRegisteredModelTag(self, request, context):
        self.service.set_registered_model_tag(request.name, request.key, request.value)
        return pb.SetRegisteredModelTagResponse()

    def DeleteRegisteredModelTag(self, request, context):
        self.service.delete_registered_model_tag(request.name, request.key)
        return pb.DeleteRegisteredModelTagResponse()

    def SetRegisteredModelPermission(self, request, context):
        self.service.set_permission(
            request.name, request.grant.principal, level_to_entity(request.grant.level)
        )
        return pb.SetRegisteredModelPermissionResponse()

    def DeleteRegisteredModelPermission(self, request, context):
        self.service.delete_permission(request.name, request.principal)
        return pb.DeleteRegisteredModelPermissionResponse()

    def ListRegisteredModelPermissions(self, request, context):
        grants = self.service.list_permissions(request.name)
        return pb.ListRegisteredModelPermissionsResponse(grants=[grant_to_proto(g) for g in grants])

    # -- versions ------------------------------------------------------------------------------

    def CreateModelVersion(self, request, context):
        version = self.service.create_model_version(
            request.name,
            request.source,
            request.run_id,
            request.description,
            v.unique_tags(request.tags),
            request.run_link,
        )
        return pb.CreateModelVersionResponse(model_version=model_version_to_proto(version))

    def GetModelVersion(self, request, context):
        version = self.service.get_model_version(request.name, request.version)
        return pb.GetModelVersionResponse(model_version=model_version_to_proto(version))

    def UpdateModelVersion(self, request, context):
        version = self.service.update_model_version(
            request.name, request.version, request.description
        )
        return pb.UpdateModelVersionResponse(model_version=model_version_to_proto(version))

    def DeleteModelVersion(self, request, context):
        self.service.delete_model_version(request.name, request.version)
        return pb.DeleteModelVersionResponse()

    def SearchModelVersions(self, request, context):
        page = self.service.search_model_versions(
            request.filter, list(request.order_by), request.max_results, request.page_token
        )
        return pb.SearchModelVersionsResponse(
            model_versions=[model_version_to_proto(v) for v in page],
            next_page_token=page.token or "",
        )

    def GetLatestVersions(self, request, context):
        stages = [_stage("stages", s) for s in request.stages]
        versions = self.service.get_latest_versions(request.name, stages)
        return pb.GetLatestVersionsResponse(
            model_versions=[model_version_to_proto(v) for v in versions]
        )

    def SetModelVersionTag(self, request, context):
        self.service.set_model_version_tag(
            request.name, request.version, request.key, request.value
        )
        return pb.SetModelVersionTagResponse()

    def DeleteModelVersionTag(self, request, context):
        self.service.delete_model_version_tag(request.name, request.version, request.key)
        return pb.DeleteModelVersionTagResponse()

    def TransitionModelVersionStage(self, request, context):
        version = self.service.transition_stage(
            request.name,
            request.version,
            _stage("stage", request.stage),
            request.archive_existing_versions,
        )
        return pb.TransitionModelVersionStageResponse(model_version=model_version_to_proto(version))

    # -- aliases -------------------------------------------------------------------------------

    def SetRegisteredModelAlias(self, request, context):
        self.service.set_alias(request.name, request.alias, request.version)
        return pb.SetRegisteredModelAliasResponse()

    def DeleteRegisteredModelAlias(self, request, context):
        self.service.delete_alias(request.name, request.alias)
        return pb.DeleteRegisteredModelAliasResponse()

    def GetModelVersionByAlias(self, request, context):
        version = self.service.get_version_by_alias(request.name, request.alias)
        return pb.GetModelVersionByAliasResponse(model_version=model_version_to_proto(version))

    # -- files ---------------------------------------------------------------------------------

    def ListModelVersionArtifacts(self, request, context):
        files = self.service.list_files(
            request.name, request.version, request.path, request.page_size, request.page_token
        )
        return pb.ListModelVersionArtifactsResponse(
            files=[file_info_to_proto(f) for f in files], next_page_token=files.token or ""
        )

    def DownloadModelVersionArtifact(self, request, context):
        file, chunks = self.service.open_file(request.name, request.version, request.path)
        yield pb.DownloadModelVersionArtifactResponse(file=file_info_to_proto(file))
        for chunk in chunks:
            yield pb.DownloadModelVersionArtifactResponse(chunk=chunk)

    def CreateModelVersionDownloadUrl(self, request, context):
        url, file = self.service.file_download_url(request.name, request.version, request.path)
        return pb.CreateModelVersionDownloadUrlResponse(
            download_url=presigned_to_proto(url), file=file_info_to_proto(file)
        )

    # -- events and lineage --------------------------------------------------------------------

    def ListModelEvents(self, request, context):
        events = self.service.list_events(
            request.name,
            request.since_event_id,
            request.max_results,
            request.newest_first,
            request.before_event_id,
        )
        return pb.ListModelEventsResponse(
            events=[event_to_proto(e) for e in events],
            last_event_id=max((e.event_id for e in events), default=request.since_event_id),
        )

    def WatchModelEvents(self, request, context):
        for event in self.service.watch_events(
            request.name, request.since_event_id, context.is_active
        ):
            yield pb.WatchModelEventsResponse(event=event_to_proto(event))

    def GetModelVersionLineage(self, request, context):
        return lineage_to_proto(self.service.lineage(request.name, request.version))
