"""The one error hierarchy of Modelyard, shared by servers and the SDK.

Each class is named after the gRPC status it travels as. Servers raise these from domain code and
the error interceptor turns them into a status with `google.rpc` details (the field at fault, the
resource concerned); the SDK turns a status back into the same class through the same table, so a
caller catches `modelyard.errors.NotFound` whether it talks to a local or a remote server.
"""

from __future__ import annotations

import re
from collections import namedtuple
from collections.abc import Mapping
from typing import Any, ClassVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status


class ModelyardError(Exception):
    """Base class. `field` names the request field at fault, `resource` the resource concerned;
    `busy_for` (seconds), on a refusal worth retrying, how long its cause may last at most."""

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        resource_type: str | None = None,
        resource_name: str | None = None,
        request_id: str | None = None,
        busy_for: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.resource_type = resource_type
        self.resource_name = resource_name
        self.request_id = request_id
        self.busy_for = busy_for

    def __str__(self) -> str:
        suffix = f" (request id {self.request_id})" if self.request_id else ""
        return f"{self.message}{suffix}"

    @property
    def error_code(self) -> str:
        """MLflow's name for the error, as MlflowException.error_code gives it (code ported
        from MLflow compares it: "RESOURCE_ALREADY_EXISTS" around create_experiment). The
        gRPC status is `code`."""
        return _MLFLOW_ERROR_CODE.get(self.code, "INTERNAL_ERROR")


class InvalidArgument(ModelyardError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ModelyardError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ModelyardError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(ModelyardError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(ModelyardError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class PermissionDenied(ModelyardError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(ModelyardError):
    code = grpc.StatusCode.UNAUTHENTICATED


class Unavailable(ModelyardError):
    code = grpc.StatusCode.UNAVAILABLE


class NoServer(Unavailable):
    """UNAVAILABLE from the connection itself: no Modelyard server answered at the address
    (nothing listens there, or something else does). Its message says how to start one."""


class DeadlineExceeded(ModelyardError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Aborted(ModelyardError):
    code = grpc.StatusCode.ABORTED


class Unimplemented(ModelyardError):
    code = grpc.StatusCode.UNIMPLEMENTED


class DataLoss(ModelyardError):
    code = grpc.StatusCode.DATA_LOSS


class Internal(ModelyardError):
    code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[ModelyardError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        ResourceExhausted,
        PermissionDenied,
        Unauthenticated,
        Unavailable,
        DeadlineExceeded,
        Aborted,
        Unimplemented,
        DataLoss,
        Internal,
    )
}


# MLflow's error codes (its databricks.proto ErrorCode) for each status, as its tracking server
# raises them: a missing run is RESOURCE_DOES_NOT_EXIST; a write to a deleted run or experiment,
# the commonest refused state, INVALID_PARAMETER_VALUE.
_MLFLOW_ERROR_CODE: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.INVALID_ARGUMENT: "INVALID_PARAMETER_VALUE",
    grpc.StatusCode.NOT_FOUND: "RESOURCE_DOES_NOT_EXIST",
    grpc.StatusCode.ALREADY_EXISTS: "RESOURCE_ALREADY_EXISTS",
    grpc.StatusCode.FAILED_PRECONDITION: "INVALID_PARAMETER_VALUE",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "RESOURCE_EXHAUSTED",
    grpc.StatusCode.PERMISSION_DENIED: "PERMISSION_DENIED",
    grpc.StatusCode.UNAUTHENTICATED: "UNAUTHENTICATED",
    grpc.StatusCode.UNAVAILABLE: "TEMPORARILY_UNAVAILABLE",
    grpc.StatusCode.DEADLINE_EXCEEDED: "DEADLINE_EXCEEDED",
    grpc.StatusCode.ABORTED: "ABORTED",
    grpc.StatusCode.UNIMPLEMENTED: "NOT_IMPLEMENTED",
    grpc.StatusCode.DATA_LOSS: "DATA_LOSS",
}


# A status travels in trailing metadata, which a grpc client starts refusing past 8 KiB (its
# soft limit, at random) and always past 16 KiB, as RESOURCE_EXHAUSTED "Stream removed" instead
# of the error. The message goes percent-encoded (up to 3 bytes per byte) and again, with the
# names, in base64 details: echoed input is cut to these many UTF-8 bytes to stay well under.
_MAX_MESSAGE_BYTES = 1024
_MAX_NAME_BYTES = 256


def _clip(text: str, limit: int) -> str:
    raw = text.encode()
    if len(raw) <= limit:
        return text
    return f"{raw[:limit].decode(errors='ignore')}... ({len(text)} characters)"


# A refusal whose cause passes (a path another call is writing) says so in the standard way: a
# RetryInfo with a short delay, as the cause usually lasts milliseconds, and an ErrorInfo with
# reason BUSY and the most it can last, up to which the SDK keeps retrying.
BUSY = "BUSY"
_DOMAIN = "modelyard"
_BUSY_FOR_MS = "busy_for_ms"
_RETRY_AFTER = 0.1


_NO_TRANSPORT_RETRY = "grpc-retry-pushback-ms"


class _Status(namedtuple("_Status", ("code", "details", "trailing_metadata")), grpc.Status):
    """A grpc.Status: an interface grpc leaves to the application to implement."""


def _busy_details(busy_for: float) -> list[any_pb2.Any]:
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(int(min(max(busy_for, 0.0), _RETRY_AFTER) * 1e9))
    reason = error_details_pb2.ErrorInfo(
        reason=BUSY, domain=_DOMAIN, metadata={_BUSY_FOR_MS: str(int(max(busy_for, 0.0) * 1000))}
    )
    return [_pack(error_details_pb2.RetryInfo(retry_delay=delay)), _pack(reason)]


def to_status(error: ModelyardError) -> grpc.Status:
    """Encode an error as a gRPC status carrying google.rpc details."""
    details: list[any_pb2.Any] = []
    message = _clip(str(error), _MAX_MESSAGE_BYTES)
    if error.field:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=_clip(error.field, _MAX_NAME_BYTES),
                    description=_clip(error.message, _MAX_MESSAGE_BYTES),
                )
            ]
        )
        details.append(_pack(bad))
    if error.resource_type or error.resource_name:
        info = error_details_pb2.ResourceInfo(
            resource_type=_clip(error.resource_type or "", _MAX_NAME_BYTES),
            resource_name=_clip(error.resource_name or "", _MAX_NAME_BYTES),
        )
        details.append(_pack(info))
    if error.request_id:
        details.append(_pack(error_details_pb2.RequestInfo(request_id=error.request_id)))
    if error.busy_for is not None:
        details.extend(_busy_details(error.busy_for))
    status = rpc_status.to_status(
        status_pb2.Status(code=_CODE_VALUE[error.code], message=message, details=details)
    )
    if error.busy_for is None and error.code != grpc.StatusCode.UNAVAILABLE:
        return status
    # grpc's own retries (a client's retry policy on UNAVAILABLE, meant for a server not there
    # yet) would retry a server's answer blind, a few times within a second or two: an unloaded
    # model kept the SDK waiting for nothing. This pushback stops them, leaving the retry to the
    # caller, told by the message (and for a busy answer, the details) whether it is worth it.
    return _Status(
        status.code, status.details, (*status.trailing_metadata, (_NO_TRANSPORT_RETRY, "-1"))
    )


def from_rpc_error(error: grpc.RpcError) -> ModelyardError:
    """Rebuild the Modelyard error a server sent; unknown codes become the base class."""
    code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
    message = error.details() if isinstance(error, grpc.Call) else str(error)
    cls = _BY_CODE.get(code, ModelyardError)
    kwargs: dict[str, Any] = {}
    status = rpc_status.from_call(error) if isinstance(error, grpc.Call) else None
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            if bad.field_violations:
                kwargs["field"] = bad.field_violations[0].field
        elif detail.Is(error_details_pb2.ResourceInfo.DESCRIPTOR):
            info = error_details_pb2.ResourceInfo()
            detail.Unpack(info)
            kwargs["resource_type"] = info.resource_type
            kwargs["resource_name"] = info.resource_name
        elif detail.Is(error_details_pb2.RequestInfo.DESCRIPTOR):
            req = error_details_pb2.RequestInfo()
            detail.Unpack(req)
            kwargs["request_id"] = req.request_id
        elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            reason = error_details_pb2.ErrorInfo()
            detail.Unpack(reason)
            if reason.reason == BUSY and reason.metadata.get(_BUSY_FOR_MS, "").isdigit():
                kwargs["busy_for"] = int(reason.metadata[_BUSY_FOR_MS]) / 1000
    if "request_id" in kwargs and message:
        message = message.removesuffix(f" (request id {kwargs['request_id']})")
    err = cls(message or code.name, **kwargs)
    if cls is ModelyardError:
        err.code = code  # type: ignore[misc]
    return err


def reword(message: str, instead: Mapping[str, str]) -> str:
    """`message` with each API method it names (a server's hint: "list them with
    SearchRuns") replaced by what does the same where it is read (a command, a page)."""
    if not instead:
        return message
    names = re.compile(rf"\b({'|'.join(map(re.escape, instead))})\b")
    return names.sub(lambda m: instead[m[1]], message)


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


_CODE_VALUE: dict[grpc.StatusCode, int] = {
    status: getattr(code_pb2, status.name) for status in grpc.StatusCode
}
