"""TrackingClient: every TrackingService RPC, with MlflowClient's method names and return shapes."""

from __future__ import annotations

import getpass
import json
import math
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, SupportsFloat, SupportsIndex

import pandas as pd

from modelyard import media
from modelyard._gen.tracking.v1 import tracking_pb2 as pb
from modelyard._gen.tracking.v1 import tracking_pb2_grpc
from modelyard.client import _artifacts
from modelyard.client._transport import Transport
from modelyard.convert.common import (
    count_arg,
    file_info_to_entity,
    grant_to_entity,
    grant_to_proto,
    key_text,
    order_by_to_proto,
    page_size_arg,
    tags_to_proto,
    view_type_to_proto,
)
from modelyard.convert.tracking import (
    dataset_input_to_proto,
    experiment_to_entity,
    metric_args,
    metric_fields,
    metric_to_entity,
    run_info_to_entity,
    run_to_entity,
    status_to_proto,
    timestamp_fields,
)
from modelyard.entities import (
    DatasetInput,
    Experiment,
    FileInfo,
    Grant,
    Metric,
    PagedList,
    Param,
    PermissionLevel,
    PresignedUrl,
    Run,
    RunInfo,
    RunStatus,
    RunTag,
    SystemTag,
    ViewType,
)
from modelyard.errors import InvalidArgument, NotFound
from modelyard.services.tracking.limits import (
    MAX_METRICS_PER_BATCH,
    MAX_PARAMS_PER_BATCH,
    MAX_TAGS_PER_BATCH,
)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _stringify(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


class RunOperations:
    """What a `synchronous=False` call returns (MLflow's name): `wait()` blocks until the call
    is done, then raises its error, if any."""

    def __init__(self, wait: Callable[[], object]) -> None:
        self._wait = wait

    def wait(self) -> None:
        self._wait()


class TrackingClient:
    def __init__(self, transport: Transport) -> None:
        self._t = transport
        self._tracking = transport.stub(tracking_pb2_grpc.TrackingServiceStub)
        self._background: ThreadPoolExecutor | None = None
        self._background_lock = threading.Lock()

    def _later(self, send: Callable[[], None]) -> RunOperations:
        """Run `send` on this client's one background thread, after the calls submitted before
        it (one thread, so they keep their order), as MlflowClient's `synchronous=False`. The
        thread starts with the first such call: most clients never make one."""
        with self._background_lock:
            if self._background is None:
                self._background = ThreadPoolExecutor(1, thread_name_prefix="modelyard-log")
            return RunOperations(self._background.submit(send).result)

    def _finish_background(self) -> None:
        """Wait for the queued `synchronous=False` calls (closing waits, so none is lost)."""
        with self._background_lock:
            background, self._background = self._background, None
        if background is not None:
            background.shutdown(wait=True)

    # -- experiments ---------------------------------------------------------------------------

    def create_experiment(
        self,
        name: str,
        artifact_location: str | None = None,
        tags: dict[str, Any] | None = None,
    ) -> str:
        request = pb.CreateExperimentRequest(
            name=name,
            artifact_location=artifact_location or "",
            tags=_tags_to_proto(tags),
        )
        return self._t.call(self._tracking.CreateExperiment, request).experiment_id

    def get_experiment(self, experiment_id: str) -> Experiment:
        request = pb.GetExperimentRequest(experiment_id=str(experiment_id))
        return experiment_to_entity(self._t.call(self._tracking.GetExperiment, request).experiment)

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        """The experiment called `name`, or None (as MlflowClient does)."""
        request = pb.GetExperimentByNameRequest(experiment_name=name)
        try:
            response = self._t.call(self._tracking.GetExperimentByName, request)
        except NotFound:
            return None
        return experiment_to_entity(response.experiment)

    def search_experiments(
        self,
        view_type: ViewType | int | str = ViewType.ACTIVE_ONLY,
        max_results: int | None = None,
        filter_string: str | None = None,
        order_by: str | Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList[Experiment]:
        request = pb.SearchExperimentsRequest(
            filter=filter_string or "",
            order_by=order_by_to_proto(order_by),
            max_results=0 if max_results is None else page_size_arg(max_results, "max_results"),
            page_token=page_token or "",
            view_type=view_type_to_proto(view_type, "view_type"),
        )
        response = self._t.call(self._tracking.SearchExperiments, request)
        return PagedList(
            [experiment_to_entity(e) for e in response.experiments], response.next_page_token
        )

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        request = pb.UpdateExperimentRequest(experiment_id=str(experiment_id), new_name=new_name)
        self._t.call(self._tracking.UpdateExperiment, request)

    def delete_experiment(self, experiment_id: str) -> None:
        request = pb.DeleteExperimentRequest(experiment_id=str(experiment_id))
        self._t.call(self._tracking.DeleteExperiment, request)

    def restore_experiment(self, experiment_id: str) -> None:
        request = pb.RestoreExperimentRequest(experiment_id=str(experiment_id))
        self._t.call(self._tracking.RestoreExperiment, request)

    def set_experiment_tag(self, experiment_id: str, key: str, value: Any) -> None:
        request = pb.SetExperimentTagRequest(
            experiment_id=str(experiment_id), key=key_text(key, "key"), value=_stringify(value)
        )
        self._t.call(self._tracking.SetExperimentTag, request)

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        request = pb.DeleteExperimentTagRequest(experiment_id=str(experiment_id), key=key)
        self._t.call(self._tracking.DeleteExperimentTag, request)

    def set_experiment_permission(
        self, experiment_id: str, principal: str, level: PermissionLevel
    ) -> None:
        """Give `principal` ("*": every authenticated caller) `level` on the experiment and its
        runs, replacing the grant it held."""
        request = pb.SetExperimentPermissionRequest(
            experiment_id=str(experiment_id), grant=grant_to_proto(Grant(principal, level))
        )
        self._t.call(self._tracking.SetExperimentPermission, request)

    def delete_experiment_permission(self, experiment_id: str, principal: str) -> None:
        request = pb.DeleteExperimentPermissionRequest(
            experiment_id=str(experiment_id), principal=principal
        )
        self._t.call(self._tracking.DeleteExperimentPermission, request)

    def list_experiment_permissions(self, experiment_id: str) -> list[Grant]:
        request = pb.ListExperimentPermissionsRequest(experiment_id=str(experiment_id))
        response = self._t.call(self._tracking.ListExperimentPermissions, request)
        return [grant_to_entity(g) for g in response.grants]

    # -- runs ----------------------------------------------------------------------------------

    def create_run(
        self,
        experiment_id: str,
        start_time: int | None = None,
        tags: dict[str, Any] | None = None,
        run_name: str | None = None,
        parent_run_id: str | None = None,
    ) -> Run:
        request = pb.CreateRunRequest(
            experiment_id=str(experiment_id),
            run_name=run_name or "",
            tags=_tags_to_proto(tags),
            parent_run_id=parent_run_id or "",
            user_id=_user(),
            start_time=None if start_time is None else timestamp_fields(start_time, "start_time"),
        )
        return run_to_entity(self._t.call(self._tracking.CreateRun, request).run)

    def get_run(self, run_id: str) -> Run:
        return run_to_entity(
            self._t.call(self._tracking.GetRun, pb.GetRunRequest(run_id=run_id)).run
        )

    def get_parent_run(self, run_id: str) -> Run | None:
        parent = self.get_run(run_id).info.parent_run_id
        return self.get_run(parent) if parent else None

    def update_run(
        self,
        run_id: str,
        status: RunStatus | str | None = None,
        name: str | None = None,
        end_time: int | None = None,
    ) -> RunInfo:
        request = pb.UpdateRunRequest(
            run_id=run_id,
            run_name=name or "",
            end_time=None if end_time is None else timestamp_fields(end_time, "end_time"),
        )
        if status is not None:
            request.status = status_to_proto(status)
        return run_info_to_entity(self._t.call(self._tracking.UpdateRun, request).run_info)

    def set_terminated(
        self, run_id: str, status: RunStatus | str | None = None, end_time: int | None = None
    ) -> RunInfo:
        return self.update_run(
            run_id, status=status or RunStatus.FINISHED, end_time=end_time or _now_ms()
        )

    def delete_run(self, run_id: str) -> None:
        self._t.call(self._tracking.DeleteRun, pb.DeleteRunRequest(run_id=run_id))

    def restore_run(self, run_id: str) -> None:
        self._t.call(self._tracking.RestoreRun, pb.RestoreRunRequest(run_id=run_id))

    def search_runs(
        self,
        experiment_ids: str | Sequence[str],
        filter_string: str = "",
        run_view_type: ViewType | int | str = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        order_by: str | Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList[Run]:
        ids = [experiment_ids] if isinstance(experiment_ids, str) else list(experiment_ids)
        request = pb.SearchRunsRequest(
            experiment_ids=[str(i) for i in ids],
            filter=filter_string or "",
            run_view_type=view_type_to_proto(run_view_type, "run_view_type"),
            max_results=page_size_arg(max_results, "max_results"),
            order_by=order_by_to_proto(order_by),
            page_token=page_token or "",
        )
        response = self._t.call(self._tracking.SearchRuns, request)
        return PagedList([run_to_entity(r) for r in response.runs], response.next_page_token)

    # -- run data ------------------------------------------------------------------------------

    # `synchronous` as in MlflowClient: None or True write before returning; False queues the
    # call on the client's background thread and returns RunOperations. Input is checked and
    # the request built at once either way, so bad input raises in the caller. A synchronous
    # call does not wait for queued ones (as in MLflow): wait() first where order matters.

    def log_param(self, run_id: str, key: str, value: Any, synchronous: bool | None = None) -> Any:
        """`value` once written (or RunOperations, with synchronous=False)."""
        request = pb.LogParamRequest(
            run_id=run_id, key=key_text(key, "key"), value=_stringify(value)
        )
        if synchronous is False:
            return self._later(lambda: self._t.call(self._tracking.LogParam, request))
        self._t.call(self._tracking.LogParam, request)
        return value

    def log_metric(
        self,
        run_id: str,
        key: str,
        value: SupportsFloat,
        timestamp: SupportsIndex | None = None,
        step: SupportsIndex | None = None,
        synchronous: bool | None = None,
    ) -> RunOperations | None:
        """`value`, `timestamp` and `step` may be numpy's numbers too. `timestamp`: milliseconds
        since the epoch (default now); `step`: default 0. There is no dataset_name,
        dataset_digest or model_id (MLflow 3's): no field of ours holds them."""
        fields = metric_args(key, value, _now_ms() if timestamp is None else timestamp, step or 0)
        request = pb.LogMetricRequest(run_id=run_id, **fields)
        if synchronous is False:
            return self._later(lambda: self._t.call(self._tracking.LogMetric, request))
        self._t.call(self._tracking.LogMetric, request)
        return None

    def set_tag(
        self, run_id: str, key: str, value: Any, synchronous: bool | None = None
    ) -> RunOperations | None:
        request = pb.SetTagRequest(run_id=run_id, key=key_text(key, "key"), value=_stringify(value))
        if synchronous is False:
            return self._later(lambda: self._t.call(self._tracking.SetTag, request))
        self._t.call(self._tracking.SetTag, request)
        return None

    def delete_tag(self, run_id: str, key: str) -> None:
        self._t.call(self._tracking.DeleteTag, pb.DeleteTagRequest(run_id=run_id, key=key))

    def log_batch(
        self,
        run_id: str,
        metrics: Iterable[Metric] = (),
        params: Iterable[Param] = (),
        tags: Iterable[RunTag] = (),
        synchronous: bool | None = None,
    ) -> RunOperations | None:
        """Log everything, in as many LogBatch calls as the server's limits need (as
        MlflowClient does; each call is all or nothing, the whole is not). Every metric is
        checked before the first call. Done when this returns, or, with synchronous=False, when
        the returned RunOperations' wait() returns."""
        # Any iterable, as before; metrics as checked message fields, so a bad one sends nothing.
        fields = [metric_fields(m, i) for i, m in enumerate(metrics)]
        requests = [
            pb.LogBatchRequest(
                run_id=run_id,
                metrics=chunk_metrics,  # type: ignore[arg-type]  # protobuf takes the dicts
                params=[
                    pb.Param(key=key_text(p.key, "params.key"), value=_stringify(p.value))
                    for p in chunk_params
                ],
                tags=_tags_to_proto({t.key: t.value for t in chunk_tags}),
            )
            for chunk_metrics, chunk_params, chunk_tags in _batches(fields, [*params], [*tags])
        ]

        def send() -> None:
            for request in requests:
                self._t.call(self._tracking.LogBatch, request)

        if synchronous is False:
            return self._later(send)
        send()
        return None

    def log_inputs(self, run_id: str, datasets: Sequence[DatasetInput] | None = None) -> None:
        request = pb.LogInputsRequest(
            run_id=run_id, datasets=[dataset_input_to_proto(d) for d in datasets or []]
        )
        self._t.call(self._tracking.LogInputs, request)

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        """Every logged value of the metric, by step then time, across all pages."""
        return list(self.iter_metric_history(run_id, key))

    def sample_metric_history(self, run_id: str, key: str, max_points: int) -> list[Metric]:
        """At most `max_points` (2 or more) values of the metric for a chart, in step order:
        first and last, and each stretch's lowest and highest value, so spikes stay; the
        server samples, so a long history is not sent."""
        request = pb.GetMetricHistoryRequest(
            run_id=run_id, metric_key=key, max_points=count_arg(max_points, "max_points")
        )
        response = self._t.call(self._tracking.GetMetricHistory, request)
        return [metric_to_entity(m) for m in response.metrics]

    def iter_metric_history(self, run_id: str, key: str, page_size: int = 0) -> Iterator[Metric]:
        token = ""
        while True:
            request = pb.GetMetricHistoryRequest(
                run_id=run_id,
                metric_key=key,
                max_results=count_arg(page_size, "page_size"),
                page_token=token,
            )
            response = self._t.call(self._tracking.GetMetricHistory, request)
            yield from (metric_to_entity(m) for m in response.metrics)
            token = response.next_page_token
            if not token:
                return

    # -- artifacts -----------------------------------------------------------------------------

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[FileInfo]:
        """One directory level, all pages (MlflowClient.list_artifacts)."""
        return list(self.iter_artifacts(run_id, path or ""))

    def iter_artifacts(
        self, run_id: str, path: str = "", recursive: bool = False
    ) -> Iterator[FileInfo]:
        token: str | None = None
        while True:
            page = self.list_artifacts_page(run_id, path, recursive=recursive, page_token=token)
            yield from page
            token = page.token
            if not token:
                return

    def list_artifacts_page(
        self,
        run_id: str,
        path: str | None = None,
        max_results: int | None = None,
        page_token: str | None = None,
        recursive: bool = False,
    ) -> PagedList[FileInfo]:
        """One page of a listing (the server's default size unless `max_results`), with the
        token of the next: for a caller that shows a directory of any size a page at a time."""
        request = pb.ListArtifactsRequest(
            run_id=run_id,
            path=path or "",
            recursive=recursive,
            page_size=0 if max_results is None else page_size_arg(max_results, "max_results"),
            page_token=page_token or "",
        )
        response = self._t.call(self._tracking.ListArtifacts, request)
        return PagedList([file_info_to_entity(f) for f in response.files], response.next_page_token)

    def log_artifact(
        self, run_id: str, local_path: str | Path, artifact_path: str | None = None
    ) -> FileInfo:
        """Upload a file, or a directory with everything in it, as `<artifact_path>/<name>`."""
        local = Path(local_path)
        # "/" is the root, as in log_artifacts: it used to make the absolute '/<name>' (refused).
        base = (artifact_path or "").strip("/")
        target = f"{base}/{local.name}" if base else local.name
        if local.is_dir():
            files = _artifacts.upload_tree(self._t, self._tracking, run_id, local, target)
            return FileInfo(target, True, sum(f.file_size or 0 for f in files))
        return _artifacts.upload_file(self._t, self._tracking, run_id, local, target)

    def log_artifacts(
        self, run_id: str, local_dir: str | Path, artifact_path: str | None = None
    ) -> list[FileInfo]:
        return _artifacts.upload_tree(
            self._t, self._tracking, run_id, Path(local_dir), artifact_path
        )

    def log_text(self, run_id: str, text: str, artifact_file: str) -> FileInfo:
        return _artifacts.upload_bytes(
            self._t, self._tracking, run_id, text.encode(), artifact_file
        )

    def log_dict(self, run_id: str, dictionary: dict[str, Any], artifact_file: str) -> FileInfo:
        if artifact_file.endswith((".yaml", ".yml")):
            import yaml

            data = yaml.safe_dump(dictionary, sort_keys=False).encode()
        else:
            data = json.dumps(dictionary, indent=2).encode()
        return _artifacts.upload_bytes(self._t, self._tracking, run_id, data, artifact_file)

    def log_figure(
        self,
        run_id: str,
        figure: Any,
        artifact_file: str,
        *,
        save_kwargs: dict[str, Any] | None = None,
    ) -> FileInfo:
        """A matplotlib or plotly figure, in the format `artifact_file`'s extension names
        (plotly: .html, or an image format where kaleido is installed)."""
        data = media.figure_bytes(figure, artifact_file, save_kwargs)
        return _artifacts.upload_bytes(self._t, self._tracking, run_id, data, artifact_file)

    def log_image(
        self,
        run_id: str,
        image: Any,
        artifact_file: str | None = None,
        key: str | None = None,
        step: int | None = None,
        timestamp: int | None = None,
        synchronous: bool | None = None,
    ) -> FileInfo:
        """A numpy array or PIL image, either as the file `artifact_file` (in the format its
        extension names), or as the image `key` at `step` (default 0), laid out as MLflow's UI
        finds images: a PNG and a WebP thumbnail under images/, and the run tagged
        mlflow.loggedImages. Returns the full-size file; it is stored when this returns
        (`synchronous` is accepted for MlflowClient's signature). Key form: 3 calls."""
        if artifact_file is not None and (key, step, timestamp) != (None, None, None):
            raise TypeError(
                "log_image takes either artifact_file (a static image) or key with step and "
                "timestamp (an image series), not both; drop one of them"
            )
        if artifact_file is None and key is None:
            raise TypeError(
                "log_image needs artifact_file (e.g. 'image.png') for a static image, or key "
                "(and step) for an image series; pass one of them"
            )
        if artifact_file is not None:
            data = media.image_bytes(media.to_pil_image(image), artifact_file)
            return _artifacts.upload_bytes(self._t, self._tracking, run_id, data, artifact_file)
        assert key is not None
        full_path, thumbnail_path = media.step_image_paths(key, step or 0, timestamp or _now_ms())
        picture = media.to_pil_image(image)
        full = media.image_bytes(picture, full_path)
        small = media.image_bytes(media.thumbnail(picture), thumbnail_path)
        info = _artifacts.upload_bytes(self._t, self._tracking, run_id, full, full_path)
        _artifacts.upload_bytes(self._t, self._tracking, run_id, small, thumbnail_path)
        self.set_tag(run_id, SystemTag.LOGGED_IMAGES, True)
        return info

    def log_table(self, run_id: str, data: Any, artifact_file: str) -> FileInfo:
        """A DataFrame or dict of columns as MLflow stores a table (.json, pandas' split orient,
        listed in the run's mlflow.loggedArtifacts tag, PIL images in cells as files under
        table_images/); rows are appended to a table already logged at `artifact_file`. Costs a
        download of that table, an upload, 1-2 calls and 2 uploads per image. Two concurrent
        appends to one table can lose one (as in MLflow): log from one process."""
        media.check_table_file(artifact_file, writing=True)
        frame = media.to_frame(data)
        images = media.image_columns(frame)
        if images:
            frame = frame.copy()  # the caller's frame keeps its images
            for column in images:
                frame[column] = [
                    self._log_table_image(run_id, artifact_file, i) for i in frame[column]
                ]
        try:
            existing = self._read_table(run_id, artifact_file)
        except NotFound:
            pass
        else:
            frame = pd.concat([existing, frame], ignore_index=True)
        info = _artifacts.upload_bytes(
            self._t, self._tracking, run_id, media.table_json(frame), artifact_file
        )
        tag = SystemTag.LOGGED_ARTIFACTS
        listed = media.tag_with_table(self.get_run(run_id).data.tags.get(tag), artifact_file)
        if listed is not None:
            self.set_tag(run_id, tag, listed)
        return info

    def _log_table_image(self, run_id: str, artifact_file: str, image: Any) -> dict[str, str]:
        """Store a table's image cell as MLflow does; the cell becomes what MLflow's UI reads."""
        full_path, thumbnail_path = media.table_image_paths(artifact_file)
        full = media.image_bytes(image, full_path)
        small = media.image_bytes(media.thumbnail(image), thumbnail_path)
        _artifacts.upload_bytes(self._t, self._tracking, run_id, full, full_path)
        _artifacts.upload_bytes(self._t, self._tracking, run_id, small, thumbnail_path)
        return {"type": "image", "filepath": full_path, "compressed_filepath": thumbnail_path}

    def load_table(
        self,
        experiment_id: str,
        artifact_file: str,
        run_ids: Sequence[str] | None = None,
        extra_columns: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """The tables logged at `artifact_file` by the experiment's runs (or by those of
        `run_ids` that logged one), concatenated; `extra_columns` adds search_runs columns of
        each table's run ("run_id", "tags.x", ...), with a trailing "_" where the table has a
        column of that name. Costs a search, then a download per table."""
        media.check_table_file(artifact_file, writing=False)
        filter_string = media.table_filter(artifact_file)
        if run_ids:
            quoted = ", ".join("'" + str(r).replace("'", "''") + "'" for r in run_ids)
            filter_string += f" AND attributes.run_id IN ({quoted})"
        runs: list[Run] = []
        token = None
        while True:
            page = self.search_runs(experiment_id, filter_string, page_token=token)
            # The filter matches loosely (see table_filter); the tag itself says for sure.
            tags = ((r, r.data.tags.get(SystemTag.LOGGED_ARTIFACTS)) for r in page)
            runs.extend(r for r, tag in tags if media.tag_lists_table(tag, artifact_file))
            token = page.token
            if not token:
                break
        if not runs:
            among = f"runs {list(run_ids)}" if run_ids else f"experiment {experiment_id}'s runs"
            raise NotFound(
                f"none of {among} logged a table at {artifact_file!r}; check the name given to "
                "log_table, the experiment, and the run ids",
                resource_type="artifact",
                resource_name=artifact_file,
            )
        if run_ids:
            missing = sorted(set(run_ids) - {r.info.run_id for r in runs})
            if missing:
                warnings.warn(
                    f"runs {missing} logged no table at {artifact_file!r}; they are left out",
                    UserWarning,
                    stacklevel=2,
                )
        frame = runs_to_frame(runs)
        unknown = [c for c in extra_columns or [] if c not in frame.columns]
        if unknown:
            raise InvalidArgument(
                f"extra_columns {unknown} are not columns of these runs; use search_runs' "
                f"columns, such as {', '.join(map(repr, frame.columns[:8]))}",
                field="extra_columns",
            )
        tables = []
        for (_, row), run in zip(frame.iterrows(), runs, strict=True):
            table = self._logged_table(run.info.run_id, artifact_file)
            for column in extra_columns or []:
                name = f"{column}_" if column in table.columns else column
                table[name] = row[column]
            tables.append(table)
        return pd.concat(tables, ignore_index=True)

    def _read_table(self, run_id: str, artifact_file: str) -> pd.DataFrame:
        with tempfile.TemporaryDirectory(prefix="modelyard-table-") as tmp:
            local = Path(self.download_artifacts(run_id, artifact_file, tmp))
            return media.read_table(local.read_bytes())

    def _logged_table(self, run_id: str, artifact_file: str) -> pd.DataFrame:
        try:
            return self._read_table(run_id, artifact_file)
        except NotFound:
            raise NotFound(
                f"run {run_id} lists the table {artifact_file!r} in its "
                f"{SystemTag.LOGGED_ARTIFACTS} tag, but the file is gone (deleted); log it "
                "again, or pass run_ids without this run",
                resource_type="artifact",
                resource_name=artifact_file,
            ) from None

    def download_artifacts(
        self, run_id: str, path: str = "", dst_path: str | Path | None = None
    ) -> str:
        """Download a file or directory; returns the local path. Every file's sha256 is checked."""
        return str(_artifacts.download(self._t, self._tracking, self, run_id, path, dst_path))

    def open_artifact(
        self,
        run_id: str,
        path: str,
        *,
        timeout: float | None = 3600.0,
        idle_timeout: float | None = None,
    ) -> tuple[FileInfo, Iterator[bytes]]:
        """A file's description and an iterator over its bytes, streamed from the server.

        `timeout` bounds the whole stream in seconds (None: no bound); `idle_timeout`, each
        wait for the server's next chunk, so that a long download fails only if it stalls
        (DeadlineExceeded). Close the iterator to stop a download early."""
        return _artifacts.open_run_artifact(
            self._t, self._tracking, run_id, path, timeout, idle_timeout
        )

    def create_artifact_download_url(self, run_id: str, path: str) -> tuple[PresignedUrl, FileInfo]:
        """A short-lived URL to GET the file straight from object storage, and the file's
        description (hash the bytes and compare with its sha256). A store without URLs (local
        files) answers FailedPrecondition: use download_artifacts or open_artifact there."""
        return _artifacts.download_url(self._t, self._tracking, run_id, path)

    def delete_artifact(self, run_id: str, path: str) -> None:
        _artifacts.delete(self._t, self._tracking, run_id, path)


# search_runs' DataFrame, laid out as MLflow's: these columns, then `metrics.*`, `params.*`,
# `tags.*` (each in the order first met; one run's new keys sorted). A run without a key holds
# NaN for a metric and None for a param or tag, as there (the run name is `tags.mlflow.runName`).
_RUN_COLUMNS = ("run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time")


def runs_to_frame(runs: Sequence[Run]) -> pd.DataFrame:
    info: dict[str, list[Any]] = {column: [] for column in _RUN_COLUMNS}
    groups: dict[str, dict[str, list[Any]]] = {"metrics": {}, "params": {}, "tags": {}}
    for i, r in enumerate(runs):
        info["run_id"].append(r.info.run_id)
        info["experiment_id"].append(r.info.experiment_id)
        info["status"].append(str(r.info.status))
        info["artifact_uri"].append(r.info.artifact_uri)
        info["start_time"].append(pd.to_datetime(r.info.start_time, unit="ms", utc=True))
        end = r.info.end_time
        info["end_time"].append(pd.NaT if end is None else pd.to_datetime(end, unit="ms", utc=True))
        values: dict[str, dict[str, Any]] = {
            "metrics": r.data.metrics,
            "params": r.data.params,
            "tags": r.data.tags,
        }
        for group, columns in groups.items():
            null = math.nan if group == "metrics" else None
            for key in sorted(values[group].keys() - columns.keys()):
                columns[key] = [null] * i
            for key, column in columns.items():
                column.append(values[group].get(key, null))
    data: dict[str, list[Any]] = dict(info)
    for group, columns in groups.items():
        data.update({f"{group}.{key}": column for key, column in columns.items()})
    return pd.DataFrame(data)


def _tags_to_proto(tags: dict[Any, Any] | None) -> list[Any]:
    """Tags as sent: keys checked (key_text), values as text."""
    return tags_to_proto({key_text(k, "tags.key"): _stringify(v) for k, v in (tags or {}).items()})


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _batches(
    metrics: Sequence[dict[str, Any]], params: Sequence[Param], tags: Sequence[RunTag]
) -> Iterator[tuple[Sequence[dict[str, Any]], Sequence[Param], Sequence[RunTag]]]:
    """Slices of a batch within LogBatch's limits; one (maybe empty) slice at least."""
    start = 0
    while True:
        chunk = (
            metrics[start * MAX_METRICS_PER_BATCH : (start + 1) * MAX_METRICS_PER_BATCH],
            params[start * MAX_PARAMS_PER_BATCH : (start + 1) * MAX_PARAMS_PER_BATCH],
            tags[start * MAX_TAGS_PER_BATCH : (start + 1) * MAX_TAGS_PER_BATCH],
        )
        if start and not any(chunk):
            return
        yield chunk
        start += 1
