"""The registry store interface.

Every mutating method records its model event in the same transaction, so the history and the
change feed never miss or invent a change. Names identify models at the interface; inside, models
have immutable ids (`PendingVersion.model_id`) so a rename during registration is harmless.

A write's `model_id`, when given, is the id of the model the call was authorized on: the write
applies to that model only, and fails (Aborted) when `name` has come to name another one, or
NotFound when it names none (renamed or deleted after the check).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from modelyard.entities import FileInfo, PagedList
from modelyard.entities.registry import ModelEvent, ModelVersion, RegisteredModel, Stage
from modelyard.services.common.auth.grants import Visibility
from modelyard.services.common.filters import Comparison, OrderKey


@dataclass(frozen=True)
class PendingVersion:
    """A version whose files still have to be copied into registry storage."""

    model_id: str
    model_name: str
    version: int
    source: str
    run_id: str
    storage_location: str
    # True when registering this version created the registered model (not part of identity).
    model_created: bool = field(default=False, compare=False)


@dataclass(frozen=True)
class StoredFile:
    path: str
    file_size: int
    sha256: str


class RegistryStore(abc.ABC):
    # -- registered models ---------------------------------------------------------------------

    @abc.abstractmethod
    def create_registered_model(
        self, name: str, description: str, tags: dict[str, str], user: str
    ) -> tuple[RegisteredModel, str]:
        """The model, and the id it was created with (its creator's grant goes on that id: looked
        up by name afterwards, it could be another model's)."""

    @abc.abstractmethod
    def get_registered_model(self, name: str, model_id: str | None = None) -> RegisteredModel:
        """`model_id` as for writes: the model the caller may read, or ABORTED."""

    @abc.abstractmethod
    def rename_registered_model(
        self, name: str, new_name: str, user: str, model_id: str | None = None
    ) -> RegisteredModel: ...

    @abc.abstractmethod
    def update_registered_model(
        self, name: str, description: str, user: str, model_id: str | None = None
    ) -> RegisteredModel: ...

    @abc.abstractmethod
    def delete_registered_model(
        self, name: str, user: str, model_id: str | None = None
    ) -> tuple[str, list[str]]:
        """Delete the model and its versions: the id it had (its grants go with it) and its
        versions' storage locations to clean up."""

    @abc.abstractmethod
    def model_id_of(self, name: str) -> str | None:
        """The immutable id of the model called `name`, or None."""

    @abc.abstractmethod
    def search_registered_models(
        self,
        filters: Sequence[Comparison],
        order_by: Sequence[OrderKey],
        max_results: int,
        page_token: str,
        readable: Visibility | None = None,
    ) -> PagedList[RegisteredModel]:
        """`readable`, when given, limits the search to the models it grants (access control)."""

    @abc.abstractmethod
    def set_registered_model_tag(
        self, name: str, key: str, value: str, user: str, model_id: str | None = None
    ) -> None: ...

    @abc.abstractmethod
    def delete_registered_model_tag(
        self, name: str, key: str, user: str, model_id: str | None = None
    ) -> None:
        """Remove the tag; one not held is no error (MLflow's behaviour)."""

    # -- versions ------------------------------------------------------------------------------

    @abc.abstractmethod
    def create_model_version(
        self,
        name: str,
        source: str,
        run_id: str,
        description: str,
        tags: dict[str, str],
        user: str,
        adding: Callable[[], None] = lambda: None,
        model_id: str | None = None,
        run_link: str = "",
    ) -> tuple[ModelVersion, PendingVersion]:
        """Allocate the next version number (creating the model if needed), status PENDING.
        `adding` is called, with the model's row locked, when the model exists already; it
        raises to refuse (a call authorized to create a new model may find that another call
        created it meanwhile)."""

    @abc.abstractmethod
    def get_model_version(
        self, name: str, version: int, model_id: str | None = None
    ) -> ModelVersion: ...

    @abc.abstractmethod
    def update_model_version(
        self,
        name: str,
        version: int,
        description: str,
        user: str,
        model_id: str | None = None,
    ) -> ModelVersion: ...

    @abc.abstractmethod
    def delete_model_version(
        self, name: str, version: int, user: str, model_id: str | None = None
    ) -> str:
        """Delete the version (and aliases pointing at it); returns its storage location."""

    @abc.abstractmethod
    def search_model_versions(
        self,
        filters: Sequence[Comparison],
        order_by: Sequence[OrderKey],
        max_results: int,
        page_token: str,
        readable: Visibility | None = None,
    ) -> PagedList[ModelVersion]: ...

    @abc.abstractmethod
    def version_stage(self, name: str, version: int) -> Stage | None:
        """The version's current stage; None when the model has no such version."""

    @abc.abstractmethod
    def get_latest_versions(
        self, name: str, stages: Sequence[Stage], model_id: str | None = None
    ) -> list[ModelVersion]: ...

    @abc.abstractmethod
    def set_model_version_tag(
        self,
        name: str,
        version: int,
        key: str,
        value: str,
        user: str,
        model_id: str | None = None,
    ) -> None: ...

    @abc.abstractmethod
    def delete_model_version_tag(
        self, name: str, version: int, key: str, user: str, model_id: str | None = None
    ) -> None:
        """Remove the tag; one not held is no error (MLflow's behaviour)."""

    @abc.abstractmethod
    def transition_stage(
        self,
        name: str,
        version: int,
        stage: Stage,
        archive_existing: bool,
        user: str,
        leaving_production: Callable[[], None] = lambda: None,
        model_id: str | None = None,
    ) -> ModelVersion:
        """`leaving_production` is called, with the version's row locked, when the move takes
        it out of Production; it raises to refuse (the caller's right to do that is decided on
        the stage as it is then, not as it was when the call was authorized)."""

    # -- aliases -------------------------------------------------------------------------------

    @abc.abstractmethod
    def set_alias(
        self, name: str, alias: str, version: int, user: str, model_id: str | None = None
    ) -> None: ...

    @abc.abstractmethod
    def delete_alias(self, name: str, alias: str, user: str, model_id: str | None = None) -> None:
        """Remove the alias; one the model does not hold is no error (MLflow's behaviour)."""

    @abc.abstractmethod
    def get_version_by_alias(
        self, name: str, alias: str, model_id: str | None = None
    ) -> ModelVersion: ...

    # -- registration and files ----------------------------------------------------------------

    @abc.abstractmethod
    def pending_versions(self) -> list[PendingVersion]:
        """Versions still PENDING_REGISTRATION (to resume after a restart)."""

    @abc.abstractmethod
    def finish_registration(self, pending: PendingVersion, files: Sequence[StoredFile]) -> bool:
        """Record the copied files and mark the version READY (a no-op if it is no longer
        pending). False if the version was deleted: the files copied are the caller's to remove."""

    @abc.abstractmethod
    def fail_registration(self, pending: PendingVersion, message: str) -> bool:
        """Mark the version FAILED_REGISTRATION with `message`; False (as finish_registration)
        if it was deleted."""

    @abc.abstractmethod
    def find_version_file(
        self, name: str, version: int, path: str, model_id: str | None = None
    ) -> tuple[str, FileInfo | None]:
        """The version's storage location and its file at `path` (None if it has none), read
        together: read apart, a model renamed or re-created under `name` in between gave one
        model's file record and the other's location."""

    @abc.abstractmethod
    def list_version_files(
        self,
        name: str,
        version: int,
        prefix: str,
        after: str = "",
        limit: int | None = None,
        model_id: str | None = None,
    ) -> list[FileInfo]:
        """The version's files at or below `prefix`, by path; with `after` only those whose
        path sorts after it, and at most `limit` of them (a page of a keyset listing).
        `model_id` as for writes: the files are those of the model the caller may use."""

    # -- events --------------------------------------------------------------------------------

    @abc.abstractmethod
    def list_events(
        self,
        name: str,
        since_event_id: int,
        max_results: int,
        newest_first: bool = False,
        readable: Visibility | None = None,
        before_event_id: int = 0,
    ) -> list[ModelEvent]:
        """Events with ids after `since_event_id` (and before `before_event_id` unless 0), the
        first `max_results` of them in id order, or newest first."""

    @abc.abstractmethod
    def last_event_id(self) -> int: ...

    def close(self) -> None:
        """Release connections."""
