"""RegistryClient: every ModelRegistryService RPC, with MlflowClient's method names and shapes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from modelyard._gen.registry.v1 import registry_pb2 as pb
from modelyard._gen.registry.v1 import registry_pb2_grpc
from modelyard.client import _artifacts
from modelyard.client._transport import Transport
from modelyard.convert.common import (
    file_info_to_entity,
    grant_to_entity,
    grant_to_proto,
    id_arg,
    order_by_to_proto,
    page_size_arg,
    tags_to_proto,
    version_arg,
)
from modelyard.convert.registry import (
    event_to_entity,
    lineage_to_entity,
    model_version_to_entity,
    registered_model_to_entity,
    stage_to_proto,
)
from modelyard.entities import FileInfo, PagedList
from modelyard.entities.common import Grant, PermissionLevel
from modelyard.entities.registry import (
    ModelEvent,
    ModelVersion,
    ModelVersionLineage,
    ModelVersionStatus,
    RegisteredModel,
    Stage,
)
from modelyard.errors import DeadlineExceeded, FailedPrecondition, InvalidArgument

FILES_PAGE = 1000  # a model version's files listed per call


def _stage(stage: Stage | str) -> Any:
    try:
        return stage_to_proto(stage if isinstance(stage, Stage) else Stage.parse(stage))
    except ValueError:
        raise InvalidArgument(
            f"stage {stage!r} is not one of None, Staging, Production, Archived", field="stage"
        ) from None


def _new_description(description: object, what: str) -> str:
    """The description an update sets. None is refused, as MlflowClient refuses it ("no new
    field values"): sent as "", it cleared the description of a caller who gave none."""
    if isinstance(description, str):
        return description
    raise InvalidArgument(
        f"description is {description!r}; updating a {what} sets its description, so pass the "
        "new one as a string ('' clears it)",
        field="description",
    )


def _tags(tags: dict[str, Any] | None) -> Any:
    return tags_to_proto({k: str(v) for k, v in (tags or {}).items()})


class RegistryClient:
    def __init__(self, transport: Transport) -> None:
        self._t = transport
        self._registry = transport.stub(registry_pb2_grpc.ModelRegistryServiceStub)

    # -- registered models ---------------------------------------------------------------------

    def create_registered_model(
        self, name: str, tags: dict[str, Any] | None = None, description: str | None = None
    ) -> RegisteredModel:
        request = pb.CreateRegisteredModelRequest(
            name=name, description=description or "", tags=_tags(tags)
        )
        return registered_model_to_entity(
            self._t.call(self._registry.CreateRegisteredModel, request).registered_model
        )

    def get_registered_model(self, name: str) -> RegisteredModel:
        request = pb.GetRegisteredModelRequest(name=name)
        return registered_model_to_entity(
            self._t.call(self._registry.GetRegisteredModel, request).registered_model
        )

    def rename_registered_model(self, name: str, new_name: str) -> RegisteredModel:
        request = pb.RenameRegisteredModelRequest(name=name, new_name=new_name)
        return registered_model_to_entity(
            self._t.call(self._registry.RenameRegisteredModel, request).registered_model
        )

    def update_registered_model(self, name: str, description: str | None = None) -> RegisteredModel:
        request = pb.UpdateRegisteredModelRequest(
            name=name, description=_new_description(description, "registered model")
        )
        return registered_model_to_entity(
            self._t.call(self._registry.UpdateRegisteredModel, request).registered_model
        )

    def delete_registered_model(self, name: str) -> None:
        self._t.call(
            self._registry.DeleteRegisteredModel, pb.DeleteRegisteredModelRequest(name=name)
        )

    def search_registered_models(
        self,
        filter_string: str | None = None,
        max_results: int = 100,
        order_by: str | Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList[RegisteredModel]:
        request = pb.SearchRegisteredModelsRequest(
            filter=filter_string or "",
            max_results=page_size_arg(max_results, "max_results"),
            order_by=order_by_to_proto(order_by),
            page_token=page_token or "",
        )
        response = self._t.call(self._registry.SearchRegisteredModels, request)
        return PagedList(
            [registered_model_to_entity(m) for m in response.registered_models],
            response.next_page_token,
        )

    def set_registered_model_permission(
        self, name: str, principal: str, level: PermissionLevel
    ) -> None:
        """Give `principal` ("*": every authenticated caller) `level` on the model and its
        versions, replacing the grant it held."""
        request = pb.SetRegisteredModelPermissionRequest(
            name=name, grant=grant_to_proto(Grant(principal, level))
        )
        self._t.call(self._registry.SetRegisteredModelPermission, request)

    def delete_registered_model_permission(self, name: str, principal: str) -> None:
        request = pb.DeleteRegisteredModelPermissionRequest(name=name, principal=principal)
        self._t.call(self._registry.DeleteRegisteredModelPermission, request)

    def list_registered_model_permissions(self, name: str) -> list[Grant]:
        response = self._t.call(
            self._registry.ListRegisteredModelPermissions,
            pb.ListRegisteredModelPermissionsRequest(name=name),
        )
        return [grant_to_entity(g) for g in response.grants]

    def set_registered_model_tag(self, name: str, key: str, value: Any) -> None:
        request = pb.SetRegisteredModelTagRequest(name=name, key=key, value=str(value))
        self._t.call(self._registry.SetRegisteredModelTag, request)

    def delete_registered_model_tag(self, name: str, key: str) -> None:
        request = pb.DeleteRegisteredModelTagRequest(name=name, key=key)
        self._t.call(self._registry.DeleteRegisteredModelTag, request)

    # -- versions ------------------------------------------------------------------------------

    def create_model_version(
        self,
        name: str,
        source: str,
        run_id: str | None = None,
        tags: dict[str, Any] | None = None,
        run_link: str | None = None,
        description: str | None = None,
        await_creation_for: float = 300,
        local_model_path: str | None = None,
        model_id: str | None = None,
    ) -> ModelVersion:
        """Register `source` (runs:/<run_id>/<path>) as the next version of `name`.

        Arguments in MlflowClient's order, so ported positional calls mean the same. Waits up to
        `await_creation_for` seconds for the files to be copied (0: return at once, still
        PENDING_REGISTRATION); a failed registration raises FailedPrecondition with why.
        `local_model_path` and `model_id` (MLflow's logged models) are not supported: the
        registry copies the files from the run named in `source`.
        """
        for field, value in (("local_model_path", local_model_path), ("model_id", model_id)):
            if value is not None:
                raise InvalidArgument(
                    f"{field} is not supported: register a model logged to a run, with "
                    "source='runs:/<run_id>/<path>'",
                    field=field,
                )
        request = pb.CreateModelVersionRequest(
            name=name,
            source=source,
            run_id=run_id or "",
            description=description or "",
            tags=_tags(tags),
            run_link=run_link or "",
        )
        created = model_version_to_entity(
            self._t.call(self._registry.CreateModelVersion, request).model_version
        )
        if await_creation_for <= 0:
            return created
        return self.wait_for_version(name, created.version, await_creation_for)

    def wait_for_version(self, name: str, version: int, timeout: float = 300) -> ModelVersion:
        """Block until the version leaves PENDING_REGISTRATION, following the change feed."""
        since = self._last_event_id(name)
        current = self.get_model_version(name, version)
        if current.status == ModelVersionStatus.PENDING_REGISTRATION:
            # Events after `since` are replayed, so a copy finishing right now is not missed.
            try:
                for event in self.watch_model_events(name, since, timeout=timeout):
                    if event.version == version and event.event_type in (
                        "VERSION_READY",
                        "VERSION_FAILED",
                    ):
                        break
            except DeadlineExceeded:
                pass
            current = self.get_model_version(name, version)
        if current.status == ModelVersionStatus.PENDING_REGISTRATION:
            raise DeadlineExceeded(
                f"version {version} of {name!r} was still being registered after {timeout:.0f}s; "
                "check it later with get_model_version"
            )
        return self._ready(current)

    @staticmethod
    def _ready(version: ModelVersion) -> ModelVersion:
        if version.status == ModelVersionStatus.FAILED_REGISTRATION:
            raise FailedPrecondition(
                f"registering version {version.version} of {version.name!r} failed: "
                f"{version.status_message}",
                resource_type="model_version",
                resource_name=f"{version.name}/{version.version}",
            )
        return version

    def _last_event_id(self, name: str) -> int:
        events = self.list_model_events(name, max_results=1, newest_first=True)
        return events[0].event_id if events else 0

    def get_model_version(self, name: str, version: int | str) -> ModelVersion:
        request = pb.GetModelVersionRequest(name=name, version=version_arg(version))
        return model_version_to_entity(
            self._t.call(self._registry.GetModelVersion, request).model_version
        )

    def update_model_version(
        self, name: str, version: int | str, description: str | None = None
    ) -> ModelVersion:
        request = pb.UpdateModelVersionRequest(
            name=name,
            version=version_arg(version),
            description=_new_description(description, "model version"),
        )
        return model_version_to_entity(
            self._t.call(self._registry.UpdateModelVersion, request).model_version
        )

    def delete_model_version(self, name: str, version: int | str) -> None:
        request = pb.DeleteModelVersionRequest(name=name, version=version_arg(version))
        self._t.call(self._registry.DeleteModelVersion, request)

    def search_model_versions(
        self,
        filter_string: str | None = None,
        max_results: int = 10000,
        order_by: str | Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList[ModelVersion]:
        request = pb.SearchModelVersionsRequest(
            filter=filter_string or "",
            max_results=page_size_arg(max_results, "max_results"),
            order_by=order_by_to_proto(order_by),
            page_token=page_token or "",
        )
        response = self._t.call(self._registry.SearchModelVersions, request)
        return PagedList(
            [model_version_to_entity(v) for v in response.model_versions],
            response.next_page_token,
        )

    def get_latest_versions(
        self, name: str, stages: Sequence[Stage | str] | None = None
    ) -> list[ModelVersion]:
        request = pb.GetLatestVersionsRequest(name=name, stages=[_stage(s) for s in stages or []])
        response = self._t.call(self._registry.GetLatestVersions, request)
        return [model_version_to_entity(v) for v in response.model_versions]

    def set_model_version_tag(
        self,
        name: str,
        version: int | str | None = None,
        key: str | None = None,
        value: Any = None,
        stage: Stage | str | None = None,
    ) -> None:
        """Tag a version, named by number or, as MlflowClient allows, by `stage` (the newest
        READY version in it)."""
        request = pb.SetModelVersionTagRequest(
            name=name,
            version=self._version_or_stage(name, version, stage),
            key=key or "",
            value=str(value),
        )
        self._t.call(self._registry.SetModelVersionTag, request)

    def delete_model_version_tag(
        self,
        name: str,
        version: int | str | None = None,
        key: str | None = None,
        stage: Stage | str | None = None,
    ) -> None:
        """Untag a version, named by number or by `stage`, as set_model_version_tag."""
        request = pb.DeleteModelVersionTagRequest(
            name=name, version=self._version_or_stage(name, version, stage), key=key or ""
        )
        self._t.call(self._registry.DeleteModelVersionTag, request)

    def _version_or_stage(
        self, name: str, version: int | str | None, stage: Stage | str | None
    ) -> int:
        """The version number MlflowClient's (version, stage) pair names; exactly one is given
        (MLflow lets stage override a version given too, which hides a mismatch)."""
        if (version is None) == (stage is None):
            raise InvalidArgument(
                f"give either version or stage (got version={version!r}, stage={stage!r})",
                field="version",
            )
        if version is not None:
            return version_arg(version)
        assert stage is not None
        found = self.get_latest_versions(name, [stage])
        if not found:
            raise InvalidArgument(
                f"model {name!r} has no READY version in stage {stage!r}; pass the version "
                "number, or move a version into that stage first",
                field="stage",
            )
        return found[0].version

    def transition_model_version_stage(
        self,
        name: str,
        version: int | str,
        stage: Stage | str,
        archive_existing_versions: bool = False,
    ) -> ModelVersion:
        request = pb.TransitionModelVersionStageRequest(
            name=name,
            version=version_arg(version),
            stage=_stage(stage),
            archive_existing_versions=archive_existing_versions,
        )
        return model_version_to_entity(
            self._t.call(self._registry.TransitionModelVersionStage, request).model_version
        )

    def get_model_version_download_uri(self, name: str, version: int | str) -> str:
        return self.get_model_version(name, version).storage_location

    # -- aliases -------------------------------------------------------------------------------

    def set_registered_model_alias(self, name: str, alias: str, version: int | str) -> None:
        request = pb.SetRegisteredModelAliasRequest(
            name=name, alias=alias, version=version_arg(version)
        )
        self._t.call(self._registry.SetRegisteredModelAlias, request)

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        request = pb.DeleteRegisteredModelAliasRequest(name=name, alias=alias)
        self._t.call(self._registry.DeleteRegisteredModelAlias, request)

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        request = pb.GetModelVersionByAliasRequest(name=name, alias=alias)
        return model_version_to_entity(
            self._t.call(self._registry.GetModelVersionByAlias, request).model_version
        )

    # -- files, events, lineage ----------------------------------------------------------------

    def list_model_version_artifacts(
        self, name: str, version: int | str, path: str = ""
    ) -> list[FileInfo]:
        """Every file of the version at or below `path`, read a page at a time."""
        files: list[FileInfo] = []
        token: str | None = None
        while True:
            page = self.list_model_version_artifacts_page(
                name, version, path, FILES_PAGE, page_token=token
            )
            files.extend(page)
            token = page.token
            if not token:
                return files

    def list_model_version_artifacts_page(
        self,
        name: str,
        version: int | str,
        path: str = "",
        max_results: int = FILES_PAGE,
        page_token: str | None = None,
    ) -> PagedList[FileInfo]:
        """One page of the version's files by path, with the token of the next: for a caller
        that shows a model of thousands of files a page at a time."""
        request = pb.ListModelVersionArtifactsRequest(
            name=name,
            version=version_arg(version),
            path=path,
            page_size=page_size_arg(max_results, "max_results"),
            page_token=page_token or "",
        )
        response = self._t.call(self._registry.ListModelVersionArtifacts, request)
        return PagedList([file_info_to_entity(f) for f in response.files], response.next_page_token)

    def download_model_version(self, name: str, version: int | str, dst_path: str | Path) -> Path:
        """Download every file of the version into `dst_path`, checking each sha256."""
        dst = _artifacts.make_dir(Path(dst_path))
        for f in self.list_model_version_artifacts(name, version):
            self.download_model_version_file(name, version, f.path, dst)
        return dst

    def download_model_version_file(
        self, name: str, version: int | str, path: str, dst_dir: str | Path
    ) -> Path:
        """Download one file of the version to dst_dir/path, checking its sha256."""
        target = _artifacts.inside(Path(dst_dir), path, path)
        request = pb.DownloadModelVersionArtifactRequest(
            name=name, version=version_arg(version), path=path
        )
        info, chunks = _artifacts.open_stream(
            self._t, self._registry.DownloadModelVersionArtifact, request
        )
        _artifacts.save_stream(info, chunks, target)
        return target

    def list_model_events(
        self,
        name: str | None = None,
        since_event_id: int = 0,
        max_results: int = 1000,
        newest_first: bool = False,
        before_event_id: int = 0,
    ) -> list[ModelEvent]:
        """Events after `since_event_id` (and before `before_event_id`, unless 0): newest
        first, a page's last event id as `before_event_id` gives the page of older ones."""
        request = pb.ListModelEventsRequest(
            name=name or "",
            since_event_id=id_arg(since_event_id, "since_event_id"),
            max_results=page_size_arg(max_results, "max_results"),
            newest_first=newest_first,
            before_event_id=id_arg(before_event_id, "before_event_id"),
        )
        response = self._t.call(self._registry.ListModelEvents, request)
        return [event_to_entity(e) for e in response.events]

    def watch_model_events(
        self, name: str | None = None, since_event_id: int = 0, timeout: float | None = None
    ) -> Iterator[ModelEvent]:
        """Events as they happen (after replaying those after `since_event_id`, if given)."""
        request = pb.WatchModelEventsRequest(
            name=name or "", since_event_id=id_arg(since_event_id, "since_event_id")
        )
        for reply in self._t.stream(self._registry.WatchModelEvents, request, timeout):
            yield event_to_entity(reply.event)

    def get_model_version_lineage(self, name: str, version: int | str) -> ModelVersionLineage:
        request = pb.GetModelVersionLineageRequest(name=name, version=version_arg(version))
        return lineage_to_entity(self._t.call(self._registry.GetModelVersionLineage, request))
