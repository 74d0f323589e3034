"""RegistryService: the rules of the model registry.

A new version is checked against the tracking service over gRPC (its source run must exist and be
active), recorded as PENDING_REGISTRATION, and its files are copied in the background into
registry-owned storage: a server-side copy when tracking's artifacts live in the same store, a
verified stream through tracking's DownloadArtifact otherwise. Every file keeps its sha256.

An upload may replace the run's file between the listing and a copy in the store, so the digest
listed need not be the copy's: each copy is confirmed against tracking's settled record of the
file, or hashed where tracking cannot give that record without the bytes (see `_copy_in_store`).

A server that stops does not wait for registrations: one under way ends at its next call to
tracking (a copy waiting out an upload's lease could otherwise hold the stop for an hour), and it
and those queued stay PENDING_REGISTRATION, which the next start resumes (`resume_pending`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from modelyard.client.tracking import TrackingClient
from modelyard.entities import FileInfo, PagedList
from modelyard.entities.common import Grant, PermissionLevel
from modelyard.entities.registry import (
    ModelEvent,
    ModelVersion,
    ModelVersionLineage,
    RegisteredModel,
    Stage,
)
from modelyard.errors import (
    Aborted,
    FailedPrecondition,
    InvalidArgument,
    ModelyardError,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from modelyard.models.uri import parse_runs_uri
from modelyard.paths import relative_to
from modelyard.services.common import identity
from modelyard.services.common import validation as v
from modelyard.services.common.artifacts import ArtifactStore, PresignedUrl, clean_path
from modelyard.services.common.auth.grants import Visibility
from modelyard.services.common.auth.interceptor import authorized_id
from modelyard.services.common.filters import parse_filter, parse_order_by
from modelyard.services.common.identity import caller
from modelyard.services.common.logging import get_logger
from modelyard.services.common.pagination import (
    check_position,
    decode_token,
    encode_token,
    fingerprint,
    is_path_position,
    page_size,
    path_position,
    resolve_path,
)
from modelyard.services.registry.authorizer import RESOURCE, RegistryAuthorizer
from modelyard.services.registry.events import EventFeed
from modelyard.services.registry.names import alias_name, model_name, version_number
from modelyard.services.registry.store.base import PendingVersion, RegistryStore, StoredFile

log = get_logger(__name__)

MAX_DESCRIPTION = 65535
MAX_RUN_LINK = 2000  # a URL, as long as a source may be
MAX_TAG_VALUE = 8000
MAX_FILES_PAGE = 10000  # ListModelVersionArtifacts' page_size
# Copies of one file within the store before its registration fails: each one past the first
# follows an upload that replaced the file (or was replacing it) while it was copied.
COPY_ATTEMPTS = 3


def _tags(field: str, tags: dict[str, str]) -> dict[str, str]:
    for key, value in tags.items():
        v.key(f"{field}.key", key)
        v.max_length(f"{field}[{key}].value", value, MAX_TAG_VALUE)
    return tags


def _no_files(source: str, a_file: bool = False) -> FailedPrecondition:
    """`a_file`: the source names one file, which holds no files either, but saying so (and
    which directory to register) is what helps."""
    if a_file:
        holder = source.rstrip("/").rpartition("/")[0]
        return FailedPrecondition(
            f"source {source} is a file, not the directory a model was logged to; register "
            f"the directory that holds the model, such as {holder}",
            field="source",
            resource_type="artifact",
            resource_name=source,
        )
    return FailedPrecondition(
        f"source {source} holds no files; log the model to the run at that path first, or "
        "register the path it was logged under",
        field="source",
        resource_type="artifact",
        resource_name=source,
    )


def _deleted_source(
    tracking: TrackingClient, experiment_id: str, run_id: str
) -> FailedPrecondition:
    """Why a deleted source run cannot be registered, and what restores it: a run of a deleted
    experiment reads as deleted too, and then restoring the run does not help."""
    try:
        experiment = tracking.get_experiment(experiment_id)
    except ModelyardError:
        experiment = None
    if experiment is not None and experiment.lifecycle_stage != "active":
        return FailedPrecondition(
            f"source run {run_id!r} belongs to experiment {experiment.name!r} "
            f"({experiment_id}), which is deleted; restore the experiment (`modelyard "
            f"experiments restore {experiment_id}`) before registering its model",
            resource_type="experiment",
            resource_name=experiment_id,
        )
    return FailedPrecondition(
        f"source run {run_id!r} is deleted; restore it (`modelyard runs restore {run_id}`) "
        "before registering its model",
        resource_type="run",
        resource_name=run_id,
    )


class TrackingAccess(Protocol):
    """The tracking service as the registry reaches it."""

    def service(self) -> TrackingClient:
        """Calls made as the registry itself (background copies)."""

    def caller(self) -> TrackingClient:
        """Calls made on behalf of the current caller, with the caller's own token."""

    def close(self) -> None:
        """Close the clients: a call made afterwards fails at once."""


class RegistryService:
    def __init__(
        self,
        store: RegistryStore,
        artifacts: ArtifactStore,
        tracking: TrackingAccess,
        authorizer: RegistryAuthorizer,
        copy_workers: int = 4,
    ) -> None:
        self.store = store
        self.artifacts = artifacts
        self.tracking = tracking
        self.authorizer = authorizer
        self.events = EventFeed(store)
        self._copier = ThreadPoolExecutor(copy_workers, thread_name_prefix="modelyard-register")
        self._stopping = threading.Event()

    def drain(self) -> None:
        """A stop has begun: end the change feeds, and leave registrations that fail from now on
        pending (tracking may already refuse calls)."""
        self._stopping.set()
        self.events.close()

    def close(self) -> None:
        """Stop registering, and close the tracking clients (this service's from here on)."""
        self.drain()
        self._copier.shutdown(wait=False, cancel_futures=True)
        self.tracking.close()  # a copy waiting on a busy path fails at its next retry
        self._copier.shutdown(wait=True)

    def _changed(self) -> None:
        self.events.notify()

    def _own(self, model_id: str | None) -> None:
        """The creator of a model manages it."""
        me = identity.current()
        if me.enforced and model_id is not None:
            self.authorizer.grants.set(model_id, me.name, PermissionLevel.MANAGE)

    def _visible(self) -> Visibility | None:
        return self.authorizer.readable(identity.current())

    # -- registered models ---------------------------------------------------------------------

    def create_registered_model(
        self, name: str, description: str = "", tags: dict[str, str] | None = None
    ) -> RegisteredModel:
        model_name("name", name)
        v.max_length("description", description, MAX_DESCRIPTION)
        model, model_id = self.store.create_registered_model(
            name, description, _tags("tags", tags or {}), caller()
        )
        self._own(model_id)
        self._changed()
        return model

    def get_registered_model(self, name: str) -> RegisteredModel:
        return self.store.get_registered_model(model_name("name", name), authorized_id())

    def rename_registered_model(self, name: str, new_name: str) -> RegisteredModel:
        model_name("name", name)
        model_name("new_name", new_name)
        model = self.store.rename_registered_model(name, new_name, caller(), authorized_id())
        self._changed()
        return model

    def update_registered_model(self, name: str, description: str) -> RegisteredModel:
        model_name("name", name)
        v.max_length("description", description, MAX_DESCRIPTION)
        model = self.store.update_registered_model(name, description, caller(), authorized_id())
        self._changed()
        return model

    def delete_registered_model(self, name: str) -> None:
        model_id, locations = self.store.delete_registered_model(
            model_name("name", name), caller(), authorized_id()
        )
        self.authorizer.grants.delete_all(model_id)
        self._changed()
        for location in locations:
            self._delete_files(location)

    def search_registered_models(
        self,
        filter_string: str = "",
        order_by: Sequence[str] = (),
        max_results: int = 0,
        page_token: str = "",
    ) -> PagedList[RegisteredModel]:
        size = page_size(max_results, default=100, maximum=1000, field="max_results")
        return self.store.search_registered_models(
            parse_filter(filter_string),
            parse_order_by(order_by),
            size,
            page_token,
            readable=self._visible(),
        )

    def set_registered_model_tag(self, name: str, key: str, value: str) -> None:
        model_name("name", name)
        _tags("tag", {key: value})
        self.store.set_registered_model_tag(name, key, value, caller(), authorized_id())
        self._changed()

    def delete_registered_model_tag(self, name: str, key: str) -> None:
        model_name("name", name)
        v.key("key", key, existing=True)
        self.store.delete_registered_model_tag(name, key, caller(), authorized_id())
        self._changed()

    def set_permission(self, name: str, principal: str, level: PermissionLevel | None) -> None:
        model_id = self._model_id(name)
        v.require("grant.principal", principal)
        v.max_length("grant.principal", principal, 256)
        if level is None:
            raise InvalidArgument(
                "grant.level must be READ, USE, EDIT or MANAGE", field="grant.level"
            )
        self.authorizer.grants.set(model_id, principal, level)

    def delete_permission(self, name: str, principal: str) -> None:
        model_id = self._model_id(name)
        v.require("principal", principal)
        if not self.authorizer.grants.delete(model_id, principal):
            raise NotFound(
                f"{principal!r} holds no grant on model {name!r}",
                resource_type="grant",
                resource_name=principal,
            )

    def list_permissions(self, name: str) -> list[Grant]:
        return self.authorizer.grants.list(self._model_id(name))

    def _model_id(self, name: str) -> str:
        """The model a grant change applies to: the one the call was authorized on, if any."""
        model_id = authorized_id() or self.store.model_id_of(model_name("name", name))
        if model_id is None:
            self.store.get_registered_model(name)  # raises the standard NotFound
        assert model_id is not None
        return model_id

    # -- versions ------------------------------------------------------------------------------

    def create_model_version(
        self,
        name: str,
        source: str,
        run_id: str = "",
        description: str = "",
        tags: dict[str, str] | None = None,
        run_link: str = "",
    ) -> ModelVersion:
        model_name("name", name)
        v.require("source", source)
        v.max_length("source", source, 2000)
        v.max_length("description", description, MAX_DESCRIPTION)
        v.max_length("run_link", run_link, MAX_RUN_LINK)
        source_run, path = parse_runs_uri(source, field="source")
        path = clean_path(path, field="source", allow_empty=True)
        if run_id and run_id != source_run:
            raise InvalidArgument(
                f"run_id {run_id!r} differs from the run in source ({source_run}); give one",
                field="run_id",
            )
        tracking = self.tracking.caller()
        try:
            # As the caller: registering needs read access to the source run.
            run = tracking.get_run(source_run)
        except NotFound:
            raise NotFound(
                f"source run {source_run!r} does not exist in the tracking service",
                resource_type="run",
                resource_name=source_run,
            ) from None
        except InvalidArgument as exc:
            raise InvalidArgument(f"source: {exc.message}", field="source") from None
        if run.info.lifecycle_stage != "active":
            raise _deleted_source(tracking, run.info.experiment_id, source_run)
        # Checked now, so an empty source burns no version number on a FAILED version. As the
        # service: the caller showed it may read the run, and listing files needs more.
        service = self.tracking.service()
        if next(service.iter_artifacts(source_run, path, recursive=True), None) is None:
            parent = path.rpartition("/")[0]
            a_file = bool(path) and any(
                f.path == path and not f.is_dir for f in service.iter_artifacts(source_run, parent)
            )
            raise _no_files(source, a_file)
        version, pending = self.store.create_model_version(
            name,
            source,
            source_run,
            description,
            _tags("tags", tags or {}),
            caller(),
            lambda: self._may_add(name),
            authorized_id(),
            run_link,
        )
        if pending.model_created:
            self._own(pending.model_id)
        self._changed()
        self._copier.submit(self._register, pending)
        return version

    def resume_pending(self) -> int:
        """Re-queue versions whose copy was interrupted (a restart during registration)."""
        pending = self.store.pending_versions()
        for item in pending:
            self._copier.submit(self._register, item)
        return len(pending)

    def _register(self, pending: PendingVersion) -> None:
        try:
            files = self._copy_files(pending)
        except Exception as exc:
            if self._stopping.is_set():  # most likely the stop itself: the next start retries
                log.info(
                    "registration of %s version %s stopped with the server (%s); it resumes at "
                    "the next start",
                    pending.model_name,
                    pending.version,
                    exc,
                )
            else:
                self._fail(pending, exc)
        else:
            if not self.store.finish_registration(pending, files):
                self._discard(pending, "")
            self._changed()

    def _fail(self, pending: PendingVersion, exc: Exception) -> None:
        """Record why the copy failed: any failure must leave a reason, not a stuck PENDING
        version; an unexpected one is logged with its traceback too."""
        message = (
            exc.message
            if isinstance(exc, ModelyardError)
            else f"copying the model's files failed: {exc}"
        )
        if not self.store.fail_registration(pending, message):
            self._discard(pending, f" ({exc})")
        elif not isinstance(exc, ModelyardError):
            log.error(
                "registering %s version %s failed",
                pending.model_name,
                pending.version,
                exc_info=exc,
            )
        self._changed()

    def _discard(self, pending: PendingVersion, detail: str) -> None:
        """The version was deleted while its files were copied, an expected race (its copy may
        have failed on the files the delete removed): remove what the copy wrote after it."""
        log.info(
            "version %s of %s was deleted while its files were copied%s; the copy is discarded",
            pending.version,
            pending.model_name,
            detail,
        )
        self._delete_files(pending.storage_location)

    def _copy_files(self, pending: PendingVersion) -> list[StoredFile]:
        tracking = self.tracking.service()
        run_id, path = parse_runs_uri(pending.source)
        # In the normal form tracking lists files in: 'runs:/<id>/./model' lists 'model/...'.
        path = clean_path(path, field="source", allow_empty=True)
        listed = list(tracking.iter_artifacts(run_id, path, recursive=True))
        if not listed:  # deleted since it was registered
            raise _no_files(pending.source)
        run_root = self.artifacts.key_for(tracking.get_run(run_id).info.artifact_uri)
        target = self._storage_key(pending.storage_location)
        copied = []
        for f in listed:
            rel = relative_to(f.path, path)
            if rel is None:
                raise FailedPrecondition(
                    f"tracking listed {f.path!r} under {path!r}, where it does not lie; register "
                    "the model again, and report this to the operator if it recurs"
                )
            dst = f"{target}/{rel}"
            if run_root is not None:  # same store: copy within it
                size, sha256 = self._copy_in_store(tracking, run_id, f, f"{run_root}/{f.path}", dst)
                copied.append(StoredFile(rel, size, sha256))
            else:  # another store: stream through tracking, verifying the digest on the way
                _info, chunks = tracking.open_artifact(run_id, f.path)
                stored = self.artifacts.write(dst, chunks, f.sha256)
                copied.append(StoredFile(rel, stored.size, stored.sha256))
        return copied

    def _copy_in_store(
        self, tracking: TrackingClient, run_id: str, listed: FileInfo, src: str, dst: str
    ) -> tuple[int, str]:
        """Copy a run's file within the store; returns the size and sha256 of the bytes copied.

        Tracking changes a file's bytes only during a placement, which ends by recording them.
        So when its settled record, read after the copy, equals the one read before it (created
        time included, which every placement renews), no placement touched the file meanwhile:
        the copy holds that record's bytes; else copy again against the newer record. Tracking
        gives that record without reading the bytes only with a download URL; a store without
        URLs (local files) copies through this process anyway, and the copy is hashed instead."""
        before: FileInfo | None = listed
        for _ in range(COPY_ATTEMPTS):
            if before is None:  # the last check met an upload under way: read what it recorded
                before = self._settled_record(tracking, run_id, listed.path)
                if before is None:
                    continue
            self.artifacts.copy(src, dst)
            if not self.artifacts.presigns:  # tracking's store (this one) gives no URLs
                stored = self.artifacts.digest(dst)
                return stored.size, stored.sha256
            after = self._settled_record(tracking, run_id, listed.path)
            if after == before:
                size = self.artifacts.size(dst)
                if size != after.file_size:
                    raise FailedPrecondition(
                        f"the copy of {listed.path!r} of run {run_id!r} has {size} bytes, but "
                        f"tracking recorded {after.file_size}: upload the file to the run again, "
                        "then register the version again"
                    )
                return after.file_size or 0, after.sha256 or ""
            before = after
        raise FailedPrecondition(
            f"file {listed.path!r} of run {run_id!r} kept changing while it was copied: an "
            f"upload replaced it, or was replacing it, at each of {COPY_ATTEMPTS} attempts; "
            "register the version again once uploads to the run have finished",
            resource_type="artifact",
            resource_name=listed.path,
        )

    @staticmethod
    def _settled_record(tracking: TrackingClient, run_id: str, path: str) -> FileInfo | None:
        """Tracking's record of a run's file once no upload is placing it; None while one is
        (its bytes may already be the new ones)."""
        try:
            return tracking.create_artifact_download_url(run_id, path)[1]
        except (Unavailable, Aborted) as exc:
            if exc.resource_type == "artifact":  # a placement of the path is under way
                return None
            raise
        except NotFound as exc:
            if exc.resource_type != "artifact":
                raise
            raise FailedPrecondition(
                f"file {path!r} of run {run_id!r} was deleted while the version was registered; "
                "log the model to the run again, then register it",
                resource_type="artifact",
                resource_name=path,
            ) from None

    def _storage_key(self, location: str) -> str:
        key = self.artifacts.key_for(location)
        if key is None:
            raise FailedPrecondition(
                f"model storage {location} is outside the artifact root {self.artifacts.root_uri}"
            )
        return key

    def _delete_files(self, location: str) -> None:
        try:
            self.artifacts.delete_prefix(self._storage_key(location))
        except Exception:  # the rows are gone; leftover bytes are only unreachable storage
            log.exception("could not delete model files at %s", location)

    def get_model_version(self, name: str, version: int) -> ModelVersion:
        return self.store.get_model_version(
            model_name("name", name), version_number("version", version), authorized_id()
        )

    def update_model_version(self, name: str, version: int, description: str) -> ModelVersion:
        model_name("name", name)
        version_number("version", version)
        v.max_length("description", description, MAX_DESCRIPTION)
        updated = self.store.update_model_version(
            name, version, description, caller(), authorized_id()
        )
        self._changed()
        return updated

    def delete_model_version(self, name: str, version: int) -> None:
        model_name("name", name)
        location = self.store.delete_model_version(
            name, version_number("version", version), caller(), authorized_id()
        )
        self._changed()
        self._delete_files(location)

    def search_model_versions(
        self,
        filter_string: str = "",
        order_by: Sequence[str] = (),
        max_results: int = 0,
        page_token: str = "",
    ) -> PagedList[ModelVersion]:
        size = page_size(max_results, default=1000, maximum=10000, field="max_results")
        return self.store.search_model_versions(
            parse_filter(filter_string),
            parse_order_by(order_by),
            size,
            page_token,
            readable=self._visible(),
        )

    def get_latest_versions(self, name: str, stages: Sequence[Stage] = ()) -> list[ModelVersion]:
        return self.store.get_latest_versions(model_name("name", name), stages, authorized_id())

    def set_model_version_tag(self, name: str, version: int, key: str, value: str) -> None:
        model_name("name", name)
        version_number("version", version)
        _tags("tag", {key: value})
        self.store.set_model_version_tag(name, version, key, value, caller(), authorized_id())
        self._changed()

    def delete_model_version_tag(self, name: str, version: int, key: str) -> None:
        model_name("name", name)
        version_number("version", version)
        v.key("key", key, existing=True)
        self.store.delete_model_version_tag(name, version, key, caller(), authorized_id())
        self._changed()

    def transition_stage(
        self, name: str, version: int, stage: Stage, archive_existing: bool = False
    ) -> ModelVersion:
        model_name("name", name)
        version_number("version", version)
        if archive_existing and stage not in (Stage.STAGING, Stage.PRODUCTION):
            # As MLflow: only those stages hold one current version each; taken silently, the
            # flag would suggest the others were archived.
            raise InvalidArgument(
                f"archive_existing_versions applies only to a move into Staging or Production, "
                f"not {stage.value}; leave it false",
                field="archive_existing_versions",
            )
        moved = self.store.transition_stage(
            name,
            version,
            stage,
            archive_existing,
            caller(),
            lambda: self._may_manage(name),
            authorized_id(),
        )
        self._changed()
        return moved

    def _may_add(self, name: str) -> None:
        """Adding a version to a model needs EDIT on it. A call for a name no model had was
        let through to create one (any editor may); this checks again once the store finds
        the model, which another call may have created in between: before, that version was
        added to the other caller's model, on which this caller held no grant."""
        self._still_may(
            name,
            PermissionLevel.EDIT,
            "add a version to it (another call created it while this one was on its way)",
            ", or register under another name",
        )

    def _may_manage(self, name: str) -> None:
        """Taking a version out of Production needs MANAGE. The access rules check it on the
        stage when the call arrives; this checks it again on the stage the move finds, which
        another call may have changed to Production in between."""
        self._still_may(
            name,
            PermissionLevel.MANAGE,
            "move its Production version out of Production (it was moved there while this "
            "call was on its way)",
        )

    def _still_may(
        self, name: str, level: PermissionLevel, action: str, otherwise: str = ""
    ) -> None:
        """PermissionDenied unless the caller holds `level` on the model as the store finds it
        now, which may differ from the model the call was authorized on."""
        me = identity.current()
        if me.unrestricted:
            return
        access = self.authorizer.access(me, RESOURCE, name)
        if access.level is None or access.level < level:
            raise PermissionDenied(
                f"{me.name} needs {level.name} on {access.resource} to {action}; ask someone "
                f"with MANAGE on it for a grant{otherwise}",
                resource_type=RESOURCE,
                resource_name=name,
            )

    # -- aliases -------------------------------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: int) -> None:
        model_name("name", name)
        alias_name("alias", alias)
        self.store.set_alias(
            name, alias, version_number("version", version), caller(), authorized_id()
        )
        self._changed()

    def delete_alias(self, name: str, alias: str) -> None:
        model_name("name", name)
        alias_name("alias", alias)
        self.store.delete_alias(name, alias, caller(), authorized_id())
        self._changed()

    def get_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        return self.store.get_version_by_alias(
            model_name("name", name), alias_name("alias", alias), authorized_id()
        )

    # -- files ---------------------------------------------------------------------------------

    def list_files(
        self, name: str, version: int, path: str = "", page_size_: int = 0, page_token: str = ""
    ) -> PagedList[FileInfo]:
        """Every file at or below `path`, or with a page size a page of them by path: a model
        may hold thousands (checkpoints, shards). A size of 0 lists them all, as clients from
        before paging, which read no next token, expect."""
        model_name("name", name)
        version_number("version", version)
        prefix = clean_path(path, allow_empty=True)
        size = page_size(page_size_, default=0, maximum=MAX_FILES_PAGE, field="page_size")
        query = fingerprint("version_files", name, version, prefix)
        position = decode_token(check_position(page_token, is_path_position), query)
        model_id = authorized_id()

        def paths_after(path: str, limit: int) -> list[str]:
            files = self.store.list_version_files(name, version, prefix, path, limit, model_id)
            return [f.path for f in files]

        after = resolve_path(position, paths_after) if position else ""
        files = self.store.list_version_files(
            name, version, prefix, after, limit=size + 1 if size else None, model_id=model_id
        )
        if not size or len(files) <= size:
            return PagedList(files, None)
        return PagedList(files[:size], encode_token(query, path_position(files[size - 1].path)))

    def _file(self, name: str, version: int, path: str) -> tuple[str, FileInfo]:
        """The file's storage key and record, of the model the call was authorized on."""
        model_name("name", name)
        version_number("version", version)
        path = clean_path(path, field="path")
        location, file = self.store.find_version_file(name, version, path, authorized_id())
        if file is None:
            raise NotFound(
                f"version {version} of model {name!r} has no file {path!r}; list its files with "
                "ListModelVersionArtifacts",
                resource_type="model_version_file",
                resource_name=path,
            )
        return f"{self._storage_key(location)}/{file.path}", file

    def open_file(self, name: str, version: int, path: str) -> tuple[FileInfo, Iterator[bytes]]:
        key, file = self._file(name, version, path)
        return file, self.artifacts.read(key)

    def file_download_url(
        self, name: str, version: int, path: str
    ) -> tuple[PresignedUrl, FileInfo]:
        key, file = self._file(name, version, path)
        return self.artifacts.presign_get(key), file

    # -- events and lineage --------------------------------------------------------------------

    def list_events(
        self,
        name: str,
        since_event_id: int,
        max_results: int,
        newest_first: bool = False,
        before_event_id: int = 0,
    ) -> list[ModelEvent]:
        if name:
            model_name("name", name)
        for field, value in (
            ("since_event_id", since_event_id),
            ("before_event_id", before_event_id),
        ):
            if value < 0:
                raise InvalidArgument(f"{field} must not be negative", field=field)
        size = page_size(max_results, default=1000, maximum=10000, field="max_results")
        return self.store.list_events(
            name,
            since_event_id,
            size,
            newest_first,
            readable=self._visible(),
            before_event_id=before_event_id,
        )

    def watch_events(
        self, name: str, since_event_id: int, is_active: Callable[[], bool]
    ) -> Iterator[ModelEvent]:
        if name:
            model_name("name", name)
        if since_event_id < 0:
            raise InvalidArgument("since_event_id must not be negative", field="since_event_id")
        me = identity.current()
        return self.events.watch(
            name, since_event_id, is_active, lambda: self.authorizer.readable(me)
        )

    def lineage(self, name: str, version: int) -> ModelVersionLineage:
        mv = self.get_model_version(name, version)
        tracking = self.tracking.caller()
        try:
            run = tracking.get_run(mv.run_id)
        except (NotFound, PermissionDenied):  # gone, or in an experiment the caller cannot read:
            return ModelVersionLineage(mv, None, None)  # the version they may read, without it
        experiment = tracking.get_experiment(run.info.experiment_id)
        return ModelVersionLineage(mv, run, experiment)
