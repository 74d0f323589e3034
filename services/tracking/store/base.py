"""The tracking store interface.

`log_batch` is the one write primitive for run data; `log_metric`, `log_param` and `set_tag` are
built on it here, so a backend implements the batch path once and gets the rest.
Filters and orders arrive parsed (see services/common/filters); ids are strings.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

from modelyard.entities import (
    DatasetInput,
    Experiment,
    FileInfo,
    Metric,
    PagedList,
    Param,
    Run,
    RunInfo,
    RunStatus,
    RunTag,
    ViewType,
)
from modelyard.errors import FailedPrecondition
from modelyard.services.common.auth.grants import Visibility
from modelyard.services.common.filters import Comparison, OrderKey


@dataclass(frozen=True, slots=True)
class ArtifactPlacement:
    """A lease on one artifact path while the staged bytes `staged_key` (`sha256`, `file_size`)
    move into place, or, with no staged bytes (`deleting`), while the path's bytes are deleted;
    past `expires_at` (ms since the epoch) its holder is presumed dead."""

    run_id: str
    path: str
    staged_key: str
    sha256: str
    file_size: int
    expires_at: int

    @property
    def deleting(self) -> bool:
        return not self.staged_key


def run_is_deleted(
    run_id: str, experiment_id: str, experiment_deleted: bool, before: str
) -> FailedPrecondition:
    """The refusal of a change (`before`: "changing it") to a deleted run. RestoreRun refuses
    a run of a deleted experiment, and restoring the experiment brings back the runs deleted
    with it: say so, rather than send the user to RestoreRun first."""
    if experiment_deleted:
        fix = (
            f"its experiment {experiment_id} is deleted too: restore the experiment (which "
            f"restores the runs deleted with it) before {before}"
        )
    else:
        fix = f"restore it with RestoreRun before {before}"
    return FailedPrecondition(
        f"run {run_id!r} is deleted; {fix}", resource_type="run", resource_name=run_id
    )


class TrackingStore(abc.ABC):
    # -- experiments ---------------------------------------------------------------------------

    @abc.abstractmethod
    def create_experiment(
        self, name: str, artifact_location: str | None, tags: dict[str, str]
    ) -> str:
        """Create and return the new id; `artifact_location` None means <artifact root>/<id>."""

    @abc.abstractmethod
    def get_experiment(self, experiment_id: str) -> Experiment: ...

    @abc.abstractmethod
    def find_experiment_by_name(self, name: str) -> Experiment | None: ...

    @abc.abstractmethod
    def search_experiments(
        self,
        view_type: ViewType,
        filters: Sequence[Comparison],
        order_by: Sequence[OrderKey],
        max_results: int,
        page_token: str,
        readable: Visibility | None = None,
    ) -> PagedList[Experiment]:
        """`readable`, when given, limits the search to the experiments it grants (access
        control)."""

    @abc.abstractmethod
    def experiment_exists(self, experiment_id: str) -> bool: ...

    @abc.abstractmethod
    def experiment_id_by_name(self, name: str) -> str | None: ...

    @abc.abstractmethod
    def experiment_of_run(self, run_id: str) -> str | None: ...

    @abc.abstractmethod
    def rename_experiment(self, experiment_id: str, new_name: str) -> None: ...

    @abc.abstractmethod
    def delete_experiment(self, experiment_id: str) -> None:
        """Soft-delete the experiment and its active runs."""

    @abc.abstractmethod
    def restore_experiment(self, experiment_id: str) -> None:
        """Undo delete_experiment, including the runs it deleted."""

    @abc.abstractmethod
    def set_experiment_tag(self, experiment_id: str, key: str, value: str) -> None: ...

    @abc.abstractmethod
    def delete_experiment_tag(self, experiment_id: str, key: str) -> None: ...

    # -- runs ----------------------------------------------------------------------------------

    @abc.abstractmethod
    def create_run(
        self,
        experiment_id: str,
        user_id: str,
        start_time: int,
        tags: dict[str, str],
        run_name: str,
        parent_run_id: str | None,
    ) -> Run: ...

    @abc.abstractmethod
    def get_run(self, run_id: str) -> Run: ...

    @abc.abstractmethod
    def get_run_info(self, run_id: str) -> RunInfo: ...

    @abc.abstractmethod
    def update_run(
        self,
        run_id: str,
        status: RunStatus | None,
        end_time: int | None,
        run_name: str | None,
    ) -> RunInfo: ...

    @abc.abstractmethod
    def delete_run(self, run_id: str) -> None: ...

    @abc.abstractmethod
    def restore_run(self, run_id: str) -> None: ...

    @abc.abstractmethod
    def search_runs(
        self,
        experiment_ids: Sequence[str],
        filters: Sequence[Comparison],
        view_type: ViewType,
        max_results: int,
        order_by: Sequence[OrderKey],
        page_token: str,
    ) -> PagedList[Run]:
        """A page of runs in the order; its token resumes after the page's last run (by its
        sort key, not a count), so runs created or deleted between pages move no other run.
        A token not issued for this query is InvalidArgument naming page_token."""

    # -- run data ------------------------------------------------------------------------------

    @abc.abstractmethod
    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Metric],
        params: Sequence[Param],
        tags: Sequence[RunTag],
    ) -> None:
        """Write all or nothing. Re-logging a param with a different value is InvalidArgument."""

    def log_metric(self, run_id: str, metric: Metric) -> None:
        self.log_batch(run_id, [metric], [], [])

    def log_metric_rows(self, run_id: str, rows: Sequence[tuple[str, float, int, int]]) -> None:
        """Metrics only, as (key, value, timestamp_ms, step) tuples; a backend may write these
        without building entities."""
        self.log_batch(run_id, [Metric(*row) for row in rows], [], [])

    def log_param(self, run_id: str, param: Param) -> None:
        self.log_batch(run_id, [], [param], [])

    def set_tag(self, run_id: str, tag: RunTag) -> None:
        self.log_batch(run_id, [], [], [tag])

    @abc.abstractmethod
    def delete_tag(self, run_id: str, key: str) -> None: ...

    @abc.abstractmethod
    def log_inputs(self, run_id: str, datasets: Sequence[DatasetInput]) -> None: ...

    @abc.abstractmethod
    def get_metric_history(
        self, run_id: str, key: str, max_results: int, page_token: str
    ) -> PagedList[Metric]: ...

    @abc.abstractmethod
    def sample_metric_history(self, run_id: str, key: str, points: int) -> list[Metric]:
        """At most `points` (>= 2) of the history in its order: the first and the last, and the
        lowest and highest value of each of (points - 2) // 2 equal buckets between them, so a
        chart keeps every spike. The database reads them all, nothing more crosses the wire."""

    # -- artifact index ------------------------------------------------------------------------

    @abc.abstractmethod
    def record_artifact(self, run_id: str, path: str, file_size: int, sha256: str) -> FileInfo: ...

    @abc.abstractmethod
    def find_artifact(self, run_id: str, path: str) -> FileInfo | None: ...

    @abc.abstractmethod
    def list_artifacts(
        self, run_id: str, prefix: str, start: str = "", limit: int | None = None
    ) -> list[FileInfo]:
        """Every recorded file below `prefix` ('' for all), sorted by path (byte by byte); with
        a `limit`, at most that many, from path `start` on (a page, read in the index)."""

    @abc.abstractmethod
    def forget_artifacts(self, run_id: str, paths: Sequence[str]) -> None: ...

    # -- artifact placements (see services/tracking/placement.py) ------------------------------

    @abc.abstractmethod
    def take_placement(self, lease: ArtifactPlacement) -> ArtifactPlacement | None:
        """Store `lease` and return None, or return the lease that holds its path already (or
        `lease` itself if the path kept changing hands). FailedPrecondition if the run is
        deleted."""

    @abc.abstractmethod
    def take_deletion(self, leases: Sequence[ArtifactPlacement]) -> ArtifactPlacement | None:
        """In one transaction, store `leases` (deleting ones, of one run) and forget the records
        of their paths, and return None; or change nothing and return a lease that holds one of
        the paths (or one of `leases` if they kept changing hands). A few statements per 500
        paths. FailedPrecondition if the run is deleted."""

    @abc.abstractmethod
    def claim_placement(self, lease: ArtifactPlacement, expires_at: int) -> bool:
        """Move `lease` (as read: same staged key and expiry) to `expires_at`; False if it
        changed or is gone, so of several finishing an abandoned lease exactly one goes on."""

    @abc.abstractmethod
    def finish_placement(self, lease: ArtifactPlacement) -> FileInfo:
        """In one transaction, record the lease's file and delete the lease; Aborted if the lease
        on that path no longer names these staged bytes (nothing is recorded then). The run may
        have been deleted since the lease was taken: the bytes are in place, so they count."""

    @abc.abstractmethod
    def drop_placement(self, lease: ArtifactPlacement) -> None:
        """Delete the lease if it still names these staged bytes."""

    @abc.abstractmethod
    def drop_deletion(self, leases: Sequence[ArtifactPlacement]) -> None:
        """Delete the leases that one `take_deletion` stored, those still as it stored them."""

    @abc.abstractmethod
    def release_deletion(self, leases: Sequence[ArtifactPlacement]) -> None:
        """Expire the leases that one `take_deletion` stored, those still as it stored them (a
        delete that stopped: whoever meets them next finishes it at once). A few statements per
        500 paths."""

    @abc.abstractmethod
    def find_placements(self, run_id: str | None = None, path: str = "") -> list[ArtifactPlacement]:
        """Leases of every run (run_id None), or of one run's `path` and the paths below it."""

    @abc.abstractmethod
    def artifact_state(
        self, run_id: str, path: str
    ) -> tuple[FileInfo | None, ArtifactPlacement | None]:
        """The record of `path` and its lease, read together."""

    def close(self) -> None:
        """Release connections."""
