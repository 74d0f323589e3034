"""TrackingServicer: modelyard.tracking.v1 over gRPC. Converts, delegates, converts back."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
from google.protobuf.message import Message

from modelyard._gen.common.v1 import common_pb2
from modelyard._gen.tracking.v1 import tracking_pb2 as pb
from modelyard._gen.tracking.v1 import tracking_pb2_grpc
from modelyard.convert.common import (
    file_info_to_proto,
    grant_to_proto,
    level_to_entity,
    presigned_to_proto,
    timestamp_to_ms,
)
from modelyard.convert.tracking import (
    dataset_input_to_entity,
    experiment_to_proto,
    metric_to_proto,
    run_fields,
    run_info_to_proto,
    run_to_proto,
    status_to_entity,
)
from modelyard.entities import Metric, Param, RunTag, ViewType
from modelyard.errors import InvalidArgument
from modelyard.services.common import validation as v
from modelyard.services.tracking.service import TrackingService


def view_type(field: str, value: int) -> ViewType:
    if value == common_pb2.VIEW_TYPE_UNSPECIFIED:
        return ViewType.ACTIVE_ONLY
    try:
        return ViewType(value)
    except ValueError:
        raise InvalidArgument(
            f"{field} {value} is not a ViewType; use ACTIVE_ONLY, DELETED_ONLY or ALL", field=field
        ) from None


def _chunks(requests: Iterator[pb.UploadArtifactRequest]) -> Iterator[bytes]:
    for request in requests:
        part = request.WhichOneof("part")
        if part is None:
            raise InvalidArgument(
                "an UploadArtifact message after the header carries no chunk; put the file's "
                "bytes in chunk",
                field="chunk",
            )
        if part != "chunk":
            raise InvalidArgument(
                "only the first UploadArtifact message may carry a header; send bytes after it",
                field="header",
            )
        yield request.chunk


def _metric_rows(metrics) -> list[tuple[str, float, int, int]]:
    """(key, value, timestamp_ms, step) per metric; a timestamp out of range is rejected."""
    try:
        return [(m.key, m.value, timestamp_to_ms(m.timestamp), m.step) for m in metrics]
    except ValueError as exc:
        raise v.bad_timestamp("metrics.timestamp", exc) from None


def _optional_ms(request: Message, field: str) -> int | None:
    """Milliseconds of an optional Timestamp field (None when unset), its range checked."""
    return v.timestamp_ms(field, getattr(request, field), request.HasField(field))


class TrackingServicer(tracking_pb2_grpc.TrackingServiceServicer):
    def __init__(self, service: TrackingService) -> None:
        self.service = service

    # -- experiments ---------------------------------------------------------------------------

    def CreateExperiment(self, request, context):
        experiment_id = self.service.create_experiment(
            request.name, request.artifact_location, v.unique_tags(request.tags)
        )
        return pb.CreateExperimentResponse(experiment_id=experiment_id)

    def GetExperiment(self, request, context):
        experiment = self.service.get_experiment(request.experiment_id)
        return pb.GetExperimentResponse(experiment=experiment_to_proto(experiment))

    def GetExperimentByName(self, request, context):
        experiment = self.service.get_experiment_by_name(request.experiment_name)
        return pb.GetExperimentByNameResponse(experiment=experiment_to_proto(experiment))

    def SearchExperiments(self, request, context):
        page = self.service.search_experiments(
            request.filter,
            list(request.order_by),
            request.max_results,
            request.page_token,
            view_type("view_type", request.view_type),
        )
        return pb.SearchExperimentsResponse(
            experiments=[experiment_to_proto(e) for e in page], next_page_token=page.token or ""
        )

    def UpdateExperiment(self, request, context):
        self.service.rename_experiment(request.experiment_id, request.new_name)
        return pb.UpdateExperimentResponse()

    def DeleteExperiment(self, request, context):
        self.service.delete_experiment(request.experiment_id)
        return pb.DeleteExperimentResponse()

    def RestoreExperiment(self, request, context):
        self.service.restore_experiment(request.experiment_id)
        return pb.RestoreExperimentResponse()

    def SetExperimentTag(self, request, context):
        self.service.set_experiment_tag(request.experiment_id, request.key, request.value)
        return pb.SetExperimentTagResponse()

    def DeleteExperimentTag(self, request, context):
        self.service.delete_experiment_tag(request.experiment_id, request.key)
        return pb.DeleteExperimentTagResponse()

    def SetExperimentPermission(self, request, context):
        self.service.set_permission(
            request.experiment_id, request.grant.principal, level_to_entity(request.grant.level)
        )
        return pb.SetExperimentPermissionResponse()

    def DeleteExperimentPermission(self, request, context):
        self.service.delete_permission(request.experiment_id, request.principal)
        return pb.DeleteExperimentPermissionResponse()

    def ListExperimentPermissions(self, request, context):
        grants = self.service.list_permissions(request.experiment_id)
        return pb.ListExperimentPermissionsResponse(grants=[grant_to_proto(g) for g in grants])

    # -- runs ----------------------------------------------------------------------------------

    def CreateRun(self, request, context):
        run = self.service.create_run(
            request.experiment_id,
            run_name=request.run_name,
            start_time=_optional_ms(request, "start_time"),
            tags=v.unique_tags(request.tags),
            parent_run_id=request.parent_run_id,
            user_id=request.user_id,
        )
        return pb.CreateRunResponse(run=run_to_proto(run))

    def GetRun(self, request, context):
        return pb.GetRunResponse(run=run_to_proto(self.service.get_run(request.run_id)))

    def UpdateRun(self, request, context):
        status = None
        if request.status:
            status = status_to_entity(request.status)
            if status is None:
                raise InvalidArgument(f"status {request.status} is not a RunStatus", field="status")
        info = self.service.update_run(
            request.run_id,
            status=status,
            end_time=_optional_ms(request, "end_time"),
            run_name=request.run_name,
        )
        return pb.UpdateRunResponse(run_info=run_info_to_proto(info))

    def DeleteRun(self, request, context):
        self.service.delete_run(request.run_id)
        return pb.DeleteRunResponse()

    def RestoreRun(self, request, context):
        self.service.restore_run(request.run_id)
        return pb.RestoreRunResponse()

    def SearchRuns(self, request, context):
        page = self.service.search_runs(
            list(request.experiment_ids),
            request.filter,
            view_type("run_view_type", request.run_view_type),
            request.max_results,
            list(request.order_by),
            request.page_token,
        )
        return pb.SearchRunsResponse(
            runs=[run_fields(run) for run in page],  # type: ignore[misc]  # protobuf takes dicts
            next_page_token=page.token or "",
        )

    # -- run data ------------------------------------------------------------------------------

    def LogParam(self, request, context):
        self.service.log_param(request.run_id, request.key, request.value)
        return pb.LogParamResponse()

    def LogMetric(self, request, context):
        ms = v.timestamp_ms("timestamp", request.timestamp, request.HasField("timestamp"))
        self.service.log_metric(request.run_id, request.key, request.value, ms, request.step)
        return pb.LogMetricResponse()

    def SetTag(self, request, context):
        self.service.set_tag(request.run_id, request.key, request.value)
        return pb.SetTagResponse()

    def DeleteTag(self, request, context):
        self.service.delete_tag(request.run_id, request.key)
        return pb.DeleteTagResponse()

    def LogBatch(self, request, context):
        if not request.params and not request.tags:
            # The hot path of batched logging: plain tuples straight from the messages.
            self.service.log_metric_rows(request.run_id, _metric_rows(request.metrics))
            return pb.LogBatchResponse()
        self.service.log_batch(
            request.run_id,
            metrics=[Metric(*row) for row in _metric_rows(request.metrics)],
            params=[Param(p.key, p.value) for p in request.params],
            tags=[RunTag(t.key, t.value) for t in request.tags],
        )
        return pb.LogBatchResponse()

    def LogInputs(self, request, context):
        self.service.log_inputs(
            request.run_id, [dataset_input_to_entity(d) for d in request.datasets]
        )
        return pb.LogInputsResponse()

    def GetMetricHistory(self, request, context):
        if request.max_points:
            sample = self.service.sample_metric_history(
                request.run_id,
                request.metric_key,
                request.max_points,
                request.max_results,
                request.page_token,
            )
            return pb.GetMetricHistoryResponse(metrics=[metric_to_proto(m) for m in sample])
        page = self.service.get_metric_history(
            request.run_id, request.metric_key, request.max_results, request.page_token
        )
        return pb.GetMetricHistoryResponse(
            metrics=[metric_to_proto(m) for m in page], next_page_token=page.token or ""
        )

    # -- artifacts -----------------------------------------------------------------------------

    def UploadArtifact(self, request_iterator, context):
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgument(
                "the first UploadArtifact message must be a header naming run_id and path",
                field="header",
            )
        header = first.header
        file = self.service.upload_artifact(
            header.run_id, header.path, _chunks(request_iterator), header.sha256
        )
        return pb.UploadArtifactResponse(file=file_info_to_proto(file))

    def DownloadArtifact(self, request, context: grpc.ServicerContext):
        file, chunks = self.service.open_artifact(request.run_id, request.path)
        yield pb.DownloadArtifactResponse(file=file_info_to_proto(file))
        for chunk in chunks:
            yield pb.DownloadArtifactResponse(chunk=chunk)

    def ListArtifacts(self, request, context):
        root, page = self.service.list_artifacts(
            request.run_id,
            request.path,
            request.recursive,
            request.page_size,
            request.page_token,
        )
        return pb.ListArtifactsResponse(
            root_uri=root,
            files=[file_info_to_proto(f) for f in page],
            next_page_token=page.token or "",
        )

    def DeleteArtifact(self, request, context):
        self.service.delete_artifact(request.run_id, request.path)
        return pb.DeleteArtifactResponse()

    def CreateArtifactUploadUrl(self, request, context):
        url, upload_id = self.service.create_upload_url(request.run_id, request.path)
        return pb.CreateArtifactUploadUrlResponse(
            upload_url=presigned_to_proto(url), upload_id=upload_id
        )

    def CompleteArtifactUpload(self, request, context):
        file = self.service.complete_upload(
            request.run_id, request.path, request.sha256, request.upload_id
        )
        return pb.CompleteArtifactUploadResponse(file=file_info_to_proto(file))

    def CreateArtifactDownloadUrl(self, request, context):
        url, file = self.service.create_download_url(request.run_id, request.path)
        return pb.CreateArtifactDownloadUrlResponse(
            download_url=presigned_to_proto(url), file=file_info_to_proto(file)
        )
