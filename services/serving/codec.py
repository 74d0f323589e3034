"""Open Inference Protocol requests' inputs -> numpy arrays, and outputs -> responses.

Inputs arrive as typed `contents` or as `raw_input_contents` (the raw form, and the datatypes,
are modelyard.convert.tensors, shared with the client; FP16 and BF16 travel only raw). Outputs go
back in the form the request used, so a raw-speaking client (tritonclient's default) gets raw.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from math import prod
from typing import Any

import numpy as np

from modelyard._gen.inference import grpc_predict_v2_pb2 as oip
from modelyard.convert.tensors import (
    CONTENT_TYPE,
    DATATYPES,
    TABLE,
    bad_tensor,
    checked_shape,
    datatype_of,
    from_raw,
    to_raw,
)
from modelyard.errors import Internal, InvalidArgument

# numpy's limit before 2.0 (64 since); no model takes deeper tensors.
MAX_DIMS = 32


def _about(field: str, exc: InvalidArgument) -> InvalidArgument:
    """`exc`, which names a tensor, as naming the request field that holds what is wrong."""
    return InvalidArgument(f"{field}: {exc.message}", field=field)


def _shape(field: str, tensor: Any) -> tuple[int, ...]:
    if len(tensor.shape) > MAX_DIMS:
        raise InvalidArgument(
            f"{field}: tensor {tensor.name!r} has {len(tensor.shape)} dimensions; at most "
            f"{MAX_DIMS} are supported",
            field=field,
        )
    try:
        return checked_shape(tensor.name, tensor.shape)
    except InvalidArgument as exc:
        raise _about(field, exc) from None


def _from_contents(at: str, tensor: Any, shape: tuple[int, ...]) -> np.ndarray:
    dtype, field = DATATYPES[tensor.datatype]
    if field is None:
        raise _about(
            f"{at}.datatype",
            bad_tensor(tensor.name, f"{tensor.datatype} data must travel in raw_input_contents"),
        )
    values = getattr(tensor.contents, field)
    if len(values) != prod(shape):
        raise _about(
            f"{at}.contents.{field}",
            bad_tensor(
                tensor.name,
                f"has {len(values)} values in contents.{field}; shape {list(shape)} needs "
                f"{prod(shape)}",
            ),
        )
    if tensor.datatype == "BYTES":
        return np.array(list(values), dtype=object).reshape(shape)
    try:
        return np.array(values, dtype=dtype).reshape(shape)
    except OverflowError:  # contents fields are wider than the datatype (300 as a UINT8)
        info = np.iinfo(dtype)
        outside = next(v for v in values if not info.min <= v <= info.max)
        raise _about(
            f"{at}.contents.{field}",
            bad_tensor(
                tensor.name,
                f"value {outside} does not fit {tensor.datatype} ({info.min} to {info.max})",
            ),
        ) from None


def decode_inputs(request: oip.ModelInferRequest) -> dict[str, np.ndarray]:
    """The input arrays by name; InvalidArgument names the field at fault (`inputs[1].shape`)."""
    if not request.inputs:
        raise InvalidArgument("the request has no inputs", field="inputs")
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidArgument(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs; send "
            "one per input, in order",
            field="raw_input_contents",
        )
    decoded: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(request.inputs):
        at = f"inputs[{i}]"
        if raw and tensor.HasField("contents") and tensor.contents.ListFields():
            raise InvalidArgument(
                f"raw_input_contents: {at} carries its data in contents too; send the inputs' "
                "data one way, raw or in contents",
                field="raw_input_contents",
            )
        if not tensor.name:
            raise InvalidArgument(
                f"{at}.name is required: input #{i} has no name", field=f"{at}.name"
            )
        if tensor.datatype not in DATATYPES:
            raise _about(
                f"{at}.datatype",
                bad_tensor(
                    tensor.name,
                    f"datatype {tensor.datatype!r} is not one of {', '.join(DATATYPES)}",
                ),
            )
        if tensor.name in decoded:
            raise _about(
                f"{at}.name", bad_tensor(tensor.name, "appears twice; give each input its own name")
            )
        shape = _shape(f"{at}.shape", tensor)
        if raw:
            try:
                decoded[tensor.name] = from_raw(tensor.name, tensor.datatype, shape, raw[i])
            except InvalidArgument as exc:
                raise _about(f"raw_input_contents[{i}]", exc) from None
        else:
            decoded[tensor.name] = _from_contents(at, tensor, shape)
    return decoded


def request_named_in(head: bytes) -> oip.ModelInferRequest:
    """The fields that name a ModelInferRequest (model_name, model_version, id: numbers 1-3,
    written first) read from its first bytes alone, for a request too large to parse whole;
    whichever of them the bytes do not hold whole are left empty."""
    named = oip.ModelInferRequest()
    at = 0
    try:
        while at < len(head):
            key, at = _varint(head, at)
            if key & 7 != 2 or not 1 <= key >> 3 <= 3:  # a field past the names: the data
                break
            size, at = _varint(head, at)
            if at + size > len(head):
                break
            value = head[at : at + size].decode()
            at += size
            setattr(named, ("model_name", "model_version", "id")[(key >> 3) - 1], value)
    except (IndexError, UnicodeDecodeError):  # cut short, or no request at all
        pass
    return named


def _varint(data: bytes, at: int) -> tuple[int, int]:
    """The protobuf varint at `at`, and where the next field begins."""
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def is_table(request: oip.ModelInferRequest) -> bool:
    """Whether the request's inputs are a table's columns (content_type "pd")."""
    kind = request.parameters.get(CONTENT_TYPE)
    return kind is not None and kind.string_param == TABLE


def _count(request: oip.ModelInferRequest, name: str) -> int | None:
    """An integer request parameter (tritonclient sends int64, others uint64); None if absent."""
    value = request.parameters.get(name)
    if value is None:
        return None
    if value.WhichOneof("parameter_choice") not in ("int64_param", "uint64_param"):
        raise InvalidArgument(
            f"parameters.{name} must be an integer (int64_param or uint64_param)",
            field=f"parameters.{name}",
        )
    count = value.int64_param or value.uint64_param
    if count < 0:
        raise InvalidArgument(
            f"parameters.{name} is {count}; it must not be negative", field=f"parameters.{name}"
        )
    return count


# Triton's sequence parameters, and the value kinds its frontend takes for each.
_SEQUENCE_KINDS = {
    "sequence_id": ("int64_param", "string_param"),
    "sequence_start": ("bool_param",),
    "sequence_end": ("bool_param",),
}


def check_sequence(request: oip.ModelInferRequest) -> None:
    """Refuse Triton's sequence parameters of a kind Triton refuses ("invalid value type for
    'sequence_start' parameter"); well-formed ones are ignored, as Triton ignores them for a
    model without a sequence batcher (only that batcher wants a correlation ID): no model
    here keeps state between requests, and ModelConfig reports no sequence_batching."""
    if not request.parameters:
        return
    for name, kinds in _SEQUENCE_KINDS.items():
        value = request.parameters.get(name)
        if value is not None and value.WhichOneof("parameter_choice") not in kinds:
            raise InvalidArgument(
                f"parameters.{name} must be {' or '.join(kinds)}, as Triton takes it; "
                f"model {request.model_name!r} keeps no state between requests, so sequence "
                "parameters are accepted and have no effect: leave them out",
                field=f"parameters.{name}",
            )


def queue_timeout(request: oip.ModelInferRequest) -> float | None:
    """Triton's per-request `timeout` (microseconds; 0 or none: no timeout) in seconds: how long
    the request may wait for the model before it is refused unrun. Triton's `priority` is
    checked and otherwise ignored, as Triton ignores it for a model whose config has no
    priority_levels (ModelConfig reports none): requests are taken in the order they came."""
    _count(request, "priority")
    micros = _count(request, "timeout")
    return micros / 1e6 if micros else None


def unknown_outputs(wanted: Sequence[str], outputs: Mapping[str, np.ndarray]) -> None:
    """Refuse requested outputs (the request's `outputs[i].name`) the model does not give, as
    Triton does."""
    for i, name in enumerate(wanted):
        if name not in outputs:
            raise InvalidArgument(
                f"outputs[{i}].name: the model has no output {name!r}; it gives "
                f"{sorted(outputs)} (ask for none to get them all)",
                field=f"outputs[{i}].name",
            )


def requested_classes(request: oip.ModelInferRequest) -> dict[str, int]:
    """Outputs asked for as Triton's classification extension (tritonclient's
    InferRequestedOutput(name, class_count=k)): name -> k. They were answered as plain tensors,
    which a client parsing "value:index" text could not read."""
    classes: dict[str, int] = {}
    asked: dict[str, int] = {}  # name -> the first outputs[i] naming it
    for i, output in enumerate(request.outputs):
        first = asked.setdefault(output.name, i)
        if first != i and dict(output.parameters) != dict(request.outputs[first].parameters):
            # Triton answers an output once: two different asks of it cannot both be met (the
            # last one used to win, silently).
            raise InvalidArgument(
                f"outputs[{i}]: output {output.name!r} is asked for again with other parameters "
                f"than outputs[{first}]; ask for it once (a model answers each output once)",
                field=f"outputs[{i}].parameters",
            )
        if "classification" not in output.parameters:
            continue
        field = f"outputs[{i}].parameters.classification"
        k = output.parameters["classification"]
        if k.WhichOneof("parameter_choice") not in ("int64_param", "uint64_param"):
            raise InvalidArgument(f"{field} must be an integer count of classes", field=field)
        count = k.int64_param or k.uint64_param
        if count < 1:
            raise InvalidArgument(
                f"{field} is {count}; ask for at least 1 class, or leave it out for the tensor",
                field=field,
            )
        classes[output.name] = count
    return classes


def classified(name: str, array: np.ndarray, k: int, rows_first: bool) -> np.ndarray:
    """The top `k` classes of each row (of the whole tensor, for a model without a batch
    dimension), best first, as Triton gives them: "value:index" text, shape [..., k]."""
    if array.dtype.kind not in "biuf" or array.ndim == 0:
        raise InvalidArgument(
            f"output {name!r} ({array.dtype}, shape {list(array.shape)}) holds no class scores "
            "to rank; ask for it without classification",
            field="outputs",
        )
    scores = array.astype(np.float64)
    if rows_first and scores.ndim == 1:
        scores = scores[:, None]  # a value per row: one class each
    top = np.argsort(-scores, axis=-1, kind="stable")[..., :k]
    values = np.take_along_axis(scores, top, axis=-1)
    text = [f"{v:f}:{i}".encode() for v, i in zip(values.ravel(), top.ravel(), strict=True)]
    return np.array(text, dtype=object).reshape(top.shape)


def _datatype_of_output(name: str, array: np.ndarray) -> str:
    """The model's doing, not the caller's: an output of a type the protocol lacks is INTERNAL
    naming it."""
    try:
        return datatype_of(array)
    except InvalidArgument as exc:
        raise Internal(f"model output {name!r}: {exc.message}") from None


def encode_outputs(
    response: oip.ModelInferResponse,
    outputs: Mapping[str, np.ndarray],
    raw: bool,
    wanted: set[str] | None = None,
) -> None:
    """Add the outputs to `response`: raw if the request was raw, or if any output can only
    travel raw (FP16); the protocol forbids mixing the two forms in one response."""
    chosen = {n: a for n, a in outputs.items() if not wanted or n in wanted}
    types = {n: _datatype_of_output(n, a) for n, a in chosen.items()}
    raw = raw or any(DATATYPES[t][1] is None for t in types.values())
    for name, array in chosen.items():
        datatype = types[name]
        tensor = response.outputs.add(name=name, datatype=datatype, shape=list(array.shape))
        if raw:
            response.raw_output_contents.append(to_raw(array, datatype))
            continue
        field = DATATYPES[datatype][1]
        assert field is not None
        flat = array.reshape(-1)
        if datatype == "BYTES":
            values: Any = [v if isinstance(v, bytes) else str(v).encode() for v in flat]
        else:
            values = flat.tolist()
        getattr(tensor.contents, field).extend(values)
