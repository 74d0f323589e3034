"""The server interceptor chain: error mapping -> metrics -> auth (services/common/auth).

Error mapping is outermost so that refusals by auth travel like any other domain error, and
metrics sees them as it sees the service's own errors.

Interceptors here wrap each method's behaviour once and cache the wrapped handler, so every RPC
of every service, streaming ones included, goes through the same code without per-method
decorators.
"""

from __future__ import annotations

import abc
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from modelyard.errors import (
    Internal,
    InvalidArgument,
    ModelyardError,
    ResourceExhausted,
    to_status,
)
from modelyard.services.common import call_end
from modelyard.services.common import logging as mlog
from modelyard.services.common.metrics import RPC_ERRORS, RPC_LATENCY, RPC_REQUESTS

log = mlog.get_logger(__name__)

Behavior = Callable[..., Any]


class Undecodable:
    """Stands in for a request message the server does not take: bytes that did not parse, or
    more of them than max_message_mb. The error is ours to report. `head`: an oversized
    message's first bytes (never parsed whole), where a per-message stream may find the fields
    that name the request (protobuf writes fields in number order, names before data)."""

    def __init__(self, error: ModelyardError, head: bytes = b"") -> None:
        self.error = error
        self.head = head


# How much of an oversized message is kept for its answer to name it: what names it comes
# first, the bulk of its bytes after.
OVERSIZED_HEAD = 4096


def _unparsable(type_name: str, reason: str) -> Undecodable:
    return Undecodable(
        InvalidArgument(
            f"request is not a valid {type_name} message ({reason}); "
            "send a message built from the modelyard protos"
        )
    )


def _oversized(data: bytes, limit: int) -> Undecodable:
    return Undecodable(
        ResourceExhausted(
            f"the request is {len(data) / 2**20:.1f} MiB, over this server's message limit of "
            f"{limit / 2**20:g} MiB; send fewer rows per request, or raise the server's "
            "max_message_mb (MODELYARD_MAX_MESSAGE_MB)"
        ),
        head=data[:OVERSIZED_HEAD],
    )


def split_method(full_method: str) -> tuple[str, str]:
    """'/pkg.Service/Method' -> ('pkg.Service', 'Method')."""
    _, service, method = full_method.split("/", 2)
    return service, method


class _WrappingInterceptor(grpc.ServerInterceptor):
    """Base: subclasses wrap the four behaviour kinds; results are cached per method."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        cached = self._cache.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self.wrap(handler, method)
        self._cache[method] = (handler, wrapped)
        return wrapped

    @abc.abstractmethod
    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        """Return `handler` with its behaviour (and maybe deserializer) wrapped."""


def _replace(handler: grpc.RpcMethodHandler, **changes: Any) -> grpc.RpcMethodHandler:
    """grpc's own handlers (generated code, health, reflection) are namedtuples."""
    return handler._replace(**changes)


def _behavior_kind(handler: grpc.RpcMethodHandler) -> str:
    if handler.request_streaming:
        return "stream_stream" if handler.response_streaming else "stream_unary"
    return "unary_stream" if handler.response_streaming else "unary_unary"


class ErrorMappingInterceptor(_WrappingInterceptor):
    """Maps ModelyardError to its status with details; anything else to INTERNAL with a request id.

    Also turns undecodable request bytes into INVALID_ARGUMENT (grpc would say INTERNAL) and tags
    every log line written during the call with the request id.

    `per_message_errors`: streaming methods ('/pkg.Service/Method') that answer each request on
    its own, errors included (ModelStreamInfer); an undecodable message reaches them as an
    Undecodable, to answer as that message's error, instead of ending the whole call.

    `max_message_bytes`: the largest request message taken (settings.max_message_mb); a larger
    one is RESOURCE_EXHAUSTED saying what to do, for a per-message stream that message's alone.
    grpc itself must read up to more (server.RECEIVE_HEADROOM): what it refuses ends the call.
    """

    def __init__(
        self, per_message_errors: frozenset[str] = frozenset(), max_message_bytes: int = 0
    ) -> None:
        super().__init__()
        self._per_message_errors = per_message_errors
        self._max_message_bytes = max_message_bytes

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        kind = _behavior_kind(handler)
        behavior = getattr(handler, kind)
        deserializer = handler.request_deserializer
        changes: dict[str, Any] = {}
        if deserializer is not None:
            type_name = _type_name(deserializer)
            limit = self._max_message_bytes

            def safe_deserialize(data: bytes) -> Any:
                if limit and len(data) > limit:
                    return _oversized(data, limit)
                try:
                    return deserializer(data)
                except Exception as exc:  # the parser's own error says what was wrong
                    return _unparsable(type_name, str(exc) or type(exc).__name__)

            changes["request_deserializer"] = safe_deserialize
        wrapper = _stream_response if handler.response_streaming else _unary_response
        checked = handler.request_streaming and method not in self._per_message_errors
        changes[kind] = wrapper(behavior, method, checked_stream=checked)
        return _replace(handler, **changes)


def _type_name(deserializer: Callable[[bytes], Any]) -> str:
    owner = getattr(deserializer, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    return descriptor.full_name if descriptor is not None else "request"


def _call_request_id(context: grpc.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "x-request-id" and isinstance(value, str) and 0 < len(value) <= 128:
            return value
    return os.urandom(16).hex()  # a uuid4's randomness, at a sixth of the CPU


def _checked_requests(requests: Iterator[Any]) -> Iterator[Any]:
    for request in requests:
        if isinstance(request, Undecodable):
            raise request.error
        yield request


def _prepare(request: Any, checked_stream: bool) -> Any:
    if checked_stream:
        return _checked_requests(request)
    if isinstance(request, Undecodable):
        raise request.error
    return request


# The server's deadline runs from when the call reached it, the client's from when it was made:
# a client cancels at its own deadline while the server's is still the call's transit (connect,
# queueing) away. Seen as a deadline counted CANCELLED 1 run in 4 on a loaded machine.
_DEADLINE_SLACK = 1.0


def _ended(context: grpc.ServicerContext) -> grpc.StatusCode | None:
    """How the call ended before its handler did (None: it has not): the work it interrupted
    (call_end) raised, which is the client's doing, not an INTERNAL error of the server's."""
    if context.is_active():
        return None
    remaining = context.time_remaining()
    if remaining is not None and remaining <= _DEADLINE_SLACK:
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return grpc.StatusCode.CANCELLED


def _abort(context: grpc.ServicerContext, exc: BaseException, method: str, rid: str) -> None:
    code = context.code()
    if code is not None and code != grpc.StatusCode.OK:
        raise exc  # the behaviour already aborted with its own status (health, reflection)
    ended = _ended(context)
    if ended is not None:
        # The client cancelled or its deadline passed: reading its stream raised, and there is
        # no one to answer. Not a server fault, so no traceback in the error log.
        log.info("%s ended by the client (%s)", method, type(exc).__name__)
        context.abort(ended, "the client ended the call")
    if isinstance(exc, ModelyardError):
        if exc.code == grpc.StatusCode.INTERNAL and not exc.request_id:
            exc.request_id = rid
        context.abort_with_status(to_status(exc))
    log.error("unhandled error in %s", method, exc_info=exc)
    error = Internal(
        "internal server error; retry, and report the request id to the operator if it persists",
        request_id=rid,
    )
    context.abort_with_status(to_status(error))


def _unary_response(behavior: Behavior, method: str, *, checked_stream: bool) -> Behavior:
    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        rid = _call_request_id(context)
        token = mlog.request_id.set(rid)
        call = call_end.current.set(call_end.Call(context))
        try:
            return behavior(_prepare(request, checked_stream), context)
        except BaseException as exc:  # SystemExit too: grpc would never answer the call
            _abort(context, exc, method, rid)
        finally:
            call_end.current.reset(call)
            mlog.request_id.reset(token)

    return handle


def _stream_response(behavior: Behavior, method: str, *, checked_stream: bool) -> Behavior:
    def handle(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        rid = _call_request_id(context)
        token = mlog.request_id.set(rid)  # grpc drives the generator from one thread
        call = call_end.current.set(call_end.Call(context))
        try:
            yield from behavior(_prepare(request, checked_stream), context)
        except GeneratorExit:
            raise  # grpc closed the stream
        except BaseException as exc:  # SystemExit too: grpc would never end the call
            _abort(context, exc, method, rid)
        finally:
            call_end.current.reset(call)
            mlog.request_id.reset(token)

    return handle


class MetricsInterceptor(_WrappingInterceptor):
    """Counts every RPC by final code and times it; inside error mapping, so it sees domain
    exceptions (auth's refusals among them) before they become statuses."""

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        service, name = split_method(method)
        kind = _behavior_kind(handler)
        behavior = getattr(handler, kind)
        latency = RPC_LATENCY.labels(service, name)
        ok = RPC_REQUESTS.labels(service, name, grpc.StatusCode.OK.name)  # looked up once

        def record(start: float, code: grpc.StatusCode) -> None:
            latency.observe(time.perf_counter() - start)
            if code == grpc.StatusCode.OK:
                ok.inc()
                return
            RPC_REQUESTS.labels(service, name, code.name).inc()
            RPC_ERRORS.labels(service, name, code.name).inc()

        if handler.response_streaming:

            def streamed(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                start = time.perf_counter()
                code = grpc.StatusCode.OK
                try:
                    yield from behavior(request, context)
                except BaseException as exc:
                    code = _code_of(exc, context)
                    raise
                finally:
                    record(start, code)

            return _replace(handler, **{kind: streamed})

        def unary(request: Any, context: grpc.ServicerContext) -> Any:
            start = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                return behavior(request, context)
            except BaseException as exc:
                code = _code_of(exc, context)
                raise
            finally:
                record(start, code)

        return _replace(handler, **{kind: unary})


def _code_of(exc: BaseException, context: grpc.ServicerContext) -> grpc.StatusCode:
    code = context.code()
    if code is not None and code != grpc.StatusCode.OK:
        return code
    # A call that ended first is counted as it ended, whatever its interrupted work raised (a
    # cancelled statement, a source read refused for it), as the client saw it.
    ended = _ended(context)
    if ended is not None:
        return ended
    if isinstance(exc, ModelyardError):
        return exc.code
    if isinstance(exc, GeneratorExit):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.INTERNAL
