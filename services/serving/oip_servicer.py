"""InferenceServicer: the Open Inference Protocol (inference.GRPCInferenceService).

An endpoint's name is the protocol's model name; `model_version` picks a served model by its name
or registry version (shadow calls), otherwise traffic is split by the endpoint's percentages,
deterministically when the request carries an id.
"""

from __future__ import annotations

import contextvars
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from importlib.metadata import version as package_version
from typing import Any, TypeVar

import grpc

from modelyard._gen.inference import grpc_predict_v2_pb2 as oip
from modelyard._gen.inference import grpc_predict_v2_pb2_grpc
from modelyard.errors import (
    FailedPrecondition,
    ModelyardError,
    NotFound,
    ResourceExhausted,
    Unimplemented,
)
from modelyard.services.common import logging as mlog
from modelyard.services.common import validation as v
from modelyard.services.common.call_end import CallEnded
from modelyard.services.common.interceptors import Undecodable
from modelyard.services.serving.codec import (
    check_sequence,
    classified,
    decode_inputs,
    encode_outputs,
    is_table,
    queue_timeout,
    request_named_in,
    requested_classes,
)
from modelyard.services.serving.endpoints import EndpointRuntime, ServedModelRuntime
from modelyard.services.serving.model import LoadedModel, TensorInfo
from modelyard.services.serving.service import ServingService
from modelyard.services.serving.statistics import Duration, StatsSnapshot

Metadata = oip.ModelMetadataResponse.TensorMetadata
Answer = TypeVar("Answer", oip.ModelInferResponse, oip.ModelStreamInferResponse)
# Set on every stream answer, as Triton sets it: whether it is its request's last. Each request
# gets one answer, so always; clients that read a request's answers until it (PyTriton's,
# decoupled-model clients) otherwise waited on for an answer that never came.
FINAL = "triton_final_response"
# How often a stream's reader and writer look whether the call has ended.
STREAM_POLL = 1.0
log = mlog.get_logger(__name__)


def _data_type(datatype: str) -> oip.DataType.ValueType:
    """A protocol datatype as Triton's config names it (BYTES is TYPE_STRING)."""
    return oip.DataType.Value("TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}")


def _dims(info: TensorInfo, batched: bool) -> dict[str, Any]:
    """dims (and reshape) of a tensor: without its rows when the model batches; a column, of
    shape [rows], is dims [1] taken as [] (Triton's way: clients send [rows] or [rows, 1])."""
    if not batched:
        return {"dims": list(info.shape)}
    dims = list(info.shape[1:])
    return {"dims": dims} if dims else {"dims": [1], "reshape": oip.ModelTensorReshape()}


def _config(runtime: EndpointRuntime, served: ServedModelRuntime) -> oip.ModelConfig:
    model, _batcher = served.current
    batched = model.batchable
    optional = model.optional_inputs()
    return oip.ModelConfig(
        name=runtime.name,
        platform=_platform(model),
        backend="modelyard",
        version_policy=oip.ModelVersionPolicy(
            specific=oip.ModelVersionPolicy.Specific(
                versions=sorted({s.to_entity().version for s in runtime.served if s.ready})
            )
        ),
        max_batch_size=served.spec.batching.max_batch_size if batched else 0,
        input=[
            oip.ModelInput(
                name=t.name,
                data_type=_data_type(t.datatype),
                optional=t.name in optional,
                **_dims(t, batched),
            )
            for t in model.inputs_metadata()
        ],
        output=[
            oip.ModelOutput(name=t.name, data_type=_data_type(t.datatype), **_dims(t, batched))
            for t in model.outputs_metadata()
        ],
        # Triton refuses dynamic batching with max_batch_size 0; tools read it as batching on.
        dynamic_batching=oip.ModelDynamicBatching(
            max_queue_delay_microseconds=served.spec.batching.max_queue_delay_micros
        )
        if batched
        else None,
        instance_group=[
            oip.ModelInstanceGroup(
                name=served.name, count=1, kind=oip.ModelInstanceGroup.Kind.KIND_CPU
            )
        ],
        parameters={
            "served_model": oip.ModelParameter(string_value=served.name),
            "model_uri": oip.ModelParameter(string_value=served.spec.model_uri),
        },
    )


def _duration(d: Duration) -> oip.StatisticDuration:
    return oip.StatisticDuration(count=d.count, ns=d.ns)


def _statistics(endpoint: str, version: int, s: StatsSnapshot) -> oip.ModelStatistics:
    return oip.ModelStatistics(
        name=endpoint,
        version=str(version),
        last_inference=s.last_inference_ms,
        inference_count=s.inference_count,
        execution_count=s.execution_count,
        inference_stats=oip.InferStatistics(
            success=_duration(s.success),
            fail=_duration(s.fail),
            queue=_duration(s.queue),
            compute_input=_duration(s.compute_input),
            compute_infer=_duration(s.compute_infer),
            compute_output=_duration(s.compute_output),
        ),
        batch_stats=[
            oip.InferBatchStatistics(
                batch_size=size,
                compute_input=_duration(b.compute_input),
                compute_infer=_duration(b.compute_infer),
                compute_output=_duration(b.compute_output),
            )
            for size, b in sorted(s.batches.items())
        ],
    )


_NO_SHARED_MEMORY = (
    "Modelyard serving reads tensors from requests only, never from shared memory; send the "
    "data in the request (tritonclient: InferInput.set_data_from_numpy, not set_shared_memory)"
)


def _no_region(kind: str, name: str) -> NotFound:
    return NotFound(
        f"no {kind} shared-memory region {name!r} is registered: {_NO_SHARED_MEMORY}",
        resource_type="shared_memory_region",
        resource_name=name,
    )


def _one_repository(name: str) -> None:
    """Refuse a repository named, as Triton does ("'repository_name' specification is not
    supported"): the endpoints were listed, loaded or unloaded as if they were its."""
    if name:
        raise Unimplemented(
            f"repository_name {name!r}: Modelyard serving has one model repository, its "
            "endpoints; leave repository_name empty"
        )


def _platform(model: LoadedModel) -> str:
    flavors = [f for f in model.model.metadata.flavors if f != "python_function"]
    return f"modelyard_{flavors[0] if flavors else 'pyfunc'}"


def deadline_of(context: grpc.ServicerContext) -> float | None:
    """The call's deadline as a time.monotonic() value; None when the caller set none, for which
    grpc reports ~9.2e18 seconds remaining, past what Condition.wait accepts."""
    remaining = context.time_remaining()
    if remaining is None or remaining > threading.TIMEOUT_MAX:
        return None
    return time.monotonic() + remaining


class InferenceServicer(grpc_predict_v2_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(
        self,
        service: ServingService,
        may_infer: Callable[[oip.ModelInferRequest], None] = lambda request: None,
        *,
        stream_window: int,
        stream_workers: int,
        max_message_bytes: int,
    ) -> None:
        """`stream_window`, `stream_workers`: settings.serving's (see there);
        `max_message_bytes`: the largest answer grpc sends (settings.max_message_mb)."""
        self._max_message_bytes = max_message_bytes
        self.service = service
        # Raises PermissionDenied unless the caller may make this ModelInfer request: the
        # stream's requests each name their endpoint, so each is checked as ModelInfer is.
        self._may_infer = may_infer
        self._stream_window = stream_window
        # Answer every stream's requests: beyond this many at once, the requests wait here.
        self._stream_workers = ThreadPoolExecutor(
            stream_workers, thread_name_prefix="modelyard-stream"
        )

    def ServerLive(self, request, context):
        return oip.ServerLiveResponse(live=True)

    def ServerReady(self, request, context):
        """As the health service's readiness: an endpoint's own pod is ready once its endpoint
        answers (it said ready while loading, and tritonclient's is_server_ready wait ended
        on a server that could only refuse); the shared serving service at once."""
        return oip.ServerReadyResponse(ready=self.service.answers())

    def ServerMetadata(self, request, context):
        return oip.ServerMetadataResponse(
            name="modelyard",
            version=package_version("modelyard"),
            # Triton's names for what this server offers beyond the protocol's core.
            extensions=["model_repository", "model_configuration", "statistics"],
        )

    def _described(self, runtime: EndpointRuntime, version: str) -> ServedModelRuntime:
        """The served model metadata and config describe: the one named, or the primary."""
        return runtime.select(version) if version else runtime.primary()

    def ModelReady(self, request, context):
        """As Triton's: an endpoint or version that does not exist is not ready (False, not an
        error), so that tools waiting for a model to appear (is_model_ready) keep waiting."""
        try:
            runtime = self.service.runtime(request.name)
            if request.version:
                return oip.ModelReadyResponse(ready=runtime.select(request.version).ready)
        except NotFound:
            return oip.ModelReadyResponse(ready=False)
        return oip.ModelReadyResponse(ready=runtime.answering)

    def ModelMetadata(self, request, context):
        runtime = self.service.runtime(request.name)
        model, _batcher = self._described(runtime, request.version).current
        return oip.ModelMetadataResponse(
            name=runtime.name,
            versions=[str(s.to_entity().version) for s in runtime.served if s.ready],
            platform=_platform(model),
            inputs=[
                Metadata(name=t.name, datatype=t.datatype, shape=list(t.shape))
                for t in model.inputs_metadata()
            ],
            outputs=[
                Metadata(name=t.name, datatype=t.datatype, shape=list(t.shape))
                for t in model.outputs_metadata()
            ],
        )

    def ModelConfig(self, request, context):
        v.require("name", request.name)
        runtime = self.service.runtime(request.name)
        served = self._described(runtime, request.version)
        return oip.ModelConfigResponse(config=_config(runtime, served))

    def ModelInfer(self, request, context):
        return self._infer(request, deadline_of(context))  # checked to fit (_fitting)

    def _fitting(self, answer: Answer) -> Answer:
        """`answer`, or ResourceExhausted if grpc would refuse to send it: a stream it did not
        fit was ended with every answer after it, and a unary caller got grpc's "Sent message
        larger than max", which says neither why nor what to do."""
        size = answer.ByteSize()
        if size > self._max_message_bytes:
            raise ResourceExhausted(
                f"the answer is {size / 2**20:.1f} MiB, over this server's message limit of "
                f"{self._max_message_bytes / 2**20:g} MiB; send fewer rows per request, or ask "
                "for fewer outputs (the request's outputs), or raise the server's "
                "max_message_mb (MODELYARD_MAX_MESSAGE_MB)"
            )
        return answer

    def ModelStreamInfer(self, request_iterator, context):
        """Requests are read ahead and answered at once, up to the stream window of them (so
        that a stream's requests are batched together, as concurrent ModelInfer calls are);
        answers go back in the order the requests came, one per request, refused ones too (a
        request too large to read among them), so the nth answer is the nth request's."""
        deadline = deadline_of(context)
        call = contextvars.copy_context()  # the caller's identity and request id
        window: queue.Queue[Future[oip.ModelStreamInferResponse] | BaseException | None] = (
            queue.Queue(self._stream_window)
        )

        def put(item: Future[oip.ModelStreamInferResponse] | BaseException | None) -> bool:
            while context.is_active():
                try:
                    window.put(item, timeout=STREAM_POLL)
                    return True
                except queue.Full:
                    continue
            return False  # the call ended: nobody reads on

        def read() -> None:
            model = ""  # the stream's last request's, for one too large to read its own from
            try:
                for request in request_iterator:
                    if not isinstance(request, Undecodable):
                        model = request.model_name
                    answer = self._stream_workers.submit(
                        call.copy().run, self._stream_answer, request, deadline, model
                    )
                    if not put(answer):
                        return
            except BaseException as exc:  # the call ended, or reading it failed
                put(exc)
                return
            put(None)

        threading.Thread(target=read, name="modelyard-stream-read", daemon=True).start()
        while True:
            try:
                item = window.get(timeout=STREAM_POLL)
            except queue.Empty:
                if not context.is_active():
                    return
                continue
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item.result()

    def _stream_answer(
        self, request: oip.ModelInferRequest | Undecodable, deadline: float | None, model: str
    ) -> oip.ModelStreamInferResponse:
        if isinstance(request, Undecodable):  # costs only itself, as any failed request
            return self._unread(request, model)
        try:
            self._may_infer(request)
            answer = oip.ModelStreamInferResponse(infer_response=self._infer(request, deadline))
            answer.infer_response.parameters.get_or_create(FINAL).bool_param = True
            return self._fitting(answer)
        except ModelyardError as exc:
            return self._failed(request, str(exc))  # with its request id, if INTERNAL
        except CallEnded:  # the stream ended: nobody reads this answer
            return self._failed(request, "the stream ended before the request's turn")
        except Exception:
            rid = mlog.request_id.get()
            log.error("unhandled error in ModelStreamInfer", exc_info=True)
            return self._failed(
                request,
                "internal server error; retry, and report the request id "
                f"{rid} to the operator if it persists",
            )

    def close(self) -> None:
        self._stream_workers.shutdown(wait=False, cancel_futures=True)

    def _unread(self, request: Undecodable, model: str) -> oip.ModelStreamInferResponse:
        """The answer to a request that was not parsed (too large, or no ModelInferRequest):
        named by what its first bytes name, else by the stream's model, and saying so, as
        Triton's answers are matched to requests by their id and model."""
        named = request_named_in(request.head)
        named.model_name = named.model_name or model
        which = f"request {named.id!r}" if named.id else "a request (its id not read)"
        to = f" to model {named.model_name!r}" if named.model_name else ""
        return self._failed(named, f"{which}{to} was not parsed: {request.error.message}")

    @staticmethod
    def _failed(request: oip.ModelInferRequest, message: str) -> oip.ModelStreamInferResponse:
        # As Triton's: what the request named, so the caller can match the failure to it.
        response = oip.ModelInferResponse(
            model_name=request.model_name, model_version=request.model_version, id=request.id
        )
        response.parameters.get_or_create(FINAL).bool_param = True
        return oip.ModelStreamInferResponse(error_message=message, infer_response=response)

    def _infer(
        self, request: oip.ModelInferRequest, deadline: float | None
    ) -> oip.ModelInferResponse:
        check_sequence(request)
        tensors = decode_inputs(request)
        wanted = [o.name for o in request.outputs]
        classes = requested_classes(request)

        def respond(model: LoadedModel, outputs: dict[str, Any]) -> oip.ModelInferResponse:
            response = oip.ModelInferResponse(
                model_name=request.model_name, model_version=str(model.version), id=request.id
            )
            for name, k in classes.items():
                outputs[name] = classified(name, outputs[name], k, model.batchable)
            encode_outputs(
                response, outputs, raw=bool(request.raw_input_contents), wanted=set(wanted) or None
            )
            return self._fitting(response)

        return self.service.infer(
            request.model_name,
            request.model_version,
            request.id,
            tensors,
            respond,
            deadline,
            wanted,
            table=is_table(request),
            timeout=queue_timeout(request),
        )

    def ModelStatistics(self, request, context):
        return oip.ModelStatisticsResponse(
            model_stats=[
                _statistics(*found)
                for found in self.service.statistics(request.name, request.version)
            ]
        )

    def RepositoryIndex(self, request, context):
        _one_repository(request.repository_name)
        response = oip.RepositoryIndexResponse()
        for endpoint in self.service.list_endpoints():
            for served in endpoint.served_models:
                state = (
                    "READY" if served.version else ("UNAVAILABLE" if served.reason else "LOADING")
                )
                if request.ready and state != "READY":
                    continue
                response.models.add(
                    name=endpoint.name,
                    version=str(served.version) if served.version else served.name,
                    state=state,
                    reason=served.reason,
                )
        return response

    def RepositoryModelLoad(self, request, context):
        _one_repository(request.repository_name)
        if request.parameters:
            # Triton's overrides ("config" JSON, "file:<path>" contents) were once ignored, and
            # the load reported success as if they had been applied.
            raise Unimplemented(
                f"load parameters {sorted(request.parameters)} are not supported: an endpoint's "
                "configuration is its spec, not a load's override. Change its batching with "
                "UpdateEndpoint (modelyard endpoints update NAME --model URI --max-batch N), "
                "register a new model version for other files, and load without parameters"
            )
        runtime = self.service.load_now(request.model_name)
        # As Triton's: the load asked for failed, though an older version may go on serving.
        failed = [s for s in runtime.served if not s.ready or s.reason]
        if failed:
            raise FailedPrecondition(
                f"endpoint {request.model_name!r} could not load: "
                + "; ".join(
                    f"{s.name}: {s.reason}"
                    + (f" (version {s.to_entity().version} goes on serving)" if s.ready else "")
                    for s in failed
                ),
                resource_type="endpoint",
                resource_name=request.model_name,
            )
        return oip.RepositoryModelLoadResponse()

    def RepositoryModelUnload(self, request, context):
        _one_repository(request.repository_name)
        self.service.unload(request.model_name)
        return oip.RepositoryModelUnloadResponse()

    # -- Triton's extensions Modelyard does not offer: what there is, or what to do instead --

    def SystemSharedMemoryStatus(self, request, context):
        if request.name:
            raise _no_region("system", request.name)
        return oip.SystemSharedMemoryStatusResponse()

    def SystemSharedMemoryRegister(self, request, context):
        raise Unimplemented(_NO_SHARED_MEMORY)

    def SystemSharedMemoryUnregister(self, request, context):
        return oip.SystemSharedMemoryUnregisterResponse()  # nothing is registered

    def CudaSharedMemoryStatus(self, request, context):
        if request.name:
            raise _no_region("CUDA", request.name)
        return oip.CudaSharedMemoryStatusResponse()

    def CudaSharedMemoryRegister(self, request, context):
        raise Unimplemented(_NO_SHARED_MEMORY)

    def CudaSharedMemoryUnregister(self, request, context):
        return oip.CudaSharedMemoryUnregisterResponse()

    def TraceSetting(self, request, context):
        if request.model_name:
            self.service.runtime(request.model_name)
        if request.settings:
            raise Unimplemented(
                "Modelyard serving does not trace requests; turn on the endpoint's inference "
                "log (GetInferenceLog reads each request) and read latencies from its Prometheus "
                "metrics or ModelStatistics"
            )
        off = oip.TraceSettingResponse.SettingValue(value=["OFF"])
        return oip.TraceSettingResponse(settings={"trace_level": off})

    def LogSettings(self, request, context):
        raise Unimplemented(
            "Modelyard's logging is set when the server starts: set MODELYARD_LOG_LEVEL (DEBUG, "
            "INFO, WARNING or ERROR) and restart it"
        )
