"""TrackingService: the rules of experiment tracking, above the store and the artifact store.

Validation happens here (every check names the field), so the store only persists; artifact
bytes are staged in the artifact store first, then moved into place and recorded under a lease on
their path (placement.py), and become visible once the index row is committed.
"""

from __future__ import annotations

import random
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import timedelta

from modelyard.convert.tracking import metric_time_before_epoch
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
    SystemTag,
    ViewType,
)
from modelyard.entities.common import Grant, LifecycleStage, PermissionLevel
from modelyard.errors import FailedPrecondition, InvalidArgument, NotFound
from modelyard.services.common import identity
from modelyard.services.common import validation as v
from modelyard.services.common.artifacts import (
    STAGING_DIR,
    ArtifactStore,
    PathClash,
    PresignedUrl,
    StagedFile,
    clean_path,
    is_staging,
    parents,
    staged_upload_key,
)
from modelyard.services.common.filters import parse_filter, parse_order_by
from modelyard.services.common.logging import get_logger
from modelyard.services.common.pagination import (
    INT64,
    check_position,
    decode_token,
    encode_token,
    fingerprint,
    is_path_position,
    page_size,
    path_position,
    resolve_path,
)
from modelyard.services.tracking import limits
from modelyard.services.tracking.authorizer import TrackingAuthorizer
from modelyard.services.tracking.placement import ArtifactPlacer
from modelyard.services.tracking.store.base import TrackingStore, run_is_deleted
from modelyard.services.tracking.store.hot import MetricRow

log = get_logger(__name__)

DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"

_RUN_ID = re.compile(r"^[0-9a-f]{32}\Z")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}\Z")
_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}\Z")
# Ids of uploads streamed through UploadArtifact begin with time 0: clients that complete a
# presigned upload without its id get the newest one (see _staged_upload), never one of these.
_STREAMED = "0" * 12
# A staged upload left this long is abandoned: its CompleteArtifactUpload follows the PUT at once
# and the SDK gives it at most ~1.5 h (5 GiB at the slowest rate it allows for).
ABANDONED_UPLOAD_AGE = timedelta(days=1)
# How often uploads sweep them (besides start-up): each sweep lists every staged upload.
SWEEP_INTERVAL_S = 3600.0

_ADJECTIVES = (
    "amber",
    "bold",
    "brave",
    "bright",
    "calm",
    "clever",
    "crisp",
    "dapper",
    "eager",
    "fleet",
    "gentle",
    "glad",
    "honest",
    "jolly",
    "keen",
    "lively",
    "lucid",
    "merry",
    "nimble",
    "polite",
    "proud",
    "quiet",
    "rapid",
    "serene",
    "sharp",
    "silent",
    "sleek",
    "steady",
    "swift",
    "tidy",
    "vivid",
    "warm",
    "wise",
    "zesty",
)
_NOUNS = (
    "ant",
    "badger",
    "bee",
    "crane",
    "deer",
    "dove",
    "eagle",
    "elk",
    "falcon",
    "finch",
    "fox",
    "gull",
    "hare",
    "hawk",
    "heron",
    "ibis",
    "jay",
    "koala",
    "lark",
    "lynx",
    "mole",
    "moth",
    "newt",
    "otter",
    "owl",
    "panda",
    "quail",
    "raven",
    "robin",
    "seal",
    "shrew",
    "stork",
    "swan",
    "tern",
    "toad",
    "trout",
    "vole",
    "wren",
    "yak",
)


def _now() -> int:
    return int(time.time() * 1000)


def run_id(field: str, value: str) -> str:
    return v.identifier(field, value, pattern=_RUN_ID, example="32 lowercase hex digits")


def experiment_id(field: str, value: str) -> str:
    return v.identifier(field, value, pattern=limits.EXPERIMENT_ID, example="'0' or '12'")


def generate_run_name() -> str:
    return f"{random.choice(_ADJECTIVES)}-{random.choice(_NOUNS)}-{random.randint(100, 999)}"


def principal_name(field: str, value: str) -> str:
    v.require(field, value)
    v.max_length(field, value, 256)
    return value


class TrackingService:
    def __init__(
        self,
        store: TrackingStore,
        artifacts: ArtifactStore,
        authorizer: TrackingAuthorizer,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.artifacts = artifacts
        self.authorizer = authorizer
        self.placer = ArtifactPlacer(store, artifacts, self._artifact_key)
        self._clock = clock
        self._sweep_lock = threading.Lock()
        self._next_sweep = clock() + SWEEP_INTERVAL_S  # start-up sweeps first

    def finish_abandoned_uploads(self) -> int:
        """At start-up: settle the artifact placements (and deletes) that died with a process,
        then sweep the staged uploads nobody will complete (a process killed between staging
        and placing them leaves them, as do presigned uploads never completed); uploads sweep
        again every SWEEP_INTERVAL_S."""
        done = self.placer.finish_all_abandoned()
        self.sweep_abandoned_uploads()
        return done

    # -- experiments ---------------------------------------------------------------------------

    def create_experiment(
        self, name: str, artifact_location: str = "", tags: dict[str, str] | None = None
    ) -> str:
        v.require("name", name)
        v.max_length("name", name, limits.MAX_EXPERIMENT_NAME_LENGTH)
        location = None
        if artifact_location:
            key = self.artifacts.key_for(artifact_location)
            if key is None:
                raise InvalidArgument(
                    f"artifact_location {v.shown(artifact_location)} is outside this server's "
                    f"artifact root {self.artifacts.root_uri}; leave it empty or choose a "
                    "location under it",
                    field="artifact_location",
                )
            if is_staging(key):
                raise InvalidArgument(
                    f"artifact_location {v.shown(artifact_location)} is in {STAGING_DIR}/, which "
                    "the server reserves for uploads in flight; choose another location",
                    field="artifact_location",
                )
            location = artifact_location.rstrip("/")
        self._check_tags("tags", tags or {}, limits.MAX_TAG_VALUE_LENGTH)
        experiment_id = self.store.create_experiment(name, location, dict(tags or {}))
        me = identity.current()
        if me.enforced:  # the creator owns it
            self.authorizer.grants.set(experiment_id, me.name, PermissionLevel.MANAGE)
        return experiment_id

    def get_experiment(self, exp_id: str) -> Experiment:
        return self.store.get_experiment(experiment_id("experiment_id", exp_id))

    def get_experiment_by_name(self, name: str) -> Experiment:
        v.require("experiment_name", name)
        v.max_length("experiment_name", name, limits.MAX_EXPERIMENT_NAME_LENGTH)
        found = self.store.find_experiment_by_name(name)
        if found is None:
            raise NotFound(
                f"no experiment is named {v.shown(name)}; create it with CreateExperiment",
                resource_type="experiment",
                resource_name=name,
            )
        return found

    def search_experiments(
        self,
        filter_string: str = "",
        order_by: Sequence[str] = (),
        max_results: int = 0,
        page_token: str = "",
        view_type: ViewType = ViewType.ACTIVE_ONLY,
    ) -> PagedList[Experiment]:
        size = page_size(
            max_results,
            default=limits.SEARCH_EXPERIMENTS_DEFAULT,
            maximum=limits.SEARCH_EXPERIMENTS_MAX,
            field="max_results",
        )
        return self.store.search_experiments(
            view_type,
            parse_filter(filter_string),
            parse_order_by(order_by),
            size,
            page_token,  # checked against the order by the store (its positions are keys)
            readable=self.authorizer.readable(identity.current()),
        )

    def rename_experiment(self, exp_id: str, new_name: str) -> None:
        experiment_id("experiment_id", exp_id)
        v.require("new_name", new_name)
        v.max_length("new_name", new_name, limits.MAX_EXPERIMENT_NAME_LENGTH)
        self.store.rename_experiment(exp_id, new_name)

    def delete_experiment(self, exp_id: str) -> None:
        """The default experiment stays: runs created without an experiment go there."""
        exp_id = experiment_id("experiment_id", exp_id)
        if int(exp_id) == int(DEFAULT_EXPERIMENT_ID):
            raise FailedPrecondition(
                f"experiment {DEFAULT_EXPERIMENT_ID} ({DEFAULT_EXPERIMENT_NAME!r}) is the default "
                "experiment and cannot be deleted; delete its runs instead, or log to another "
                "experiment (create one with create_experiment)",
                resource_type="experiment",
                resource_name=DEFAULT_EXPERIMENT_ID,
            )
        self.store.delete_experiment(exp_id)

    def restore_experiment(self, exp_id: str) -> None:
        self.store.restore_experiment(experiment_id("experiment_id", exp_id))

    def set_experiment_tag(self, exp_id: str, key: str, value: str) -> None:
        experiment_id("experiment_id", exp_id)
        self._check_tags("key", {key: value}, limits.MAX_TAG_VALUE_LENGTH)
        self.store.set_experiment_tag(exp_id, key, value)

    def delete_experiment_tag(self, exp_id: str, key: str) -> None:
        experiment_id("experiment_id", exp_id)
        v.key("key", key, limits.MAX_KEY_LENGTH, existing=True)
        self.store.delete_experiment_tag(exp_id, key)

    def set_permission(self, exp_id: str, principal: str, level: PermissionLevel | None) -> None:
        self.get_experiment(exp_id)
        principal_name("grant.principal", principal)
        if level is None:
            raise InvalidArgument(
                "grant.level must be READ, USE, EDIT or MANAGE", field="grant.level"
            )
        self.authorizer.grants.set(exp_id, principal, level)

    def delete_permission(self, exp_id: str, principal: str) -> None:
        self.get_experiment(exp_id)
        principal_name("principal", principal)
        if not self.authorizer.grants.delete(exp_id, principal):
            raise NotFound(
                f"{principal!r} holds no grant on experiment {exp_id}",
                resource_type="grant",
                resource_name=principal,
            )

    def list_permissions(self, exp_id: str) -> list[Grant]:
        self.get_experiment(exp_id)
        return self.authorizer.grants.list(exp_id)

    # -- runs ----------------------------------------------------------------------------------

    def create_run(
        self,
        exp_id: str,
        run_name: str = "",
        start_time: int | None = None,
        tags: dict[str, str] | None = None,
        parent_run_id: str = "",
        user_id: str = "",
    ) -> Run:
        experiment_id("experiment_id", exp_id or DEFAULT_EXPERIMENT_ID)
        tags = dict(tags or {})
        self._check_tags("tags", tags, limits.MAX_TAG_VALUE_LENGTH)
        # MLflow clients name and nest runs through these tags as often as through the fields.
        run_name = _field_or_tag("run_name", run_name, tags, SystemTag.RUN_NAME)
        parent_run_id = _field_or_tag("parent_run_id", parent_run_id, tags, SystemTag.PARENT_RUN_ID)
        v.max_length("run_name", run_name, limits.MAX_RUN_NAME_LENGTH)
        v.max_length("user_id", user_id, limits.MAX_USER_ID_LENGTH)
        if parent_run_id:
            run_id("parent_run_id", parent_run_id)
        run_name = run_name or generate_run_name()
        tags[SystemTag.RUN_NAME] = run_name
        if parent_run_id:
            tags[SystemTag.PARENT_RUN_ID] = parent_run_id
        user_id = user_id or tags.get(SystemTag.USER, "")
        if user_id:
            tags.setdefault(SystemTag.USER, user_id)
        return self.store.create_run(
            exp_id or DEFAULT_EXPERIMENT_ID,
            user_id or "unknown",
            start_time if start_time is not None else _now(),
            tags,
            run_name,
            parent_run_id or None,
        )

    def get_run(self, rid: str) -> Run:
        return self.store.get_run(run_id("run_id", rid))

    def update_run(
        self,
        rid: str,
        status: RunStatus | None = None,
        end_time: int | None = None,
        run_name: str = "",
    ) -> RunInfo:
        run_id("run_id", rid)
        v.max_length("run_name", run_name, limits.MAX_RUN_NAME_LENGTH)
        return self.store.update_run(rid, status, end_time, run_name or None)

    def delete_run(self, rid: str) -> None:
        self.store.delete_run(run_id("run_id", rid))

    def restore_run(self, rid: str) -> None:
        self.store.restore_run(run_id("run_id", rid))

    def search_runs(
        self,
        experiment_ids: Sequence[str],
        filter_string: str = "",
        view_type: ViewType = ViewType.ACTIVE_ONLY,
        max_results: int = 0,
        order_by: Sequence[str] = (),
        page_token: str = "",
    ) -> PagedList[Run]:
        if len(experiment_ids) > limits.MAX_EXPERIMENTS_PER_SEARCH:
            raise InvalidArgument(
                f"experiment_ids names {len(experiment_ids)} experiments; the limit is "
                f"{limits.MAX_EXPERIMENTS_PER_SEARCH}",
                field="experiment_ids",
            )
        for eid in experiment_ids:
            experiment_id("experiment_ids", eid)
        self.authorizer.require_read(identity.current(), list(experiment_ids))
        size = page_size(
            max_results,
            default=limits.SEARCH_RUNS_DEFAULT,
            maximum=limits.SEARCH_RUNS_MAX,
            field="max_results",
        )
        filters, order = parse_filter(filter_string), parse_order_by(order_by)
        if not experiment_ids:  # as MLflow: no runs (a bad filter is still refused)
            return PagedList([], None)
        # The store checks the token's position against the order (its positions are keys).
        return self.store.search_runs(
            list(experiment_ids), filters, view_type, size, order, page_token
        )

    # -- run data ------------------------------------------------------------------------------

    def log_batch(
        self,
        rid: str,
        metrics: Sequence[Metric] = (),
        params: Sequence[Param] = (),
        tags: Sequence[RunTag] = (),
    ) -> None:
        run_id("run_id", rid)
        _check_batch_size("metrics", metrics, limits.MAX_METRICS_PER_BATCH)
        _check_batch_size("params", params, limits.MAX_PARAMS_PER_BATCH)
        _check_batch_size("tags", tags, limits.MAX_TAGS_PER_BATCH)
        _check_metric_keys(m.key for m in metrics)
        _check_metric_times("metrics.timestamp", (m.timestamp for m in metrics))
        for p in params:
            v.key("params.key", p.key, limits.MAX_KEY_LENGTH)
            v.max_length(
                f"params[{p.key}].value", p.value, limits.MAX_PARAM_VALUE_LENGTH, _LONG_PARAM
            )
        for t in tags:
            v.key("tags.key", t.key, limits.MAX_KEY_LENGTH)
            v.max_length(f"tags[{t.key}].value", t.value, limits.MAX_TAG_VALUE_LENGTH, _LONG_TAG)
            _check_system_tag(f"tags[{t.key}].value", t)
        if metrics or params or tags:
            self.store.log_batch(rid, metrics, params, tags)

    def log_metric_rows(self, rid: str, rows: Sequence[MetricRow]) -> None:
        """LogBatch with metrics only, as (key, value, timestamp_ms, step) tuples: the hot path
        of batched logging, which skips building a Metric per value."""
        run_id("run_id", rid)
        _check_batch_size("metrics", rows, limits.MAX_METRICS_PER_BATCH)
        _check_metric_keys(row[0] for row in rows)
        _check_metric_times("metrics.timestamp", (row[2] for row in rows))
        if rows:
            self.store.log_metric_rows(rid, rows)

    def log_metric(
        self, rid: str, key: str, value: float, timestamp: int | None, step: int
    ) -> None:
        run_id("run_id", rid)
        v.key("key", key, limits.MAX_KEY_LENGTH)
        ts = timestamp if timestamp is not None else _now()
        _check_metric_times("timestamp", (ts,))
        self.store.log_metric_rows(rid, [(key, value, ts, step)])

    def log_param(self, rid: str, key: str, value: str) -> None:
        run_id("run_id", rid)
        v.key("key", key, limits.MAX_KEY_LENGTH)
        v.max_length("value", value, limits.MAX_PARAM_VALUE_LENGTH, _LONG_PARAM)
        self.store.log_param(rid, Param(key, value))

    def set_tag(self, rid: str, key: str, value: str) -> None:
        run_id("run_id", rid)
        v.key("key", key, limits.MAX_KEY_LENGTH)
        v.max_length("value", value, limits.MAX_TAG_VALUE_LENGTH, _LONG_TAG)
        _check_system_tag("value", RunTag(key, value))
        self.store.set_tag(rid, RunTag(key, value))

    def delete_tag(self, rid: str, key: str) -> None:
        run_id("run_id", rid)
        v.key("key", key, limits.MAX_KEY_LENGTH, existing=True)
        self.store.delete_tag(rid, key)

    def log_inputs(self, rid: str, datasets: Sequence[DatasetInput]) -> None:
        run_id("run_id", rid)
        if len(datasets) > limits.MAX_DATASETS_PER_CALL:
            raise InvalidArgument(
                f"datasets holds {len(datasets)} entries; "
                f"the limit is {limits.MAX_DATASETS_PER_CALL}",
                field="datasets",
            )
        for i, item in enumerate(datasets):
            d = item.dataset
            prefix = f"datasets[{i}].dataset"
            v.require(f"{prefix}.name", d.name)
            v.require(f"{prefix}.digest", d.digest)
            for name, value, limit in (
                ("name", d.name, limits.MAX_DATASET_NAME_LENGTH),
                ("digest", d.digest, limits.MAX_DATASET_DIGEST_LENGTH),
                ("source_type", d.source_type, limits.MAX_DATASET_SOURCE_TYPE_LENGTH),
                ("source", d.source, limits.MAX_DATASET_SOURCE_LENGTH),
                ("schema", d.schema, limits.MAX_DATASET_SCHEMA_LENGTH),
                ("profile", d.profile, limits.MAX_DATASET_PROFILE_LENGTH),
            ):
                v.max_length(f"{prefix}.{name}", value, limit)
            for t in item.tags:
                v.key(f"datasets[{i}].tags.key", t.key, limits.MAX_KEY_LENGTH)
                v.max_length(f"datasets[{i}].tags.value", t.value, limits.MAX_TAG_VALUE_LENGTH)
        if datasets:
            self.store.log_inputs(rid, datasets)

    def get_metric_history(
        self, rid: str, key: str, max_results: int = 0, page_token: str = ""
    ) -> PagedList[Metric]:
        run_id("run_id", rid)
        v.key("metric_key", key, limits.MAX_KEY_LENGTH, existing=True)
        size = page_size(
            max_results,
            default=limits.METRIC_HISTORY_DEFAULT,
            maximum=limits.METRIC_HISTORY_MAX,
            field="max_results",
        )
        return self.store.get_metric_history(
            rid, key, size, check_position(page_token, _is_metric_position)
        )

    def sample_metric_history(
        self, rid: str, key: str, max_points: int, max_results: int = 0, page_token: str = ""
    ) -> list[Metric]:
        """A chart's view of a long history: reading 100k points to draw 2,000 took a run page
        seconds per metric."""
        run_id("run_id", rid)
        v.key("metric_key", key, limits.MAX_KEY_LENGTH, existing=True)
        if not 2 <= max_points <= limits.METRIC_HISTORY_MAX:
            raise InvalidArgument(
                f"max_points must be between 2 and {limits.METRIC_HISTORY_MAX}, not {max_points}",
                field="max_points",
            )
        if max_results or page_token:
            field = "max_results" if max_results else "page_token"
            raise InvalidArgument(
                f"{field} cannot go with max_points (a sample comes in one response); leave it "
                "unset, or page through the whole history without max_points",
                field=field,
            )
        return self.store.sample_metric_history(rid, key, max_points)

    # -- artifacts -----------------------------------------------------------------------------

    def _artifact_key(self, info: RunInfo, path: str) -> str:
        base = self.artifacts.key_for(info.artifact_uri)
        if base is None:
            raise FailedPrecondition(
                f"run {info.run_id!r} stores artifacts at {info.artifact_uri}, outside this "
                f"server's artifact root {self.artifacts.root_uri}; start the server with the "
                "artifact root the run was created under",
                resource_type="run",
                resource_name=info.run_id,
            )
        key = f"{base}/{path}" if path else base
        limit = self.artifacts.max_key_bytes
        if limit is not None and (size := self.artifacts.key_bytes(key)) > limit:
            raise InvalidArgument(
                f"path makes an object key of {size} bytes under run {info.run_id!r} (the path "
                f"itself {len(path.encode())}); the artifact store takes at most {limit}: "
                "shorten the path",
                field="path",
            )
        return key

    def _writable_run(self, rid: str) -> RunInfo:
        info = self.store.get_run_info(run_id("run_id", rid))
        if info.lifecycle_stage != LifecycleStage.ACTIVE:
            experiment = self.store.get_experiment(info.experiment_id)
            gone = experiment.lifecycle_stage != LifecycleStage.ACTIVE
            raise run_is_deleted(rid, info.experiment_id, gone, "changing its artifacts")
        return info

    def upload_artifact(
        self, rid: str, path: str, chunks: Iterable[bytes], sha256: str = ""
    ) -> FileInfo:
        path = clean_path(path, field="path")
        if not sha256:
            # grpc's server can end a cancelled client stream as if it were complete: without
            # the digest, a cut-short upload would replace the file with its first part.
            raise InvalidArgument(
                "sha256 is required: put the file's sha256 in the upload's header, so a transfer "
                "cut short is refused instead of stored",
                field="sha256",
            )
        if not _SHA256.match(sha256):
            raise InvalidArgument("sha256 must be 64 hex digits", field="sha256")
        info = self._writable_run(rid)
        self._check_path_free(rid, path)
        key = self._artifact_key(info, path)
        self._sweep_when_due()
        staged = staged_upload_key(rid, path, f"{_STREAMED}{secrets.token_hex(10)}")
        stored = self.artifacts.write(staged, chunks, sha256)
        return self.placer.place(rid, path, key, StagedFile(staged, stored.size, stored.sha256))

    def _check_path_free(self, rid: str, path: str) -> None:
        """Refuse a file that would be a directory of the run's recorded files, or lie inside
        one of them, before any bytes move: listings come from these records, so every backend
        (AWS S3 too, which would store both) shows each name once."""
        for above in parents(path):
            if self.store.find_artifact(rid, above) is not None:
                raise PathClash(path, above)
        inside = self.store.list_artifacts(rid, path)
        if inside:
            raise PathClash(path, inside[0].path)

    def open_artifact(self, rid: str, path: str) -> tuple[FileInfo, Iterator[bytes]]:
        path = clean_path(path, field="path")
        info = self.store.get_run_info(run_id("run_id", rid))
        file = self._recorded(rid, path)
        chunks = self.artifacts.read(self._artifact_key(info, path))
        self.placer.check_unchanged(rid, path, file, chunks)
        return file, chunks

    def _recorded(self, rid: str, path: str) -> FileInfo:
        file = self.placer.settled(rid, path)
        if file is None:
            raise NotFound(
                f"run {rid!r} has no artifact {path!r}; list its files with ListArtifacts",
                resource_type="artifact",
                resource_name=path,
            )
        return file

    def list_artifacts(
        self,
        rid: str,
        path: str = "",
        recursive: bool = False,
        page_size_: int = 0,
        page_token: str = "",
    ) -> tuple[str, PagedList[FileInfo]]:
        """One directory level (or every file below `path`), paged by path."""
        prefix = clean_path(path, field="path", allow_empty=True)
        info = self.store.get_run_info(run_id("run_id", rid))
        size = page_size(
            page_size_,
            default=limits.LIST_ARTIFACTS_DEFAULT,
            maximum=limits.LIST_ARTIFACTS_MAX,
            field="page_size",
        )
        query = fingerprint("artifacts", rid, prefix, recursive)
        position = decode_token(check_position(page_token, is_path_position), query)

        def paths_after(path: str, limit: int) -> list[str]:
            return [f.path for f in self.store.list_artifacts(rid, prefix, path + "\x01", limit)]

        after = resolve_path(position, paths_after) if position else ""
        start = _past(after) if after else ""
        if recursive:
            entries = self.store.list_artifacts(rid, prefix, start, limit=size + 1)
        else:
            entries = self._one_level(rid, prefix, start, size + 1)
        page = entries[:size]
        last = path_position(_position(page[-1])) if len(entries) > size else None
        token = encode_token(query, last) if last else None
        return info.artifact_uri, PagedList(page, token)

    def _one_level(self, rid: str, prefix: str, start: str, wanted: int) -> list[FileInfo]:
        """Up to `wanted` entries directly under `prefix`, from path `start` on: files, and a
        directory for the first file met below each, whose other files the next query jumps
        (so a page reads at most LIST_ARTIFACTS_LEVEL_BATCH rows per entry, however many the
        run holds).
        Entries come in their files' order: 'd.txt' before 'd' (of 'd/x'), as '.' < '/'."""
        entries: list[FileInfo] = []
        base = len(prefix) + 1 if prefix else 0
        while len(entries) < wanted:
            limit = min(wanted - len(entries), limits.LIST_ARTIFACTS_LEVEL_BATCH)
            batch = self.store.list_artifacts(rid, prefix, start, limit=limit)
            for f in batch:
                if f.path < start:  # below the directory just entered
                    continue
                head, sep, _ = f.path[base:].partition("/")
                if sep:
                    directory = f.path[:base] + head
                    entries.append(FileInfo(path=directory, is_dir=True))
                    start = _past(directory + "/")
                else:
                    entries.append(f)
                    start = _past(f.path)
            if len(batch) < limit:
                break
        return entries[:wanted]

    def delete_artifact(self, rid: str, path: str) -> int:
        path = clean_path(path, field="path")
        info = self._writable_run(rid)
        # A delete of `path` that stopped half-way (the object store unreachable) left leases
        # with the bytes: finishing them is what its retry asked for.
        finished = self.placer.settle_below(rid, path)
        exact = self.store.find_artifact(rid, path)
        doomed = [exact] if exact else self.store.list_artifacts(rid, path)
        if not doomed and finished:
            return finished
        if not doomed:
            raise NotFound(
                f"run {rid!r} has no artifact {path!r}; list its files with ListArtifacts",
                resource_type="artifact",
                resource_name=path,
            )
        # Forget first: the files vanish from listings at once; leases on their paths keep
        # uploads off them until their bytes are gone (see placement.py).
        self.placer.delete(info, [f.path for f in doomed])
        return len(doomed)

    def create_upload_url(self, rid: str, path: str) -> tuple[PresignedUrl, str]:
        """A URL that stages the bytes aside, and the upload id that CompleteArtifactUpload
        takes to verify them and copy them into place: until then the path keeps its file."""
        path = clean_path(path, field="path")
        info = self._writable_run(rid)
        self._check_path_free(rid, path)
        self._artifact_key(info, path)  # a run stored outside this root cannot complete
        # Time first, so the newest upload of a path sorts last (see _staged_upload).
        upload_id = f"{_now():012x}{secrets.token_hex(10)}"
        url = self.artifacts.presign_put(staged_upload_key(rid, path, upload_id))
        self._sweep_when_due()
        return url, upload_id

    def _sweep_when_due(self) -> None:
        """Sweep from an upload once SWEEP_INTERVAL_S has passed since the last sweep (a server
        may run for months between restarts): that upload pays for it, no other waits."""
        with self._sweep_lock:
            if self._clock() < self._next_sweep:
                return
            self._next_sweep = self._clock() + SWEEP_INTERVAL_S
        try:
            self.placer.finish_all_abandoned()  # deletes that stopped, if nobody retried them
            self.sweep_abandoned_uploads()
        except Exception as exc:  # housekeeping: the next one retries; the upload goes on
            log.warning("could not sweep abandoned uploads: %s", exc)

    def sweep_abandoned_uploads(self, older_than: timedelta = ABANDONED_UPLOAD_AGE) -> int:
        """Delete staged uploads nobody completed, but those a placement still needs (one that
        died is finished from them)."""
        placing = {lease.staged_key for lease in self.store.find_placements()}
        return self.artifacts.sweep_staged(older_than, keep=placing)

    def complete_upload(self, rid: str, path: str, sha256: str, upload_id: str = "") -> FileInfo:
        path = clean_path(path, field="path")
        if not _SHA256.match(sha256 or ""):
            raise InvalidArgument(
                "sha256 must be the 64 hex digit digest of the file", field="sha256"
            )
        if upload_id and not _UPLOAD_ID.match(upload_id):
            raise InvalidArgument(
                "upload_id must be the 32 hex digit id that CreateArtifactUploadUrl returned",
                field="upload_id",
            )
        info = self._writable_run(rid)
        key = self._artifact_key(info, path)
        staged = self._staged_upload(rid, path, upload_id, key)
        if staged is None:  # a URL from a server before staging wrote to the path itself
            self._check_path_free(rid, path)
            stored = self.artifacts.verify(key, sha256)
            return self.store.record_artifact(rid, path, stored.size, stored.sha256)
        try:
            self._check_path_free(rid, path)
            verified = self.artifacts.verify_staged(staged, sha256)
        except (FailedPrecondition, InvalidArgument):
            self.artifacts.delete(staged)  # a refused upload leaves nothing behind
            raise
        return self.placer.place(rid, path, key, verified)

    def _staged_upload(self, rid: str, path: str, upload_id: str, key: str) -> str | None:
        """The staged object of `upload_id`, which completes only the upload to the run and path it
        was issued for. Clients that send none (before upload ids) get the run's newest upload to
        `path`, or, if none is staged, None: the bytes at `key`."""
        if upload_id:
            staged: str | None = staged_upload_key(rid, path, upload_id)
            found = self.artifacts.size(staged) is not None
        else:
            keys = (k for k, _ in self.artifacts.iter_files(staged_upload_key(rid, path)))
            staged = max((k for k in keys if not _streamed(k)), default=None)
            found = staged is not None or self.artifacts.size(key) is not None
        if not found:
            raise FailedPrecondition(
                f"nothing was uploaded to {path!r}"
                + (f" under upload_id {upload_id}" if upload_id else "")
                + "; PUT the bytes to the URL from CreateArtifactUploadUrl first",
                resource_type="artifact",
                resource_name=path,
            )
        return staged

    def create_download_url(self, rid: str, path: str) -> tuple[PresignedUrl, FileInfo]:
        path = clean_path(path, field="path")
        info = self.store.get_run_info(run_id("run_id", rid))
        file = self._recorded(rid, path)
        return self.artifacts.presign_get(self._artifact_key(info, path)), file

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _check_tags(field: str, tags: dict[str, str], value_limit: int) -> None:
        for key, value in tags.items():
            v.key(f"{field}.key" if field == "tags" else field, key, limits.MAX_KEY_LENGTH)
            v.max_length(
                f"{field}[{key}].value" if field == "tags" else "value",
                value,
                value_limit,
                _LONG_TAG,
            )


def _is_metric_position(position: object) -> bool:
    """[step, timestamp, id] of the last metric value of the previous page."""
    return (
        isinstance(position, list)
        and len(position) == 3
        and all(type(x) is int and x in INT64 for x in position)
    )


def _field_or_tag(name: str, value: str, tags: dict[str, str], tag: SystemTag) -> str:
    """A run field that may also arrive as its MLflow system tag; both must then agree."""
    tagged = tags.get(tag, "")
    if value and tagged and value != tagged:
        raise InvalidArgument(
            f"{name} is {v.shown(value)} but tag {tag.value} is {v.shown(tagged)}; send one of "
            "them, or the same value in both",
            field=name,
        )
    return value or tagged


def _check_system_tag(field: str, tag: RunTag) -> None:
    """Tags that stand for a run field take that field's rules."""
    if tag.key == SystemTag.RUN_NAME:
        if not tag.value:
            raise InvalidArgument(
                f"{field}: tag {tag.key} is the run's name and cannot be empty; give a name",
                field=field,
            )
        v.max_length(field, tag.value, limits.MAX_RUN_NAME_LENGTH)
    elif tag.key == SystemTag.PARENT_RUN_ID:
        run_id(field, tag.value)


def _check_batch_size(name: str, items: Sequence[object], limit: int) -> None:
    """MLflow's LogBatch limits (1000 metrics, 100 params, 100 tags per call)."""
    if len(items) > limit:
        raise InvalidArgument(
            f"{name} holds {len(items)} entries; a batch takes at most {limit}. "
            "Split it into several LogBatch calls",
            field=name,
        )


# What to do with a value over the limit (MLflow's limits; MLflow's server refuses too).
_LONG_PARAM = (
    "a param holds a short setting: log longer text as a run artifact (log_text or log_dict) "
    "and keep a short param naming it, such as the artifact's path or a digest"
)
_LONG_TAG = (
    "a tag holds a short label: keep longer text in a run artifact (log_text) and put the "
    "artifact's path in the tag"
)


def _check_metric_times(field: str, times: Iterable[int]) -> None:
    """No metric time before the epoch (metric_time_before_epoch says why)."""
    first = min(times, default=0)
    if first < 0:
        raise metric_time_before_epoch(field, first)


def _check_metric_keys(keys: Iterable[str]) -> None:
    """Each distinct key once (a batch repeats a few keys over many steps), first one first."""
    for key in dict.fromkeys(keys):
        v.key("metrics.key", key, limits.MAX_KEY_LENGTH)


def _streamed(staged_key: str) -> bool:
    return staged_key.rsplit("/", 1)[-1].startswith(_STREAMED)


def _position(entry: FileInfo) -> str:
    """A page token's position: the last entry's path, a directory's with a '/' (no file's
    ends with one), as the next page resumes past every file below it."""
    return f"{entry.path}/" if entry.is_dir else entry.path


def _past(position: str) -> str:
    """The least path that sorts after `position` (byte by byte, as the store orders paths):
    past a directory 'd/' every 'd/...' ('0' follows '/'); past a file 'f', 'f' + chr(1), the
    least character a path can go on with, as none holds NUL."""
    return position[:-1] + "0" if position.endswith("/") else position + "\x01"
